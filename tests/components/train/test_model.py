"""The wide-and-deep model over raw inputs, its SavedModel export, and the input pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from mlengine.components.shared import analyze as logic
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.parquet import list_parquet_files
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.components.shared.tf import import_tf
from mlengine.components.train import data, model
from mlengine.constants import ASYNC_ADAM_EPSILON
from mlengine.errors import DataError, MlengineError
from mlengine.synthetic import generate_columns
from tests.model_fixtures import write_parquet_split, write_taxi_splits


@pytest.fixture(scope="module")
def taxi_state(tmp_path_factory):
    splits = write_taxi_splits(tmp_path_factory.mktemp("model"), rows=2000)
    return splits, logic.analyze(str(splits["train"]), load_spec(None), 4)


def _raw_batch(rows: int = 40, seed: int = 5) -> dict[str, np.ndarray]:
    columns = generate_columns(rows, seed)
    columns.pop("fare_amount")
    return columns


def test_signature_follows_the_spec(taxi_state):
    tf, _ = import_tf()
    spec = load_spec(None)
    signature = model.raw_input_signature(spec)
    assert list(signature) == spec.column_names
    assert signature["pickup_latitude"] == tf.TensorSpec([None], tf.float32, name="pickup_latitude")
    assert signature["dayofweek"].dtype == tf.int64 and signature["dayofweek"].shape.as_list() == [None]


def test_model_predicts_from_raw_dicts_and_saved_model_agrees(taxi_state, tmp_path):
    tf, _ = import_tf()
    _, state = taxi_state
    spec = state.spec
    keras_model = model.build_model(state, [8, 4], 0.01)
    assert sorted(keras_model.input_names) == sorted(spec.column_names)
    raw = _raw_batch()
    tensors = {c.name: tf.constant(raw[c.name], tf.float32 if c.type == "float" else tf.int64) for c in spec.columns}
    standardized = keras_model(tensors).numpy().reshape(-1)
    in_process = model.predict_label(keras_model, state, tensors).numpy()
    assert in_process.shape == (40,) and np.all(np.isfinite(in_process))
    # the network predicts the standardised label; decoded, it is in the label's unit
    np.testing.assert_allclose(in_process, standardized * state.label["std"] + state.label["mean"], rtol=1e-5)
    # the head starts at 0 = the label mean, so an untrained model predicts near it
    assert abs(float(np.mean(in_process)) - state.label["mean"]) < 3 * state.label["std"]

    path = model.export_serving_model(keras_model, state, str(tmp_path / "m"))
    assert path == str(tmp_path / "m" / "serving")
    assert (tmp_path / "m" / "transform.json").is_file() and (tmp_path / "m" / "feature_spec.yaml").is_file()
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert {name: spec_.dtype for name, spec_ in inputs.items()} == {
        c.name: {"float": tf.float32, "int": tf.int64}[c.type] for c in spec.columns}
    assert all(spec_.shape.as_list() == [None] for spec_ in inputs.values())
    outputs = signature.structured_outputs
    assert list(outputs) == ["predictions"] and outputs["predictions"].dtype == tf.float32
    served = signature(**tensors)["predictions"].numpy()
    assert served.shape == (40,)
    np.testing.assert_allclose(served, in_process, rtol=1e-5, atol=1e-5)

    # the numpy-level loader casts float64 / int columns itself
    predict = load_model_dir(tmp_path / "m", fast_path=False)
    np.testing.assert_allclose(predict(raw), in_process, rtol=1e-5, atol=1e-5)
    with pytest.raises(MlengineError, match="'hourofday' is missing"):
        predict({k: v for k, v in raw.items() if k != "hourofday"})


def _torn_update_of_an_untouched_row(optimizer, gradient: float = 0.016) -> float:
    """How far an async ps update moves a row it did not touch: another worker has just added
    ``(1 - beta_1) * gradient`` to that row's first moment and not yet anything to its second moment
    (0 for a zero-initialised wide embedding row seen for the first time), and this worker's sparse
    Adam step rewrites every row from ``m / (sqrt(v) + epsilon)``."""
    tf, _ = import_tf()
    variable = tf.Variable(tf.zeros([4, 1]))
    optimizer.build([variable])
    optimizer._momentums[0].assign(tf.constant([[0.0], [(1 - optimizer.beta_1) * gradient], [0.0], [0.0]]))
    step = tf.IndexedSlices(tf.constant([[gradient]]), tf.constant([0]), tf.constant([4, 1]))
    optimizer.apply_gradients([(step, variable)])
    return abs(float(variable[1, 0]))


def test_parameter_server_adam_keeps_a_torn_moment_update_small(taxi_state):
    # Keras' epsilon 1e-7 turns it into a jump of ~45 (wide embedding rows of a ps run reached 760)
    assert _torn_update_of_an_untouched_row(model.make_optimizer(0.01)) > 1.0
    assert _torn_update_of_an_untouched_row(model.make_optimizer(0.01, asynchronous=True)) < 0.01
    assert model.build_model(taxi_state[1], [4], 0.01, asynchronous=True).optimizer.epsilon == ASYNC_ADAM_EPSILON
    assert model.build_model(taxi_state[1], [4], 0.01).optimizer.epsilon < ASYNC_ADAM_EPSILON


def test_build_model_rejects_bad_learning_rate(taxi_state):
    with pytest.raises(MlengineError, match="learning_rate"):
        model.build_model(taxi_state[1], [4], 0.0)


# --- input pipeline --------------------------------------------------------------------------------
def _labels(dataset) -> list[float]:
    return [float(v) for _, label in dataset for v in label.numpy()]


def test_dataset_batches_types_and_covers_every_row(taxi_state):
    tf, _ = import_tf()
    splits, state = taxi_state
    spec = state.spec
    files = list_parquet_files(str(splits["train"]))
    assert len(files) == 2
    dataset = data.make_dataset(files, spec, 64, shuffle=True, repeat=False, seed=1)
    batches = list(dataset)
    sizes = [int(label.shape[0]) for _, label in batches]
    assert sum(sizes) == 1600 and max(sizes) == 64 and sizes.count(64) >= len(sizes) - 1
    features, _ = batches[0]
    assert set(features) == set(spec.column_names)
    assert features["pickup_latitude"].dtype == tf.float32 and features["dayofweek"].dtype == tf.int64
    in_file_order = _labels(data.make_dataset(files, spec, 64, shuffle=False, repeat=False))
    shuffled = _labels(dataset)
    assert sorted(shuffled) == pytest.approx(sorted(in_file_order))
    assert shuffled != pytest.approx(in_file_order)


@pytest.mark.parametrize("parts", [1, 3])
def test_each_input_pipeline_reads_its_own_shard(tmp_path, parts):
    tf, _ = import_tf()
    spec = load_spec(None)
    columns = generate_columns(900, seed=2)
    files = list_parquet_files(str(write_parquet_split(columns, spec, tmp_path / "train", parts=parts)))
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        dataset = data.make_dataset(files, spec, 100, shuffle=False, repeat=False, input_context=context)
        sizes = [int(label.shape[0]) for _, label in dataset]
        assert max(sizes) == 50  # global batch 100 over 2 replicas
        seen.append(_labels(dataset))
    # together the two pipelines read every row exactly once
    assert sorted(seen[0] + seen[1]) == pytest.approx(sorted(columns["fare_amount"].astype(np.float32).tolist()))
    assert 300 <= len(seen[0]) <= 600


def test_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="no Parquet files"):
        list_parquet_files(str(tmp_path))
    with pytest.raises(DataError, match="no Parquet files given"):
        data.make_dataset([], load_spec(None), 8, shuffle=False, repeat=False)


@pytest.mark.parametrize("parts", [1, 3])
def test_graph_only_input_has_the_same_rows_and_shards(tmp_path, parts):
    tf, _ = import_tf()
    spec = load_spec(None)
    columns = generate_columns(2500, seed=4)
    parquet = list_parquet_files(str(write_parquet_split(columns, spec, tmp_path / "train", parts=parts)))
    records = data.prepare_graph_input(parquet, spec, tmp_path / "graph")
    assert [f.endswith(".tfrecord") for f in records] == [True] * parts
    assert data.prepare_graph_input(parquet, spec, tmp_path / "graph") == records  # reused, not rewritten
    dataset = data.make_dataset(records, spec, 256, shuffle=True, repeat=False, seed=3)
    features, label = next(iter(dataset))
    assert label.shape == (256,) and features["hourofday"].dtype == tf.int64
    assert sorted(_labels(dataset)) == pytest.approx(sorted(columns["fare_amount"].astype(np.float32).tolist()))
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        shards.append(_labels(data.make_dataset(records, spec, 256, shuffle=False, repeat=False,
                                                input_context=context)))
    assert sorted(shards[0] + shards[1]) == pytest.approx(sorted(columns["fare_amount"].astype(np.float32).tolist()))
    assert min(len(s) for s in shards) > 0
