"""`mlengine serve --workers 2 --serving-log s3://...`: each spawned worker (the predictor pickled into
it) uploads its own objects; every row sent is read back from the prefix (moto in-process)."""

from __future__ import annotations

import time

import pytest

from mlengine.components.deploy.client import PredictionClient
from mlengine.components.shared import storage
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.serving_log import ENV_SERVING_LOG_FLUSH_SECONDS, read_serving_log
from mlengine.rehearsal.data import sample_rows
from tests.helpers import free_port, running_server, serve_command
from tests.serving_fixtures import tiny_model_dir

from .conftest import SECRET

pytestmark = pytest.mark.e2e  # starts a server: not in the quick loop


def test_two_workers_log_every_row_to_the_bucket(s3_env, tmp_path_factory):
    client = storage.s3_client(storage.s3_settings_from_env())
    client.make_bucket("served")
    model_dir = tiny_model_dir(tmp_path_factory)
    work = tmp_path_factory.mktemp("s3-serve")
    port = free_port()
    uri = "s3://served/mlengine/serving-log/taxi/"
    command = serve_command(model_dir, port, "taxi", "--workers", "2", "--serving-log", uri)
    with running_server(command, work / "server.log", "taxi", port, env={ENV_SERVING_LOG_FLUSH_SECONDS: "1"}) as server:
        url = server["url"]
        rows = sample_rows(200, seed=3)
        for protocol, start in (("v1", 0), ("v2", 100)):
            with PredictionClient(url, protocol=protocol) as predictor:
                for first in range(start, start + 100, 10):  # many small requests, spread over both workers
                    assert len(predictor.predict(rows[first:first + 10])) == 10
        deadline = time.monotonic() + 60
        data = None
        while time.monotonic() < deadline:
            data = read_serving_log(uri, load_spec())
            if data.rows >= 200:
                break
            time.sleep(0.5)
        assert data is not None and data.rows == 200 and data.malformed == 0
    assert SECRET not in (work / "server.log").read_text(encoding="utf-8", errors="replace")
