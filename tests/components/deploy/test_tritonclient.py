"""NVIDIA's ``tritonclient[http]`` (the most used Open Inference Protocol client) against ``mlengine serve``.

tritonclient sends JSON bodies without a Content-Type and binary tensors with the
``Inference-Header-Content-Length`` header; both, with JSON or binary outputs, with and without
the model version, must return the predictions of the in-process model.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as tritonclient_http  # the dev extra: a missing client fails, never skips
from tritonclient.utils import InferenceServerException

from mlengine.components.shared.featurespec import load_spec
from tests.serving_fixtures import in_process_predictions, sample_rows

pytestmark = pytest.mark.e2e  # a live server: not in the quick loop (-m "not e2e")

ROWS = 40


@pytest.fixture(scope="module")
def spec(served_model_dir):
    return load_spec(served_model_dir / "feature_spec.yaml")


@pytest.fixture(scope="module")
def rows(spec):
    return sample_rows(spec, ROWS, seed=41)


@pytest.fixture(scope="module")
def expected(served_model_dir, rows):
    return in_process_predictions(served_model_dir, rows)


@pytest.fixture(scope="module")
def client(live_server):
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{live_server['port']}", network_timeout=30.0)
    yield client
    client.close()


def triton_inputs(client, name: str, rows: list[dict], binary: bool) -> list:
    """One tritonclient input per column, typed from the server's own metadata."""
    dtypes = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BYTES": np.object_}
    inputs = []
    for meta in client.get_model_metadata(name)["inputs"]:
        values = np.array([row[meta["name"]] for row in rows], dtype=dtypes[meta["datatype"]])
        item = tritonclient_http.InferInput(meta["name"], [len(rows)], meta["datatype"])
        item.set_data_from_numpy(values, binary_data=binary)
        inputs.append(item)
    return inputs


def test_health_and_metadata_through_tritonclient(client, live_server, spec):
    name = live_server["name"]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(name) and client.is_model_ready(name, model_version="1")
    assert not client.is_model_ready(name, model_version="2")
    meta = client.get_model_metadata(name)
    assert [i["name"] for i in meta["inputs"]] == spec.column_names and meta["versions"] == ["1"]
    assert client.get_server_metadata()["extensions"] == []  # no repository extension


@pytest.mark.parametrize(("binary_inputs", "binary_outputs", "version"), [
    (False, False, ""), (True, True, ""), (True, False, "1"), (False, True, "1"),
], ids=["json", "binary", "binary-in-json-out-v1", "json-in-binary-out-v1"])
def test_tritonclient_predictions_equal_in_process_predictions(client, live_server, rows, expected,
                                                               binary_inputs, binary_outputs, version):
    name = live_server["name"]
    result = client.infer(name, triton_inputs(client, name, rows, binary_inputs), model_version=version,
                          request_id="triton-7",
                          outputs=[tritonclient_http.InferRequestedOutput("predictions", binary_data=binary_outputs)])
    predictions = result.as_numpy("predictions")
    assert predictions.shape == (ROWS,) and predictions.dtype == np.float32
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-4)
    response = result.get_response()
    assert response["id"] == "triton-7" and response["model_name"] == name


def test_tritonclient_sees_4xx_for_bad_input_and_unknown_versions(client, live_server, rows):
    name = live_server["name"]
    bad = [dict(row) for row in rows[:3]]
    bad[1]["hourofday"] = 99
    for binary in (False, True):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, triton_inputs(client, name, bad, binary))
        assert caught.value.status() == "400" and "hourofday" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, triton_inputs(client, name, rows[:2], True), model_version="7")
    assert caught.value.status() == "404" and "model_version" in caught.value.message()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests_get_the_same_predictions(client, live_server, rows, expected, algorithm):
    # tritonclient's request_compression_algorithm: Content-Encoding on the body, as Triton reads it
    name = live_server["name"]
    for binary in (False, True):
        result = client.infer(name, triton_inputs(client, name, rows, binary), request_compression_algorithm=algorithm)
        np.testing.assert_allclose(result.as_numpy("predictions"), expected, rtol=1e-5, atol=1e-4)
