"""An S3-compatible server (moto's, in-process on 127.0.0.1) and the environment that points at it."""

from __future__ import annotations

import pytest
from moto.server import ThreadedMotoServer

from mlengine.constants import ENV_S3_ACCESS_KEY, ENV_S3_ENDPOINT, ENV_S3_SECRET_KEY, ENV_S3_SECURE

SECRET = "s3cr3t-never-printed-9f2c"  # the tests grep messages for it


@pytest.fixture(scope="module")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    monkeypatch.setenv(ENV_S3_ENDPOINT, f"http://{moto_endpoint}")
    monkeypatch.setenv(ENV_S3_ACCESS_KEY, "testing-key-id")
    monkeypatch.setenv(ENV_S3_SECRET_KEY, SECRET)
    monkeypatch.delenv(ENV_S3_SECURE, raising=False)
    return moto_endpoint
