"""The served routes under clients nobody here wrote: no unauthenticated unload, versions, 4xx for junk.

Against the shared ``live_server`` (real ``mlengine serve``): the model repository extension is
off (unload/load are 404 and the model keeps predicting), unknown routes and methods are
404/405, ``model_version`` "1" is served and any other is a 404 naming the parameter, unknown
model names are 404 on every model route, malformed query strings and headers are 4xx, every
answer carries ``x-request-id``, and v2 JSON bodies need no Content-Type (as in Triton). The
``--enable-model-repository`` switch itself is checked without a server (route table, CLI).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlengine.components.shared.featurespec import load_spec
from tests.components.deploy.serving_helpers import raw_exchange, status_of
from tests.serving_fixtures import in_process_predictions, sample_rows

pytestmark = pytest.mark.e2e  # a live server: not in the quick loop (-m "not e2e")

MODEL_ROUTES = ["GET /v1/models/{m}", "POST /v1/models/{m}:predict", "GET /v2/models/{m}", "GET /v2/models/{m}/ready",
                "POST /v2/models/{m}/infer", "GET /v2/models/{m}/versions/1", "GET /v2/models/{m}/versions/1/ready",
                "POST /v2/models/{m}/versions/1/infer"]


@pytest.fixture(scope="module")
def spec(served_model_dir):
    return load_spec(served_model_dir / "feature_spec.yaml")


@pytest.fixture(scope="module")
def rows(spec):
    return sample_rows(spec, 12, seed=31)


@pytest.fixture(scope="module")
def expected(served_model_dir, rows):
    return in_process_predictions(served_model_dir, rows)


def v2_body(spec, rows) -> dict:
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    return {"inputs": [{"name": c.name, "shape": [len(rows)], "datatype": types[c.type],
                        "data": [r[c.name] for r in rows]} for c in spec.columns]}


def predict(url, name, rows):
    return requests.post(f"{url}/v1/models/{name}:predict", json={"instances": rows}, timeout=30)


# --- the repository extension is off ----------------------------------------------------------------------
def test_unload_is_404_and_the_model_keeps_predicting(live_server, rows, expected):
    url, name = live_server["url"], live_server["name"]
    for action in ("unload", "load"):
        answer = requests.post(f"{url}/v2/repository/models/{name}/{action}", timeout=10)
        assert answer.status_code == 404, answer.text
        assert "unload" not in answer.json()
    assert requests.get(f"{url}/v2/repository/index", timeout=10).status_code == 404
    after = predict(url, name, rows)
    assert after.status_code == 200
    np.testing.assert_allclose(after.json()["predictions"], expected, rtol=1e-5, atol=1e-4)
    assert requests.get(f"{url}/v2/models/{name}/ready", timeout=10).json()["ready"] is True


def test_server_metadata_does_not_advertise_the_repository_extension(live_server):
    meta = requests.get(f"{live_server['url']}/v2", timeout=10).json()
    assert meta["name"] == "kserve" and "model_repository_extension" not in meta["extensions"]
    paths = requests.get(f"{live_server['url']}/openapi.json", timeout=10).json()["paths"]
    assert not [p for p in paths if p.startswith("/v2/repository")]
    assert not [p for p in paths if p.endswith(":explain")]


def test_model_repository_routes_only_with_the_explicit_switch():
    from fastapi import FastAPI

    from mlengine.components.deploy.http.server import LocalModelServer

    def paths(**options):
        app = FastAPI()
        LocalModelServer(http_port=1, **options)._rest_server_for_workers()._register_endpoints(app)
        return {route.path for route in app.routes}

    assert not {p for p in paths() if p.startswith("/v2/repository")}
    assert not {p for p in paths(hardened=False) if p.startswith("/v2/repository")}  # the benchmark's stock server
    assert {"/v2/repository/models/{model_name}/unload", "/v2/repository/models/{model_name}/load"} <= paths(
        enable_model_repository=True)


def test_the_cli_passes_the_repository_switch_and_the_limits(monkeypatch, tmp_path):
    import mlengine.components.deploy.http.server as server_module
    from mlengine.cli import main

    calls = []
    monkeypatch.setattr(server_module, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the serve handler trims sys.argv for kserve
    assert main(["serve", "--model", str(tmp_path), "--read-timeout", "3", "--max-header-bytes", "4096"]) == 0
    assert main(["serve", "--model", str(tmp_path), "--enable-model-repository", "--request-timeout", "9",
                 "--head-timeout", "2.5", "--max-pending-connections", "100"]) == 0
    (_, first), (_, second) = calls
    assert first["enable_model_repository"] is False and second["enable_model_repository"] is True
    assert first["limits"].read_timeout_s == 3 and first["limits"].max_header_bytes == 4096
    assert second["limits"].request_timeout_s == 9 and second["limits"].read_timeout_s == 30
    assert first["limits"].head_timeout_s == 5 and first["limits"].max_pending_connections == 2048
    assert second["limits"].head_timeout_s == 2.5 and second["limits"].max_pending_connections == 100


def test_server_limits_reject_non_positive_values():
    from mlengine.components.deploy.http.server import ServerLimits

    with pytest.raises(ValueError, match="read_timeout_s"):
        ServerLimits(read_timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        ServerLimits(max_connections=-1)


# --- routes, methods, names, versions ---------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("POST", "/v3/models/taxi/infer", 404), ("GET", "/docs", 404),
    ("DELETE", "/v2", 405), ("PUT", "/v2/models/taxi/infer", 405), ("GET", "/v2/models/taxi/infer", 405),
    ("PATCH", "/v1/models/taxi:predict", 405), ("POST", "/v1/models/taxi:explain", 405),
    ("POST", "/v2/models/taxi/versions/1/ready", 405),
])
def test_unknown_routes_and_methods_are_404_or_405(live_server, method, path, status):
    answer = requests.request(method, live_server["url"] + path, timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_unknown_model_names_are_404_on_every_model_route(live_server, spec, rows, route):
    method, path = route.split(" ")
    body = v2_body(spec, rows[:2]) if path.endswith("/infer") else {"instances": rows[:2]}
    answer = requests.request(method, live_server["url"] + path.format(m="no-such-model"),
                              json=body if method == "POST" else None, timeout=10)
    assert answer.status_code == 404, answer.text
    assert answer.json()["field"] == "model_name"


def test_version_1_is_served_on_every_versioned_route(live_server, spec, rows, expected):
    url, name = live_server["url"], live_server["name"]
    meta = requests.get(f"{url}/v2/models/{name}/versions/1", timeout=10).json()
    assert meta["versions"] == ["1"] and len(meta["inputs"]) == len(spec.columns)
    assert requests.get(f"{url}/v2/models/{name}?model_version=1", timeout=10).json()["versions"] == ["1"]
    assert requests.get(f"{url}/v2/models/{name}/versions/1/ready", timeout=10).json() == {"name": name, "ready": True}
    for path in (f"/v2/models/{name}/versions/1/infer", f"/v2/models/{name}/infer?model_version=1"):
        answer = requests.post(url + path, json=v2_body(spec, rows), timeout=30)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["outputs"][0]["data"], expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("version", ["2", "null", "0", "-1", "%00", "1.0", "x" * 300])
def test_other_model_versions_are_404_naming_the_parameter(live_server, spec, rows, version):
    url, name = live_server["url"], live_server["name"]
    answers = [requests.get(f"{url}/v2/models/{name}/versions/{version}", timeout=10),
               requests.get(f"{url}/v2/models/{name}/versions/{version}/ready", timeout=10),
               requests.get(f"{url}/v2/models/{name}/ready", params={"model_version": version}, timeout=10),
               requests.get(f"{url}/v2/models/{name}", params={"model_version": version}, timeout=10),
               requests.post(f"{url}/v2/models/{name}/versions/{version}/infer", json=v2_body(spec, rows[:1]),
                             timeout=10),
               requests.post(f"{url}/v2/models/{name}/infer", params={"model_version": version},
                             json=v2_body(spec, rows[:1]), timeout=10)]
    for answer in answers:
        assert answer.status_code == 404, (answer.request.url, answer.text)
        assert answer.json()["field"] == "model_version" and "model_version" in answer.json()["error"]


# --- malformed query strings and headers ------------------------------------------------------------------
JUNK_QUERIES = ["?%", "?%zz=1", "?a=%ff%fe", "?model_version", "?model_version=&model_version=2", "?" + "a=1&" * 500,
                "?\u00e9=1".encode().decode("latin-1"), "?model_version=%0d%0aX-Injected:1"]


@pytest.mark.parametrize("query", JUNK_QUERIES)
def test_malformed_query_strings_are_never_a_5xx(live_server, spec, rows, query):
    url, name = live_server["url"], live_server["name"]
    for method, path, body in (("GET", f"/v2/models/{name}", None), ("GET", f"/v2/models/{name}/ready", None),
                               ("POST", f"/v2/models/{name}/infer", v2_body(spec, rows[:1])),
                               ("POST", f"/v1/models/{name}:predict", {"instances": rows[:1]}), ("GET", "/", None)):
        answer = requests.request(method, url + path + query, json=body, timeout=10)
        assert answer.status_code < 500, (method, path, query, answer.text)
        assert "x-injected" not in {k.lower() for k in answer.headers}


JUNK_HEADERS = [
    {"content-type": "application/json; charset=no-such-charset"},
    {"content-type": "text/plain"},
    {"content-type": "multipart/form-data; boundary=x"},
    {"content-type": "application/x-www-form-urlencoded"},
    {"content-type": "application/cloudevents+json"},
    {"ce-specversion": "1.0"},  # half a binary CloudEvent
    {"ce-specversion": "9.9", "ce-id": "1", "ce-source": "x", "ce-type": "y"},
    {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "x", "ce-type": "y"},  # a whole binary CloudEvent
    {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "x", "ce-type": "y", "ce-time": "yesterday"},
    {"inference-header-content-length": "-5"},
    {"inference-header-content-length": "abc"},
    {"inference-header-content-length": "99999999"},
    {"inference-header-content-length": "\u00b2"},  # a digit to str.isdigit, not to int()
    {"content-encoding": "gzip"},
    {"accept": "application/xml"},
    {"x-request-id": "a\tb" + "c" * 500},
    {"transfer-encoding": "gzip, chunked"},
]


@pytest.mark.parametrize("headers", JUNK_HEADERS, ids=lambda h: ",".join(f"{k}={v[:20]}" for k, v in h.items()))
def test_malformed_or_unusual_headers_are_never_a_5xx(live_server, spec, rows, headers):
    url, name = live_server["url"], live_server["name"]
    for path, body in ((f"/v1/models/{name}:predict", {"instances": rows[:2]}),
                       (f"/v2/models/{name}/infer", v2_body(spec, rows[:2]))):
        answer = requests.post(url + path, data=json.dumps(body), headers=headers, timeout=10)
        assert answer.status_code < 500, (path, headers, answer.text)
        assert "Traceback" not in answer.text


HEADER_NAMES = ["content-type", "accept", "accept-encoding", "content-encoding", "x-request-id", "expect",
                "inference-header-content-length", "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time",
                "ce-datacontenttype", "x-forwarded-for", "authorization", "cookie", "user-agent"]
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=30).map(str.strip)  # requests refuses leading/trailing whitespace (\xa0 too)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(headers=st.dictionaries(st.sampled_from(HEADER_NAMES) | st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
                               header_values, max_size=5),
       v2=st.booleans(), body_kind=st.sampled_from(["valid", "bytes", "empty"]))
def test_fuzzed_headers_are_never_a_5xx(live_server, spec, rows, headers, v2, body_kind):
    name = live_server["name"]
    path = f"/v2/models/{name}/infer" if v2 else f"/v1/models/{name}:predict"
    body = {"valid": json.dumps(v2_body(spec, rows[:2]) if v2 else {"instances": rows[:2]}).encode(),
            "bytes": b"\x00\xff{[", "empty": b""}[body_kind]
    answer = requests.post(live_server["url"] + path, data=body, headers=headers, timeout=10)
    assert answer.status_code < 500, (headers, answer.text)


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GARBAGE\r\n\r\n",
])
def test_malformed_http_gets_a_4xx_answer(live_server, request_bytes):
    assert 400 <= (status_of(raw_exchange(live_server["port"], request_bytes)) or 0) < 500


# --- request ids, Content-Type ----------------------------------------------------------------------------
def test_every_answer_carries_a_request_id(live_server, rows):
    url, name = live_server["url"], live_server["name"]
    ok = predict(url, name, rows[:1])
    bad = requests.post(f"{url}/v1/models/{name}:predict", json={"instances": []}, timeout=10)
    missing = requests.get(f"{url}/nope", timeout=10)
    ids = [a.headers["x-request-id"] for a in (ok, bad, missing)]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    mine = requests.get(f"{url}/v2/health/live", headers={"x-request-id": "client-id-7"}, timeout=10)
    assert mine.headers["x-request-id"] == "client-id-7"
    odd = requests.get(f"{url}/v2/health/live", headers={"x-request-id": "has space"}, timeout=10)
    assert odd.headers["x-request-id"] != "has space"  # not echoed: a new id instead


def test_v2_json_without_content_type_is_json_and_binary_still_needs_its_header(live_server, spec, rows, expected):
    url, name = live_server["url"], live_server["name"]
    body = json.dumps(v2_body(spec, rows)).encode()
    plain = requests.post(f"{url}/v2/models/{name}/infer", data=body, timeout=30)  # bytes: requests adds no type
    assert "content-type" not in {k.lower() for k in plain.request.headers}
    assert plain.status_code == 200, plain.text
    np.testing.assert_allclose(plain.json()["outputs"][0]["data"], expected, rtol=1e-5, atol=1e-4)
    junk = requests.post(f"{url}/v2/models/{name}/infer", data=b"\x00\x01 not json", timeout=30)
    assert junk.status_code == 400 and junk.json()["error"]
    broken = requests.post(f"{url}/v2/models/{name}/infer", data=b'{"inputs": [', timeout=30)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    # a binary header makes the body binary (JSON header + raw tensors), whatever it looks like
    binary = requests.post(f"{url}/v2/models/{name}/infer", data=body,
                           headers={"inference-header-content-length": str(len(body))},
                           timeout=30)
    assert binary.status_code == 200, binary.text
    np.testing.assert_allclose(binary.json()["outputs"][0]["data"], expected, rtol=1e-5, atol=1e-4)


def test_the_server_image_entrypoint_gets_the_slow_client_protection(monkeypatch, tmp_path):
    import json as json_module
    import re
    from pathlib import Path

    import mlengine.components.deploy.http.server as server_module
    from mlengine.cli import main

    dockerfile = (Path(__file__).resolve().parents[3] / "images" / "Dockerfile").read_text()
    stage = dockerfile[dockerfile.index("AS server"):]
    entrypoint = json_module.loads(re.search(r"^ENTRYPOINT (\[.*\])$", stage, re.M).group(1))
    assert entrypoint[:4] == ["python", "-m", "mlengine.cli", "serve"]  # the same server code and defaults
    calls = []
    monkeypatch.setattr(server_module, "serve", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    args = [a if a != "/mnt/models" else str(tmp_path) for a in entrypoint[3:]]
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in args]  # the test binds loopback only
    from tests.helpers import free_port

    assert main([*args, "--model_name=taxi", f"--http_port={free_port()}"]) == 0  # what the ServingRuntime appends
    (limits,) = [call["limits"] for call in calls]
    assert limits.head_timeout_s == 5 and limits.max_connections == 256 and limits.max_pending_connections == 2048
