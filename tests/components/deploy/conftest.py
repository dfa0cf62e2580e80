"""Fixtures of the model-server tests: one real ``mlengine serve`` shared by the modules that probe it.

``live_server`` is started the way a user starts it (``python -m mlengine.cli serve``) with small
limits, so the limit tests are quick, and a serving log; it is stopped (process group) at the end.
"""

from __future__ import annotations

import pytest

from tests.helpers import free_port, running_server, serve_command
from tests.serving_fixtures import tiny_model_dir

LIVE_NAME = "taxi"
LIVE_LIMITS = {"max_instances": 100, "max_body_bytes": 200_000, "max_header_bytes": 8192, "read_timeout_s": 2.0}


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="package")  # stopped when the deploy tests end: later tests count child processes
def live_server(served_model_dir, tmp_path_factory):
    """``mlengine serve`` on 127.0.0.1 with ``LIVE_LIMITS`` and ``--serving-log``; dict with url, port, name, log."""
    work = tmp_path_factory.mktemp("live-server")
    port = free_port()
    extra = ["--max-instances", str(LIVE_LIMITS["max_instances"]),
             "--max-body-bytes", str(LIVE_LIMITS["max_body_bytes"]),
             "--max-header-bytes", str(LIVE_LIMITS["max_header_bytes"]),
             "--read-timeout", str(LIVE_LIMITS["read_timeout_s"]),
             "--serving-log", str(work / "serving-log")]
    command = serve_command(served_model_dir, port, LIVE_NAME, *extra)
    with running_server(command, work / "server.log", LIVE_NAME, port) as server:
        server["serving_log"] = work / "serving-log"
        yield server
    assert server["process"].poll() is not None  # no orphan left behind
