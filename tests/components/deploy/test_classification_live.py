"""A classifier behind a real ``mlengine serve``: tritonclient JSON and binary modes, ``mlengine predict``,
and every way of asking (v1, v2, the CLI, batch prediction) agreeing on the same rows.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests
import tritonclient.http as tritonclient_http

from mlengine.cli import main
from mlengine.components.batch_predict.executor import run as batch_predict
from mlengine.components.deploy.client import PredictionClient
from tests.classification_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC, write_fake_classifier
from tests.helpers import free_port, running_server, serve_command

pytestmark = pytest.mark.e2e  # a live server: not in the quick loop (-m "not e2e")

NAME = "flowers"
ROWS = 30
SPECS = {"string": IRIS_LIKE_SPEC, "int": BINARY_SPEC}


@pytest.fixture(scope="module", params=list(SPECS), ids=lambda kind: f"{kind}-labels")
def live(request, tmp_path_factory):
    """(raw spec, model dir, server dict) for one vocabulary type; the server is stopped at the end."""
    raw_spec = SPECS[request.param]
    work = tmp_path_factory.mktemp(f"live-classifier-{request.param}")
    model_dir = write_fake_classifier(work / "model", raw_spec)
    port = free_port()
    with running_server(serve_command(model_dir, port, NAME), work / "server.log", NAME, port) as server:
        yield raw_spec, model_dir, server
    assert server["process"].poll() is not None


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    rng = np.random.default_rng(17)
    return [{"petal_length": float(np.float32(rng.uniform(0, 10))), "colour": str(rng.choice(["red", "blue"]))}
            for _ in range(ROWS)]


@pytest.fixture(scope="module")
def batch(live, rows, tmp_path_factory) -> tuple[list, np.ndarray]:
    """(classes, probabilities) of ``mlengine batch-predict``'s executor on the same rows."""
    _, model_dir, _ = live
    work = tmp_path_factory.mktemp("batch")
    pacsv.write_csv(pa.table({"petal_length": [r["petal_length"] for r in rows],
                              "colour": [r["colour"] for r in rows]}), work / "rows.csv")
    batch_predict(str(model_dir), str(work / "rows.csv"), str(work / "out"))
    table = pq.read_table(next((work / "out").glob("predictions-*.parquet")))
    return table.column("prediction").to_pylist(), np.array(table.column("probabilities").to_pylist(), np.float32)


def test_v1_v2_and_the_client_agree_with_batch_prediction(live, rows, batch):
    _, _, server = live
    labels, probabilities = batch
    v1 = requests.post(f"{server['url']}/v1/models/{NAME}:predict", json={"instances": rows}, timeout=30).json()
    assert [p["label"] for p in v1["predictions"]] == labels
    np.testing.assert_allclose([p["probabilities"] for p in v1["predictions"]], probabilities, rtol=1e-6)
    for protocol in ("v1", "v2"):
        with PredictionClient(server["url"], protocol=protocol) as client:
            answered = client.predict_rows(rows)
        assert [a["prediction"] for a in answered] == labels, protocol
        np.testing.assert_allclose([a["probabilities"] for a in answered], probabilities, rtol=1e-6)


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_mlengine_predict_prints_the_class_and_probabilities(live, rows, batch, protocol, tmp_path, capsys):
    _, _, server = live
    labels, probabilities = batch
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["predict", "--url", server["url"], "--file", str(rows_file), "--protocol", protocol,
                 "--batch", "7"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["prediction"] for p in printed] == labels
    np.testing.assert_allclose([p["probabilities"] for p in printed], probabilities, rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_json_and_binary_modes(live, rows, batch, binary):
    raw_spec, _, server = live
    labels, probabilities = batch
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server['port']}", network_timeout=30.0)
    try:
        meta = client.get_model_metadata(NAME)
        assert meta["parameters"]["classes"] == raw_spec["label"]["vocabulary"]
        dtypes = {"FP32": np.float32, "BYTES": np.object_}
        inputs = []
        for item in meta["inputs"]:
            tensor = tritonclient_http.InferInput(item["name"], [ROWS], item["datatype"])
            tensor.set_data_from_numpy(np.array([r[item["name"]] for r in rows], dtype=dtypes[item["datatype"]]),
                                       binary_data=binary)
            inputs.append(tensor)
        outputs = [tritonclient_http.InferRequestedOutput(name, binary_data=binary)
                   for name in ("label", "probabilities")]
        result = client.infer(NAME, inputs, outputs=outputs, request_id="t-1")
    finally:
        client.close()
    got = result.as_numpy("label").tolist()
    assert [v.decode() if isinstance(v, bytes) else v for v in got] == labels
    assert result.as_numpy("probabilities").shape == (ROWS, len(raw_spec["label"]["vocabulary"]))
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6)
    assert result.get_response()["id"] == "t-1"


def test_the_deploy_smoke_test_accepts_a_class_with_probabilities(live):
    from mlengine.components.deploy.executor import example_instance, smoke_test
    from mlengine.components.deploy.report import prediction_text
    from mlengine.components.shared.featurespec import spec_from_dict

    raw_spec, _, server = live
    answer = smoke_test(f"{server['url']}/v1/models/{NAME}:predict", example_instance(spec_from_dict(raw_spec)))
    assert answer["label"] in raw_spec["label"]["vocabulary"]
    assert len(answer["probabilities"]) == len(raw_spec["label"]["vocabulary"])
    assert prediction_text(answer).startswith(f"class `{answer['label']}` (probability ")
    assert prediction_text(12.345678) == "12.3457"
