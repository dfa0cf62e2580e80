"""The kserve.Model predictor called directly (load / __call__ / pickling) and its startup errors."""

from __future__ import annotations

import asyncio
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mlengine.constants import SPEC_FILE
from mlengine.errors import MlengineError
from tests.serving_fixtures import in_process_predictions, sample_rows, tiny_model_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(model_dir):
    from mlengine.components.deploy.predictor import RawFeaturePredictor

    model = RawFeaturePredictor("taxi", str(model_dir))
    assert model.load() is True and model.ready
    return model


@pytest.fixture(scope="module")
def rows(predictor):
    return sample_rows(predictor.spec, 40)


def call(model, body):
    response, _headers = asyncio.run(model(body))
    return response


def test_v1_call_matches_the_in_process_model(predictor, model_dir, rows):
    response = call(predictor, {"instances": rows})
    expected = in_process_predictions(model_dir, rows)
    assert len(response["predictions"]) == len(rows)
    np.testing.assert_allclose(response["predictions"], expected, rtol=1e-5, atol=1e-4)


def test_v2_call_returns_one_fp32_output(predictor, model_dir, rows):
    from kserve.protocol.infer_type import InferInput, InferRequest

    types = {"float": "FP32", "int": "INT64"}
    inputs = [InferInput(c.name, [len(rows)], types[c.type], [r[c.name] for r in rows]) for c in predictor.spec.columns]
    response = call(predictor, InferRequest("taxi", inputs, request_id="r-1"))
    body, _ = response.to_rest()
    assert body["id"] == "r-1" and body["model_name"] == "taxi"
    (output,) = body["outputs"]
    assert output["name"] == "predictions" and output["datatype"] == "FP32" and output["shape"] == [len(rows)]
    np.testing.assert_allclose(output["data"], in_process_predictions(model_dir, rows), rtol=1e-5, atol=1e-4)


def test_bad_input_raises_kserves_400_error_with_field_and_index(predictor, rows):
    from kserve.errors import InvalidInput

    from mlengine.components.deploy.predictor import InvalidRequest

    bad = [dict(row) for row in rows[:3]]
    bad[2]["hourofday"] = 24
    with pytest.raises(InvalidRequest) as caught:
        call(predictor, {"instances": bad})
    assert isinstance(caught.value, InvalidInput)  # kserve maps it to HTTP 400 even without our handler
    assert caught.value.to_json() == {"error": "instances[2].hourofday: 24 is outside the range [0, 23]",
                                      "field": "hourofday", "index": 2}
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        call(predictor, b"{not json")


def test_metadata_lists_the_raw_columns(predictor):
    inputs = predictor.get_input_types()
    assert [i["name"] for i in inputs] == predictor.spec.column_names
    assert {i["name"]: i["datatype"] for i in inputs}["passenger_count"] == "INT64"
    assert {i["name"]: i["datatype"] for i in inputs}["pickup_latitude"] == "FP32"
    assert predictor.get_output_types() == [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]


def test_pickled_into_a_worker_it_loads_the_model_again(predictor, model_dir, rows):
    from kserve.model_repository import ModelRepository

    from mlengine.components.deploy.http.server import load_pending_models

    clone = pickle.loads(pickle.dumps(predictor))  # what kserve does for --workers > 1
    assert clone is not predictor and not clone.ready and clone.load_pending  # the SavedModel is not pickled
    registry = ModelRepository()
    registry.update(clone)
    load_pending_models(registry)  # what the worker's REST server does before it serves
    assert clone.ready and not clone.load_pending
    np.testing.assert_allclose(call(clone, {"instances": rows[:5]})["predictions"],
                               in_process_predictions(model_dir, rows[:5]), rtol=1e-5, atol=1e-4)


def test_unbatched_mode_gives_the_same_answers(model_dir, rows):
    from mlengine.components.deploy.predictor import RawFeaturePredictor

    model = RawFeaturePredictor("taxi", str(model_dir), batching=False)
    model.load()
    np.testing.assert_allclose(call(model, {"instances": rows})["predictions"],
                               in_process_predictions(model_dir, rows), rtol=1e-5, atol=1e-4)


# --- startup errors -----------------------------------------------------------------------------
def _copy_spec(model_dir, target):
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / SPEC_FILE, target / SPEC_FILE)
    return target


