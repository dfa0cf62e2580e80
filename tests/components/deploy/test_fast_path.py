"""The bulk path (``FastInferMiddleware``) answers exactly as kserve's handlers do.

The same requests go to one app with the bulk path and one without it
(``MLENGINE_SERVE_FAST_PATH=0``): same status, same headers (the bulk path adds a
Content-Length to binary answers), same body apart from a generated response id. Invalid
requests are left to kserve's handlers, so their 400 answers are the same bytes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlengine.components.deploy.kserve_compat import kserve_argv
from tests.serving_fixtures import sample_rows, tiny_model_dir

with kserve_argv():
    from starlette.testclient import TestClient

    from mlengine.components.deploy.http.limits import BINARY_HEADER, FAST_PATH_ENV
    from mlengine.components.deploy.http.server import LocalModelServer
    from mlengine.components.deploy.predictor import RawFeaturePredictor, _plain_v2

NAME = "taxi"
BINARY = BINARY_HEADER.decode()
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def model(model_dir):
    predictor = RawFeaturePredictor(NAME, str(model_dir), max_instances=50)
    assert predictor.load()
    return predictor


def _client(model, monkeypatch, fast: bool) -> TestClient:
    monkeypatch.setenv(FAST_PATH_ENV, "1" if fast else "0")
    server = LocalModelServer(http_port=1)
    server.register_model(model)
    return TestClient(server._rest_server_for_workers().build_app())


@pytest.fixture(scope="module")
def clients(model):
    with pytest.MonkeyPatch.context() as patch:
        fast = _client(model, patch, True)
        slow = _client(model, patch, False)
    return fast, slow


@pytest.fixture(scope="module")
def rows(model):
    return sample_rows(model.spec, 20)


def _v2_json(spec, rows, **extra) -> bytes:
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    return json.dumps({"inputs": [{"name": c.name, "shape": [len(rows)], "datatype": types[c.type],
                                   "data": [row[c.name] for row in rows]} for c in spec.columns], **extra}).encode()


def _v2_binary(spec, rows, outputs=None, request_id=None, float_type="FP32") -> tuple[bytes, dict]:
    import tritonclient.http as triton

    inputs = []
    for c in spec.columns:
        datatype, dtype = ((float_type, np.float32 if float_type == "FP32" else np.float64) if c.type == "float"
                           else ("INT64", np.int64))
        item = triton.InferInput(c.name, [len(rows)], datatype)
        item.set_data_from_numpy(np.array([row[c.name] for row in rows], dtype=dtype), binary_data=True)
        inputs.append(item)
    body, json_length = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs,
                                                                           request_id=request_id or "")
    return body, {BINARY: str(json_length)}


def _same(clients, path: str, body: bytes, headers: dict, model=None) -> tuple:
    """Both answers, checked equal; with ``model``, the bulk path must have answered (kserve's preprocess unused)."""
    fast, slow = clients
    calls = []
    if model is not None:
        original = model.preprocess

        async def counted(*args, **kwargs):
            calls.append(1)
            return await original(*args, **kwargs)

        model.preprocess = counted
    try:
        a = fast.post(path, content=body, headers=headers)
    finally:
        if model is not None:
            del model.preprocess
    assert not calls, "kserve's handler answered a request the bulk path should have"
    b = slow.post(path, content=body, headers=headers)
    assert a.status_code == b.status_code, (a.text, b.text)
    strip = {"x-request-id", "content-length"}
    assert {k: v for k, v in a.headers.items() if k not in strip} == {
        k: v for k, v in b.headers.items() if k not in strip}
    if a.content != b.content:  # only a response id generated per request may differ
        left, right = json.loads(a.content), json.loads(b.content)
        assert list(left) == list(right)
        left.pop("id"), right.pop("id")
        assert left == right
    return a, b


def test_v1_rows_and_columns_answer_like_kserve(clients, model, rows):
    for body in ({"instances": rows}, {"inputs": {c.name: [r[c.name] for r in rows] for c in model.spec.columns}},
                 {"instances": rows[:1], "signature_name": "serving_default"}):
        answer, _ = _same(clients, f"/v1/models/{NAME}:predict", json.dumps(body).encode(), JSON, model)
        assert answer.status_code == 200
        values = next(iter(answer.json().values()))
        np.testing.assert_array_equal(values, model.predict_columns(
            {c.name: [r[c.name] for r in body.get("instances") or rows] for c in model.spec.columns}))


def test_v2_json_answers_like_kserve(clients, model, rows):
    for path, body, headers in [
        (f"/v2/models/{NAME}/infer", _v2_json(model.spec, rows), JSON),
        (f"/v2/models/{NAME}/infer", _v2_json(model.spec, rows, id="abc"), {}),
        (f"/v2/models/{NAME}/versions/1/infer", _v2_json(model.spec, rows, id="abc"), JSON),
        (f"/v2/models/{NAME}/infer", _v2_json(model.spec, rows, id="o", outputs=[{"name": "predictions"}]), JSON),
    ]:
        answer, _ = _same(clients, path, body, headers, model)
        assert answer.status_code == 200


@pytest.mark.parametrize("binary_output", [None, True, False])
@pytest.mark.parametrize("float_type", ["FP32", "FP64"])
def test_v2_binary_tensors_answer_like_kserve(clients, model, rows, binary_output, float_type):
    import tritonclient.http as triton

    outputs = None if binary_output is None else [triton.InferRequestedOutput("predictions",
                                                                              binary_data=binary_output)]
    body, headers = _v2_binary(model.spec, rows, outputs, "r1", float_type)
    answer, _ = _same(clients, f"/v2/models/{NAME}/infer", body, headers, model)
    assert answer.status_code == 200
    if binary_output is not False:
        assert answer.headers["content-length"] == str(len(answer.content))


def test_invalid_requests_get_kserve_s_own_answers(clients, model, rows):
    bad = dict(rows[0], **{model.spec.columns[0].name: 1e9})
    body, headers = _v2_binary(model.spec, rows)
    cases = [
        (f"/v1/models/{NAME}:predict", json.dumps({"instances": [bad]}).encode(), JSON),
        (f"/v1/models/{NAME}:predict", json.dumps({"instances": [True]}).encode(), JSON),
        (f"/v1/models/{NAME}:predict", json.dumps({"instances": rows * 3}).encode(), JSON),  # > max_instances
        (f"/v1/models/{NAME}:predict", b"{nope", JSON),
        (f"/v1/models/{NAME}:predict", b"[]", JSON),
        (f"/v2/models/{NAME}/infer", _v2_json(model.spec, [bad]), JSON),
        (f"/v2/models/{NAME}/infer", _v2_json(model.spec, rows, id=7), JSON),
        (f"/v2/models/{NAME}/infer", b'{"inputs": 3}', JSON),
        (f"/v2/models/{NAME}/infer", _v2_json(model.spec, rows, outputs=[{"name": "nope"}]), JSON),
        (f"/v2/models/{NAME}/versions/2/infer", _v2_json(model.spec, rows), JSON),
        (f"/v2/models/{NAME}/infer?model_version=2", _v2_json(model.spec, rows), JSON),
        ("/v2/models/other/infer", _v2_json(model.spec, rows), JSON),
        (f"/v2/models/{NAME}/infer", body[:-3], headers),  # a truncated tensor
        (f"/v2/models/{NAME}/infer", body, {BINARY: str(len(body) + 1)}),
        (f"/v2/models/{NAME}/infer", body, {BINARY: "x"}),
    ]
    for path, payload, extra in cases:
        answer, _ = _same(clients, path, payload, extra)
        assert answer.status_code in (400, 404), (path, answer.text)


def test_binary_values_out_of_range_are_left_to_the_validator_messages(clients, model, rows):
    column = model.spec.columns[0]
    bad = [dict(row) for row in rows]
    bad[3][column.name] = float("nan")
    body, headers = _v2_binary(model.spec, bad)
    answer, _ = _same(clients, f"/v2/models/{NAME}/infer", body, headers)
    assert answer.status_code == 400 and answer.json()["field"] == column.name


def test_plain_v2_declines_what_it_does_not_decode(model, rows):
    body, headers = _v2_binary(model.spec, rows)
    length = int(headers[BINARY])
    header = json.loads(body[:length])
    assert _plain_v2(header, body, length)[1] is True
    for change in ({"extra": 1}, {"id": 5}, {"parameters": []}, {"outputs": [{"name": 1}]}):
        assert _plain_v2({**header, **change}, body, length) is None
    assert _plain_v2(header, body[:-1], length) is None
    shaped = {**header, "inputs": [{**header["inputs"][0], "shape": [len(rows) + 1]}, *header["inputs"][1:]]}
    assert _plain_v2(shaped, body, length) is None
