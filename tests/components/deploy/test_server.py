"""``mlengine serve`` over HTTP on 127.0.0.1: the real kserve ModelServer with the real exported model.

One server process for the module (started and stopped by a fixture, its whole process group
killed at the end). Checks: health/readiness/metadata endpoints, v1 and v2 predictions equal the
in-process model, every bad-input kind answers 4xx JSON naming field and index, a fuzz of random
bodies never gets a 5xx, and the ``mlengine predict`` client.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlengine.components.shared.featurespec import load_spec
from tests.helpers import free_port, running_server, serve_command
from tests.serving_fixtures import in_process_predictions, sample_rows, tiny_model_dir

pytestmark = pytest.mark.e2e  # a live server: not in the quick loop (-m "not e2e")

MAX_INSTANCES = 100
MAX_BODY_BYTES = 200_000
NAME = "taxi"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    command = serve_command(model_dir, port, NAME, "--max-instances", str(MAX_INSTANCES),
                            "--max-body-bytes", str(MAX_BODY_BYTES))
    with running_server(command, log, NAME, port) as server:
        yield server
    assert server["process"].poll() is not None  # no orphan left behind


@pytest.fixture(scope="module")
def spec(model_dir):
    return load_spec(model_dir / "feature_spec.yaml")


@pytest.fixture(scope="module")
def rows(spec):
    return sample_rows(spec, 60, seed=21)


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


def post(session, url, body, **kwargs):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = kwargs.pop("headers", {"content-type": "application/json"})
    return session.post(url, data=data, headers=headers, timeout=30, **kwargs)


def v2_body(spec, rows, **overrides):
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    inputs = []
    for col in spec.columns:
        item = {"name": col.name, "shape": [len(rows)], "datatype": types[col.type],
                "data": [r[col.name] for r in rows]}
        item.update(overrides.get(col.name, {}))
        inputs.append(item)
    return {"id": "req-7", "inputs": inputs}


def test_binds_loopback_only(server):
    import psutil

    addresses = {c.laddr.ip for p in [psutil.Process(server["process"].pid)]
                 for c in p.connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    assert addresses == {"127.0.0.1"}


def test_health_readiness_and_metadata_endpoints(server, session, spec):
    url = server["url"]
    assert session.get(f"{url}/").json() == {"status": "alive"}
    assert session.get(f"{url}/v2/health/live").json() == {"live": True}
    assert session.get(f"{url}/v2/health/ready").json() == {"ready": True}
    assert session.get(f"{url}/v1/models").json() == {"models": [NAME]}
    assert session.get(f"{url}/v1/models/{NAME}").json() == {"name": NAME, "ready": True}
    assert session.get(f"{url}/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}
    server_meta = session.get(f"{url}/v2").json()
    assert server_meta["name"] and server_meta["version"]
    meta = session.get(f"{url}/v2/models/{NAME}").json()
    assert [i["name"] for i in meta["inputs"]] == spec.column_names
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]
    missing = session.get(f"{url}/v2/models/nope/ready")
    assert missing.status_code == 404


def test_v1_predictions_equal_in_process_predictions(server, session, model_dir, rows):
    answer = post(session, f"{server['url']}/v1/models/{NAME}:predict", {"instances": rows})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], in_process_predictions(model_dir, rows),
                               rtol=1e-5, atol=1e-4)


def test_columnar_v1_predictions_equal_in_process_predictions(server, session, model_dir, rows):
    columnar = {name: [row[name] for row in rows] for name in rows[0]}
    answer = post(session, f"{server['url']}/v1/models/{NAME}:predict", {"inputs": columnar})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], in_process_predictions(model_dir, rows), rtol=1e-5, atol=1e-4)


def test_v2_predictions_equal_in_process_predictions(server, session, model_dir, spec, rows):
    answer = post(session, f"{server['url']}/v2/models/{NAME}/infer", v2_body(spec, rows))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "req-7" and body["model_name"] == NAME
    (output,) = body["outputs"]
    assert output["name"] == "predictions" and output["datatype"] == "FP32" and output["shape"] == [len(rows)]
    np.testing.assert_allclose(output["data"], in_process_predictions(model_dir, rows), rtol=1e-5, atol=1e-4)


def test_concurrent_requests_each_get_their_own_predictions(server, model_dir, rows):
    expected = in_process_predictions(model_dir, rows)
    url = f"{server['url']}/v1/models/{NAME}:predict"
    slices = [(i % 50, i % 50 + 1 + i % 7) for i in range(48)]  # batches of 1..7 rows, overlapping

    def one(bounds):
        start, stop = bounds
        with requests.Session() as s:
            return bounds, post(s, url, {"instances": rows[start:stop]})

    with ThreadPoolExecutor(8) as pool:
        for (start, stop), answer in pool.map(one, slices):
            assert answer.status_code == 200
            np.testing.assert_allclose(answer.json()["predictions"], expected[start:stop], rtol=1e-5, atol=1e-4)


def _bad_v1(rows, **changes):
    bad = [dict(r) for r in rows[:4]]
    bad[3].update(changes)
    return {"instances": bad}


def _columnar(rows, **changes):
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    columns.update(changes)
    return {"inputs": columns}


BAD_V1 = [
    ("malformed JSON", lambda rows: b'{"instances": [', 400, None, None),
    ("not an object", lambda rows: [1, 2, 3], 400, "instances", None),
    ("no instances", lambda rows: {"rows": rows[:2]}, 400, "instances", None),
    ("columnar length mismatch", lambda rows: _columnar(rows[:3], hourofday=[1, 2]), 400, "hourofday", None),
    ("columnar bad value", lambda rows: _columnar(rows[:3], dayofweek=[1, 2, 8]), 400, "dayofweek", 2),
    ("empty instances", lambda rows: {"instances": []}, 400, "instances", None),
    ("too many instances", lambda rows: {"instances": [rows[0]] * (MAX_INSTANCES + 1)}, 400, "instances", None),
    ("missing feature", lambda rows: {"instances": [rows[0], {k: v for k, v in rows[1].items()
                                                               if k != "dayofweek"}]}, 400, "dayofweek", 1),
    ("extra feature", lambda rows: _bad_v1(rows, tip=2.0), 400, "tip", 3),
    ("string for float", lambda rows: _bad_v1(rows, pickup_latitude="40.7"), 400, "pickup_latitude", 3),
    ("bool for int", lambda rows: _bad_v1(rows, passenger_count=True), 400, "passenger_count", 3),
    ("fraction for int", lambda rows: _bad_v1(rows, passenger_count=1.5), 400, "passenger_count", 3),
    ("null", lambda rows: _bad_v1(rows, hourofday=None), 400, "hourofday", 3),
    ("out of range", lambda rows: _bad_v1(rows, dropoff_latitude=45.0), 400, "dropoff_latitude", 3),
    ("huge number", lambda rows: _bad_v1(rows, pickup_longitude=1e308), 400, "pickup_longitude", 3),
    ("NaN literal", lambda rows: json.dumps(_bad_v1(rows, pickup_longitude=math.nan)), 400, None, None),
    ("Infinity literal", lambda rows: json.dumps(_bad_v1(rows, pickup_longitude=math.inf)), 400, None, None),
]


@pytest.mark.parametrize(("kind", "make", "status", "field", "index"), BAD_V1, ids=[case[0] for case in BAD_V1])
def test_bad_v1_input_gets_4xx_json_naming_field_and_index(server, session, rows, kind, make, status, field, index):
    answer = post(session, f"{server['url']}/v1/models/{NAME}:predict", make(rows))
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["field"] == field and body["index"] == index
    assert body["error"] and "\n" not in body["error"]
    if index is not None:
        assert f"instances[{index}].{field}" in body["error"] or f"inputs.{field}[{index}]" in body["error"]


BAD_V2 = [
    ("malformed JSON", lambda spec, rows: b'{"inputs": [', None),
    ("inputs not a list", lambda spec, rows: {"inputs": 5}, "inputs"),
    ("input without name", lambda spec, rows: {"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]},
     "inputs.0.name"),
    ("missing column", lambda spec, rows: {"inputs": v2_body(spec, rows[:2])["inputs"][1:]}, "pickup_longitude"),
    ("wrong datatype", lambda spec, rows: v2_body(spec, rows[:2], hourofday={"datatype": "FP32"}), "hourofday"),
    ("shape mismatch", lambda spec, rows: v2_body(spec, rows[:2], pickup_latitude={"shape": [5]}), "pickup_latitude"),
    ("string value", lambda spec, rows: v2_body(spec, rows[:3], dayofweek={"data": [1, "x", 2]}), "dayofweek"),
    ("NaN value", lambda spec, rows: json.dumps(v2_body(spec, rows[:2], pickup_latitude={"data": [40.7, math.nan]})),
     "pickup_latitude"),
    ("out of range", lambda spec, rows: v2_body(spec, rows[:3], hourofday={"data": [1, 2, 99]}), "hourofday"),
    ("too many", lambda spec, rows: v2_body(spec, [rows[0]] * (MAX_INSTANCES + 1)), "pickup_longitude"),
]


@pytest.mark.parametrize(("kind", "make", "field"), BAD_V2, ids=[case[0] for case in BAD_V2])
def test_bad_v2_input_gets_4xx_json_naming_field(server, session, spec, rows, kind, make, field):
    answer = post(session, f"{server['url']}/v2/models/{NAME}/infer", make(spec, rows))
    assert 400 <= answer.status_code < 500, answer.text
    body = answer.json()
    assert body["error"] and body["field"] == field
    if kind in ("NaN value", "string value", "out of range"):
        assert isinstance(body["index"], int)


def test_oversized_bodies_are_refused_with_413(server, session, rows):
    url = f"{server['url']}/v1/models/{NAME}:predict"
    big = json.dumps({"instances": [rows[0]] * 3000}).encode()
    assert len(big) > MAX_BODY_BYTES
    answer = post(session, url, big)
    assert answer.status_code == 413
    assert "larger than the limit" in answer.json()["error"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for start in range(0, len(big), 16_384):
            yield big[start:start + 16_384]

    streamed = session.post(url, data=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert streamed.status_code == 413


def test_the_server_still_answers_after_every_kind_of_bad_request(server, session, model_dir, rows):
    answer = post(session, f"{server['url']}/v1/models/{NAME}:predict", {"instances": rows[:3]})
    assert answer.status_code == 200
    np.testing.assert_allclose(answer.json()["predictions"], in_process_predictions(model_dir, rows[:3]),
                               rtol=1e-5, atol=1e-4)
    assert server["process"].poll() is None


# --- fuzz ---------------------------------------------------------------------------------------------------
SPEC_NAMES = load_spec(None).column_names
json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.text(max_size=6)
             | st.floats(allow_nan=False, allow_infinity=False) | st.floats(min_value=-74.4, max_value=41.1))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
instance = st.dictionaries(st.sampled_from([*SPEC_NAMES, "extra"]), json_leaf, max_size=9)
columnar = st.dictionaries(st.sampled_from([*SPEC_NAMES, "extra"]), st.lists(json_leaf, max_size=3) | json_leaf,
                           max_size=9)
v1_bodies = st.one_of(json_value, st.fixed_dictionaries({"instances": st.lists(instance, max_size=4)}),
                      st.fixed_dictionaries({"instances": json_value}), st.fixed_dictionaries({"inputs": columnar}))
v2_input = st.fixed_dictionaries({"name": st.sampled_from([*SPEC_NAMES, "x"]) | json_leaf,
                                  "shape": st.lists(st.integers(min_value=-2, max_value=4), max_size=3) | json_leaf,
                                  "datatype": st.sampled_from(["FP32", "FP64", "INT64", "INT32", "BYTES", "BOOL",
                                                               "FP16", "UINT8", "x"]) | json_leaf,
                                  "data": st.lists(json_leaf, max_size=4) | json_value})
v2_bodies = st.one_of(json_value, st.fixed_dictionaries({"inputs": st.lists(v2_input, max_size=8)}),
                      st.fixed_dictionaries({"inputs": st.lists(v2_input, max_size=3)},
                                            optional={"id": json_leaf, "parameters": json_value,
                                                      "outputs": json_value}))
raw_bytes = st.binary(max_size=64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(protocol=st.sampled_from(["v1", "v2"]), body=st.one_of(v1_bodies, v2_bodies), raw=st.none() | raw_bytes)
def test_fuzzed_bodies_never_get_a_5xx(server, session, protocol, body, raw):
    path = f"/v1/models/{NAME}:predict" if protocol == "v1" else f"/v2/models/{NAME}/infer"
    answer = post(session, server["url"] + path, raw if raw is not None else json.dumps(body))
    assert answer.status_code < 500, answer.text
    if answer.status_code == 200:
        payload = answer.json()
        if protocol == "v1" and "instances" in body:
            predictions = payload["predictions"]
            count = len(body["instances"])
        elif protocol == "v1":
            predictions = payload["outputs"]
            count = len(next(iter(body["inputs"].values())))
        else:
            predictions = payload["outputs"][0]["data"]
            count = payload["outputs"][0]["shape"][0]
        assert len(predictions) == count and all(math.isfinite(p) for p in predictions)
    else:
        assert "error" in answer.json()


def test_no_traceback_in_the_server_log(server):
    log = server["log"].read_text(errors="replace")
    assert "Traceback" not in log
    assert "rejected request" in log  # bad requests are logged as one line each


# --- the mlengine predict client ------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_mlengine_predict_prints_one_prediction_per_row(server, model_dir, rows, tmp_path, capsys, protocol):
    from mlengine.cli import main

    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("\n".join(json.dumps(r) for r in rows[:23]) + "\n\n", encoding="utf-8")
    code = main(["predict", "--url", server["url"], "--file", str(rows_file), "--protocol", protocol, "--batch", "5"])
    assert code == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose([p["prediction"] for p in printed], in_process_predictions(model_dir, rows[:23]),
                               rtol=1e-5, atol=1e-4)


def test_mlengine_predict_shows_the_server_error_as_one_line_naming_the_file_line(server, rows, tmp_path, capsys):
    from mlengine.cli import main

    rows_file = tmp_path / "rows.jsonl"
    bad = dict(rows[1], hourofday=30)
    rows_file.write_text("\n".join(json.dumps(r) for r in [rows[0], rows[2], bad]) + "\n", encoding="utf-8")
    code = main(["predict", "--url", server["url"], "--file", str(rows_file), "--batch", "10"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mlengine predict: error: {rows_file}:3: {server['url']}/v1/models/{NAME}:predict: HTTP 400: "
                   f"instances[2].hourofday: 30 is outside the range [0, 23]")


def test_mlengine_predict_reports_an_unreachable_server(tmp_path, capsys, rows):
    from mlengine.cli import main

    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    code = main(["predict", "--url", f"http://127.0.0.1:{free_port()}", "--file", str(rows_file), "--name", "m",
                 "--timeout", "5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach the server" in err and len(err.strip().splitlines()) == 1
