"""A classifier served in process: v1 / v2 answers, requested outputs, metadata, bulk path = kserve's path.

The model is the fake classifier of ``tests/classification_fixtures.py`` (class k's logit is
``-(petal_length - centre_k)**2``), so every answer is checked against the numpy rule, for a
string vocabulary (BYTES labels) and an int one (INT64 labels).
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from mlengine.components.deploy.kserve_compat import kserve_argv
from tests.classification_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC, class_probabilities, write_fake_classifier

with kserve_argv():
    from starlette.testclient import TestClient

    from mlengine.components.deploy.batching import MicroBatcher
    from mlengine.components.deploy.http.limits import BINARY_HEADER, FAST_PATH_ENV
    from mlengine.components.deploy.http.server import LocalModelServer
    from mlengine.components.deploy.predictor import RawFeaturePredictor

NAME = "flowers"
BINARY = BINARY_HEADER.decode()
JSON = {"content-type": "application/json"}
SPECS = {"string": IRIS_LIKE_SPEC, "int": BINARY_SPEC}


def sample_rows(count: int, seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"petal_length": float(np.float32(rng.uniform(0, 10))), "colour": str(rng.choice(["red", "blue"]))}
            for _ in range(count)]


def expected_answer(raw_spec: dict, rows: list[dict]) -> tuple[list, np.ndarray]:
    """(labels, probabilities) the fake model must give for ``rows``."""
    classes = raw_spec["label"]["vocabulary"]
    centres = [float(2 * k + 1) for k in range(len(classes))]
    probabilities = class_probabilities(np.array([r["petal_length"] for r in rows], np.float32), centres)
    return [classes[i] for i in probabilities.argmax(axis=1)], probabilities


@pytest.fixture(scope="module", params=list(SPECS), ids=lambda kind: f"{kind}-labels")
def served(request, tmp_path_factory):
    """(raw spec, loaded predictor, bulk-path client, kserve-path client) for one vocabulary type."""
    raw_spec = SPECS[request.param]
    model_dir = write_fake_classifier(tmp_path_factory.mktemp(f"classifier-{request.param}"), raw_spec)
    model = RawFeaturePredictor(NAME, str(model_dir), max_instances=100)
    assert model.load()
    clients = []
    with pytest.MonkeyPatch.context() as patch:
        for fast in (True, False):
            patch.setenv(FAST_PATH_ENV, "1" if fast else "0")
            server = LocalModelServer(http_port=1)
            server.register_model(model)
            clients.append(TestClient(server._rest_server_for_workers().build_app()))
    return raw_spec, model, clients[0], clients[1]


@pytest.fixture(scope="module")
def rows():
    return sample_rows(24)


def _v2_json(rows: list[dict], **extra) -> bytes:
    return json.dumps({"inputs": [
        {"name": "petal_length", "shape": [len(rows)], "datatype": "FP32", "data": [r["petal_length"] for r in rows]},
        {"name": "colour", "shape": [len(rows)], "datatype": "BYTES", "data": [r["colour"] for r in rows]},
    ], **extra}).encode()


def _both(served, path: str, body: bytes, headers: dict, bulk_must_answer: bool = True):
    """The bulk path's and kserve's answers to the same request, checked equal (ids aside)."""
    _, model, fast, slow = served
    calls = []
    original = model.preprocess

    async def counted(*args, **kwargs):
        calls.append(1)
        return await original(*args, **kwargs)

    model.preprocess = counted
    try:
        a = fast.post(path, content=body, headers=headers)
    finally:
        del model.preprocess
    assert bool(calls) != bulk_must_answer, "the request took the other path than expected"
    b = slow.post(path, content=body, headers=headers)
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.headers.get(BINARY) == b.headers.get(BINARY)
    if a.content != b.content:  # only a response id generated per request may differ
        size = int(a.headers.get(BINARY) or len(a.content))
        left, right = json.loads(a.content[:size]), json.loads(b.content[:size])
        left.pop("id"), right.pop("id")
        assert left == right and a.content[size:] == b.content[size:]
    return a


def test_v1_answers_a_class_and_its_probabilities_per_instance(served, rows):
    raw_spec = served[0]
    labels, probabilities = expected_answer(raw_spec, rows)
    answer = _both(served, f"/v1/models/{NAME}:predict", json.dumps({"instances": rows}).encode(), JSON).json()
    predictions = answer["predictions"]
    assert [p["label"] for p in predictions] == labels
    assert all(type(p["label"]) is type(labels[0]) for p in predictions)  # str stays str, int stays int
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities, rtol=1e-5, atol=1e-6)
    assert all(len(p["probabilities"]) == len(raw_spec["label"]["vocabulary"]) for p in predictions)


def test_v1_columnar_inputs_answer_columnar_outputs(served, rows):
    labels, probabilities = expected_answer(served[0], rows)
    body = {"inputs": {"petal_length": [r["petal_length"] for r in rows], "colour": [r["colour"] for r in rows]}}
    answer = _both(served, f"/v1/models/{NAME}:predict", json.dumps(body).encode(), JSON).json()
    assert answer["outputs"]["label"] == labels
    np.testing.assert_allclose(answer["outputs"]["probabilities"], probabilities, rtol=1e-5, atol=1e-6)


def test_v2_answers_label_and_probabilities_tensors(served, rows):
    raw_spec = served[0]
    labels, probabilities = expected_answer(raw_spec, rows)
    answer = _both(served, f"/v2/models/{NAME}/infer", _v2_json(rows, id="c-1"), JSON).json()
    assert answer["id"] == "c-1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert list(outputs) == ["label", "probabilities"]
    datatype = "BYTES" if raw_spec["label"]["type"] == "string" else "INT64"
    assert (outputs["label"]["datatype"], outputs["label"]["shape"]) == (datatype, [len(rows)])
    assert outputs["label"]["data"] == labels
    classes = len(raw_spec["label"]["vocabulary"])
    assert (outputs["probabilities"]["datatype"], outputs["probabilities"]["shape"]) == ("FP32", [len(rows), classes])
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (len(rows), classes)), probabilities,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wanted", [["probabilities"], ["label"], ["probabilities", "label"]])
def test_v2_requested_outputs_are_the_ones_answered(served, rows, wanted):
    body = _v2_json(rows, outputs=[{"name": name} for name in wanted])
    answer = _both(served, f"/v2/models/{NAME}/infer", body, JSON).json()
    assert [o["name"] for o in answer["outputs"]] == wanted


def test_v2_unknown_requested_output_is_a_400_from_kserve(served, rows):
    _, _, fast, slow = served
    body = _v2_json(rows, outputs=[{"name": "predictions"}])
    a, b = fast.post(f"/v2/models/{NAME}/infer", content=body, headers=JSON), \
        slow.post(f"/v2/models/{NAME}/infer", content=body, headers=JSON)
    assert a.status_code == b.status_code == 400 and a.json() == b.json()


@pytest.mark.parametrize("binary_inputs", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_outputs", [(True, True), (False, False), (True, False)],
                         ids=["binary-out", "json-out", "mixed-out"])
def test_v2_binary_tensors_in_and_out_like_tritonclient(served, rows, binary_inputs, binary_outputs):
    import tritonclient.http as triton

    raw_spec = served[0]
    labels, probabilities = expected_answer(raw_spec, rows)
    lengths = triton.InferInput("petal_length", [len(rows)], "FP32")
    lengths.set_data_from_numpy(np.array([r["petal_length"] for r in rows], np.float32), binary_data=binary_inputs)
    colours = triton.InferInput("colour", [len(rows)], "BYTES")
    colours.set_data_from_numpy(np.array([r["colour"] for r in rows], dtype=object), binary_data=binary_inputs)
    wanted = [triton.InferRequestedOutput("label", binary_data=binary_outputs[0]),
              triton.InferRequestedOutput("probabilities", binary_data=binary_outputs[1])]
    body, json_length = triton.InferenceServerClient.generate_request_body([lengths, colours], outputs=wanted)
    headers = {BINARY: str(json_length)} if json_length else JSON
    # the bulk path decodes numeric binary tensors only and answers all-binary or all-JSON outputs
    bulk = not binary_inputs and binary_outputs != (True, False)
    answer = _both(served, f"/v2/models/{NAME}/infer", body, headers, bulk_must_answer=bulk)
    size = answer.headers.get(BINARY.lower())
    result = triton.InferenceServerClient.parse_response_body(answer.content, header_length=int(size) if size else None)
    got = result.as_numpy("label")
    expected_labels = np.array(labels, dtype=np.int64) if raw_spec["label"]["type"] == "int" else labels
    assert [v.decode() if isinstance(v, bytes) else v for v in got.tolist()] == list(expected_labels)
    np.testing.assert_allclose(result.as_numpy("probabilities").reshape(len(rows), -1), probabilities,
                               rtol=1e-5, atol=1e-6)


def test_metadata_names_the_outputs_and_the_classes_in_order(served):
    raw_spec, _, fast, _ = served
    classes = raw_spec["label"]["vocabulary"]
    meta = fast.get(f"/v2/models/{NAME}").json()
    datatype = "BYTES" if raw_spec["label"]["type"] == "string" else "INT64"
    assert meta["outputs"] == [{"name": "label", "datatype": datatype, "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classes)]}]
    assert meta["parameters"]["classes"] == classes and meta["versions"] == ["1"]
    assert meta["parameters"]["task"] == ("binary" if len(classes) == 2 else "multiclass")
    assert fast.get(f"/v2/models/{NAME}/versions/1").json()["parameters"]["classes"] == classes
    v1 = fast.get(f"/v1/models/{NAME}").json()
    assert v1["name"] == NAME and v1["ready"] is True and v1["classes"] == classes


def test_micro_batched_requests_get_their_own_rows_of_every_output(served):
    raw_spec, model, _, _ = served
    groups = [sample_rows(n, seed=n) for n in (1, 5, 3, 7)]

    async def scenario():
        batcher = MicroBatcher(model._runner.outputs, max_batch_rows=64)
        try:
            tasks = []
            for group in groups:
                columns = {"petal_length": np.array([r["petal_length"] for r in group], np.float32),
                           "colour": np.array([r["colour"] for r in group], dtype=object)}
                tasks.append(batcher.submit(columns, len(group)))
            return await asyncio.gather(*tasks), batcher.calls
        finally:
            batcher.close()

    results, calls = asyncio.run(scenario())
    assert calls < len(groups)  # merged into fewer model calls than requests
    for group, result in zip(groups, results, strict=True):
        labels, probabilities = expected_answer(raw_spec, group)
        assert result["label"].tolist() == labels
        np.testing.assert_allclose(result["probabilities"], probabilities, rtol=1e-5, atol=1e-6)


def test_serving_log_keeps_the_predicted_class(served, rows, tmp_path):
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.shared.serving_log import ServingInputLog, read_serving_log

    raw_spec, model, fast, slow = served
    labels, probabilities = expected_answer(raw_spec, rows)
    model._serving_log = ServingInputLog(tmp_path / "log")
    try:
        assert fast.post(f"/v1/models/{NAME}:predict", json={"instances": rows[:10]}).status_code == 200
        assert slow.post(f"/v2/models/{NAME}/infer", content=_v2_json(rows[10:]), headers=JSON).status_code == 200
    finally:
        model._serving_log.close()
        model._serving_log = None
    data = read_serving_log(tmp_path / "log", spec_from_dict(raw_spec))
    assert data.rows == len(rows) and data.malformed == 0
    assert [p["label"] for p in data.predictions] == labels
    np.testing.assert_allclose([p["probability"] for p in data.predictions], probabilities.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(data.columns["petal_length"], [r["petal_length"] for r in rows])


def test_a_worker_process_copy_serves_the_classes_again(served, rows):
    import pickle

    from kserve.model_repository import ModelRepository

    from mlengine.components.deploy.http.server import load_pending_models

    raw_spec, model, _, _ = served
    clone = pickle.loads(pickle.dumps(model))  # what kserve does for --workers > 1
    assert not clone.ready and clone.describe() == {}  # nothing loaded yet: no task, no classes
    registry = ModelRepository()
    registry.update(clone)
    load_pending_models(registry)
    assert clone.describe()["classes"] == raw_spec["label"]["vocabulary"]
    answer, _ = asyncio.run(clone({"instances": rows[:4]}))
    assert [p["label"] for p in answer["predictions"]] == expected_answer(raw_spec, rows[:4])[0]
