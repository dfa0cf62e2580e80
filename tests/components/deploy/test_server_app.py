"""The hardened app in process (Starlette's TestClient, a stand-in model, no TensorFlow): the
repository switch, server faults and the request deadline, each in milliseconds.

The live-server modules check the same behaviour over real sockets with the real model; these
cover what needs a model that misbehaves on purpose or the switch turned on.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib

import pytest
from starlette.testclient import TestClient

from mlengine.components.deploy.kserve_compat import kserve_argv

with kserve_argv():
    import kserve
    from kserve.errors import InferenceError

from mlengine.components.deploy.http.server import LocalModelServer, ServerLimits

NAME = "echo"
# kserve's ORJSONResponse and Starlette's httpx-based TestClient are deprecated upstream, not here
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated.*:UserWarning")


class StandInModel(kserve.Model):
    """Answers ``{"predictions": [1.0]}``, or fails the way ``behaviour`` says."""

    def __init__(self, behaviour: str = "ok"):
        super().__init__(NAME)
        self.behaviour = behaviour
        self.ready = True

    async def predict(self, payload, headers=None):
        if self.behaviour == "raise":
            raise KeyError("secret-key-name")
        if self.behaviour == "inference-error":
            raise InferenceError("secret backend address 10.0.0.7")
        if self.behaviour == "not-implemented":
            raise NotImplementedError("secret missing branch")
        if self.behaviour == "slow":
            await asyncio.sleep(5)
        if self.behaviour == "echo":
            return {"predictions": payload["instances"]}
        return {"predictions": [1.0]}


def client_for(model: StandInModel, **options) -> TestClient:
    server = LocalModelServer(http_port=1, **options)
    server.register_model(model)
    return TestClient(server._rest_server_for_workers().build_app())


def test_with_the_switch_on_unload_really_switches_the_model_off():
    client = client_for(StandInModel(), enable_model_repository=True)
    assert client.post(f"/v2/repository/models/{NAME}/load").status_code == 200
    assert client.post("/v2/repository/models/nope/load").status_code == 404  # kserve: 503
    assert client.post("/v2/repository/models/nope/unload").status_code == 404
    assert "model_repository_extension" in client.get("/v2").json()["extensions"]
    assert client.post(f"/v2/repository/models/{NAME}/unload").json() == {"name": NAME, "unload": True}
    assert client.post(f"/v1/models/{NAME}:predict", json={"instances": [1]}).status_code == 404  # gone


def test_with_the_switch_off_the_repository_routes_do_not_exist():
    client = client_for(StandInModel())
    for action in ("load", "unload"):
        assert client.post(f"/v2/repository/models/{NAME}/{action}").status_code == 404
    assert client.post(f"/v1/models/{NAME}:predict", json={"instances": [1]}).json() == {"predictions": [1.0]}


@pytest.mark.parametrize("behaviour", ["raise", "inference-error", "not-implemented"])
def test_a_failing_model_is_a_500_with_a_request_id_and_no_detail(behaviour, caplog):
    client = client_for(StandInModel(behaviour))
    with caplog.at_level(logging.ERROR):
        answer = client.post(f"/v1/models/{NAME}:predict", json={"instances": [1]}, headers={"x-request-id": "r-1"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal server error (request id r-1)", "request_id": "r-1",
                             "field": None, "index": None}
    assert answer.headers["x-request-id"] == "r-1"
    logged = [r for r in caplog.records if "r-1" in r.getMessage()]
    assert logged and "secret" in logged[0].getMessage() and logged[0].exc_info is not None


def test_a_response_that_does_not_start_in_time_is_a_503():
    client = client_for(StandInModel("slow"), limits=ServerLimits(request_timeout_s=0.2))
    answer = client.post(f"/v1/models/{NAME}:predict", json={"instances": [1]})
    assert answer.status_code == 503
    assert "longer than 0.2 s" in answer.json()["error"] and answer.json()["request_id"]


def _compressed(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # raw deflate, without the zlib header
    return raw.compress(body) + raw.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_request_bodies_are_decoded_before_the_handlers(encoding):
    client = client_for(StandInModel("echo"))
    instances = [[float(i), i * 2.5] for i in range(300)]
    body = _compressed(json.dumps({"instances": instances}).encode(), encoding)
    header = "deflate" if encoding == "raw-deflate" else encoding
    answer = client.post(f"/v1/models/{NAME}:predict", content=body, headers={"content-encoding": header})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": instances}
    twice = gzip.compress(zlib.compress(json.dumps({"instances": [[1.0]]}).encode()))  # applied in header order
    answer = client.post(f"/v1/models/{NAME}:predict", content=twice, headers={"content-encoding": "deflate, gzip"})
    assert answer.json() == {"predictions": [[1.0]]}


def test_a_small_body_that_inflates_past_the_limit_is_a_413_not_memory():
    client = client_for(StandInModel("echo"), limits=ServerLimits(max_body_bytes=100_000))
    bomb = gzip.compress(b"[" + b"0," * 1_000_000 + b"0]")  # 2 MB decoded from about 2 KB
    assert len(bomb) < 100_000
    answer = client.post(f"/v1/models/{NAME}:predict", content=bomb, headers={"content-encoding": "gzip"})
    assert answer.status_code == 413
    assert "100000 bytes once decoded (gzip)" in answer.json()["error"]


def test_corrupt_and_unknown_encodings_get_one_line_json_errors():
    client = client_for(StandInModel("echo"))
    truncated = gzip.compress(json.dumps({"instances": [[1.0]] * 50}).encode())[:-12]
    answer = client.post(f"/v1/models/{NAME}:predict", content=truncated, headers={"content-encoding": "gzip"})
    assert answer.status_code == 400 and answer.json()["error"].startswith("the body is not valid gzip data")
    answer = client.post(f"/v1/models/{NAME}:predict", content=b"{}", headers={"content-encoding": "br"})
    assert answer.status_code == 415
    assert answer.json()["error"] == "Content-Encoding 'br' is not supported (the server reads deflate, gzip)"
    plain = client.post(f"/v1/models/{NAME}:predict", json={"instances": [[2.0]]},
                        headers={"content-encoding": "identity"})
    assert plain.json() == {"predictions": [[2.0]]}