def _save_module(path, signature_fn=None, signatures=True):
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    module = tf.Module()
    if signature_fn is not None:
        module.f = signature_fn(tf)
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.f} if signatures else None)
    else:
        tf.saved_model.save(module, str(path))


def _wrong_dtype(tf):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=n) for n in (
        "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude", "passenger_count",
        "dayofweek", "hourofday")])
    def serve(pickup_longitude, pickup_latitude, dropoff_longitude, dropoff_latitude, passenger_count,
              dayofweek, hourofday):
        return {"predictions": pickup_longitude * 0.0}

    return serve


def _missing_input(tf):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="pickup_longitude")])
    def serve(pickup_longitude):
        return {"predictions": pickup_longitude}

    return serve


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "model directory not found"),
    ("empty", "no SavedModel at serving/saved_model.pb"),
    ("no_spec", "feature_spec.yaml is missing"),
    ("corrupt", "cannot load the SavedModel"),
    ("no_signature", "has no 'serving_default' signature"),
    ("wrong_dtype", "input 'passenger_count' is float32, the int column needs int64"),
    ("missing_input", "input 'pickup_latitude' is missing"),
])
def test_unservable_model_directories_fail_with_one_line(model_dir, tmp_path, setup, message):
    from mlengine.components.shared.savedmodel import load_model_dir

    target = tmp_path / "model"
    if setup == "empty":
        _copy_spec(model_dir, target)
    elif setup == "no_spec":
        shutil.copytree(model_dir / "serving", target / "serving")
    elif setup == "corrupt":
        _copy_spec(model_dir, target)
        (target / "serving").mkdir()
        (target / "serving" / "saved_model.pb").write_bytes(b"this is not a protobuf")
    elif setup == "no_signature":
        _save_module(_copy_spec(model_dir, target) / "serving")
    elif setup == "wrong_dtype":
        _save_module(_copy_spec(model_dir, target) / "serving", _wrong_dtype)
    elif setup == "missing_input":
        _save_module(_copy_spec(model_dir, target) / "serving", _missing_input)
    with pytest.raises(MlengineError) as caught:
        load_model_dir(target)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert str(target) in str(caught.value)


def test_mlengine_serve_prints_one_line_and_exits_2_for_a_bad_model_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlengine.cli", "serve", "--model", str(tmp_path), "--port", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "mlengine serve" in line]
    assert lines == [f"mlengine serve: error: {tmp_path}: not a model directory: no SavedModel at "
                     f"serving/saved_model.pb (the train component writes it)"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("model_thread", [False, True])
def test_the_model_runs_on_the_event_loop_thread_unless_a_model_thread_is_asked_for(model_dir, rows, model_thread):
    import threading

    from mlengine.components.deploy.predictor import RawFeaturePredictor

    model = RawFeaturePredictor("taxi", str(model_dir), model_thread=model_thread)
    assert model.load() is True
    real, seen = model._runner, []

    def run(columns):
        seen.append(threading.get_ident())
        return real(columns)

    run.spec = real.spec
    model._runner = run

    async def predict_twice():
        loop_thread = threading.get_ident()
        first = await model({"instances": rows[:3]})
        second = await model({"instances": rows[3:5]})
        return loop_thread, first, second

    loop_thread, (first, _), (second, _) = asyncio.run(predict_twice())
    assert len(first["predictions"]) == 3 and len(second["predictions"]) == 2
    assert len(seen) == 2 and len(set(seen)) == 1
    assert (seen[0] == loop_thread) is not model_thread


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("workers", "asked", "expected"), [(2, None, None), (1, None, None), (2, 1, 1)])
def test_serve_leaves_tensorflow_its_own_threads_whatever_the_worker_count(model_dir, workers, asked, expected):
    """One TF thread per worker halved 2-worker throughput on 2 cores (bench/README.md): set only when asked."""
    from mlengine.components.deploy.http.server import serve
    from mlengine.components.deploy.predictor import RawFeaturePredictor

    seen = {}

    class Recording(RawFeaturePredictor):
        def load(self):
            seen["tf_threads"] = self.tf_threads
            raise _Stop  # before any server starts

    with pytest.raises(_Stop):
        serve(str(model_dir), workers=workers, tf_threads=asked, model_class=Recording)
    assert seen["tf_threads"] == expected
