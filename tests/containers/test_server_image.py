"""The server image: a model mounted at /mnt/models answers v1 and v2 as `mlengine serve` does."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

import pytest

from mlengine.constants import IMAGE_MODEL_DIR, IMAGE_SERVER_PORT
from tests.helpers import free_port

pytestmark = pytest.mark.containers

ARBITRARY_UID = 1000680000  # as OpenShift assigns: not the image's USER, group 0


def _wait_ready(url: str, timeout: float, alive) -> None:
    from mlengine.components.deploy.client import PredictionClient

    deadline = time.monotonic() + timeout
    with PredictionClient(url) as client:
        while time.monotonic() < deadline:
            assert alive(), f"the server behind {url} exited before it was ready"
            try:
                if client.ready():
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
    pytest.fail(f"{url} not ready after {timeout:.0f} s")


def _predict(url: str, rows: list[dict], protocol: str) -> list[float]:
    from mlengine.components.deploy.client import PredictionClient

    with PredictionClient(url, protocol=protocol) as client:
        return client.predict(rows)


@pytest.fixture
def rows(small_csv) -> list[dict]:
    with open(small_csv, encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        raw = [next(reader) for _ in range(20)]
    ints = {"passenger_count", "dayofweek", "hourofday"}
    return [{k: (int(v) if k in ints else float(v)) for k, v in row.items() if k != "fare_amount"} for row in raw]


def test_server_image_answers_like_mlengine_serve(docker_run, built_images, docker_client, rows):
    model_dir = docker_run["summary"]["model_dir"]
    host_port, local_port = free_port(), free_port()
    container = docker_client.containers.run(
        built_images["server"], detach=True, user=f"{ARBITRARY_UID}:0",
        volumes={model_dir: {"bind": IMAGE_MODEL_DIR, "mode": "ro"}},
        ports={f"{IMAGE_SERVER_PORT}/tcp": ("127.0.0.1", host_port)}, labels={"io.mlengine.test": "server"})
    local = subprocess.Popen([sys.executable, "-m", "mlengine.cli", "serve", "--model", model_dir,
                              "--port", str(local_port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        image_url, local_url = f"http://127.0.0.1:{host_port}", f"http://127.0.0.1:{local_port}"

        def container_alive() -> bool:
            container.reload()
            return container.status in ("created", "running")

        _wait_ready(image_url, 120, container_alive)
        _wait_ready(local_url, 120, lambda: local.poll() is None)
        for protocol in ("v1", "v2"):
            from_image = _predict(image_url, rows, protocol)
            from_local = _predict(local_url, rows, protocol)
            assert len(from_image) == len(rows)
            assert from_image == pytest.approx(from_local, rel=1e-5, abs=1e-5), protocol
        assert len(set(round(p, 4) for p in from_image)) > 1  # real predictions, not a constant
    finally:
        logs = container.logs(tail=50).decode("utf-8", errors="replace")
        container.remove(force=True)
        local.terminate()
        try:
            local.wait(timeout=30)
        except subprocess.TimeoutExpired:
            local.kill()
            local.wait()
    assert "mlengine serve: model" in logs
