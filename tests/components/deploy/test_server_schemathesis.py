"""schemathesis against the live server's own OpenAPI document: no route answers a 5xx.

``schemathesis run <server>/openapi.json -c not_a_server_error`` as the issue's reporter ran it,
with all its phases (the schema's examples, coverage of edge values of every path, query and
header parameter, fuzzing with valid and invalid data, stateful sequences), over every operation:
health, metadata, readiness, v1 predict, v2 infer, with ``versions/{model_version}``. Two runs:
model names as schemathesis generates them (mostly unknown: 404 paths) and the served model's
real name (the cases reach validation and the model). Bounded: ``MAX_EXAMPLES`` per operation,
one worker, a fixed seed, a per-request timeout, and the subprocess is killed after
``RUN_TIMEOUT_S``; 127.0.0.1 only. The JSON report is read back, not the console.

(schemathesis's own pytest plugin cannot run here: version 4.32 reads ``Item._nodeid``, which
pytest 9 no longer has, so the CLI is the supported way.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.components.deploy.conftest import LIVE_NAME

pytestmark = pytest.mark.e2e  # a live server: not in the quick loop (-m "not e2e")

MAX_EXAMPLES = 25
SEED = 14
REQUEST_TIMEOUT_S = 10
RUN_TIMEOUT_S = 180  # one run is about 5-10 s on 2 cores
PHASES = "examples,coverage,fuzzing,stateful"
MODEL_ROUTES = {"POST /v1/models/{model_name}:predict", "POST /v2/models/{model_name}/infer",
                "GET /v2/models/{model_name}", "GET /v2/models/{model_name}/ready"}


def run_schemathesis(url: str, work, config: str) -> dict:
    """One bounded schemathesis run; its JSON report."""
    config_file, report = work / "schemathesis.toml", work / "report.json"
    config_file.write_text(config, encoding="utf-8")
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config_file), "run",
               f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES),
               "--seed", str(SEED), "--workers", "1", "--phases", PHASES, "--request-timeout", str(REQUEST_TIMEOUT_S),
               "--report", "json", "--report-json-path", str(report)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=work)
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(report.read_text(encoding="utf-8"))
    result["console"] = done.stdout
    result["returncode"] = done.returncode
    return result


@pytest.mark.parametrize("names", ["generated", "served"])
def test_schemathesis_finds_no_server_error_on_any_route(live_server, tmp_path, names):
    config = f'[parameters]\n"path.model_name" = "{LIVE_NAME}"\n' if names == "served" else ""
    result = run_schemathesis(live_server["url"], tmp_path, config)
    console = result["console"][-4000:]
    assert result["failures"] == [] and result["errors"] == [], console
    assert result["test_cases"]["with_failures"] == 0 and result["exit_code"] == 0 == result["returncode"], console
    operations = result["operations"]
    assert operations["tested"] == operations["total"] >= 12 and operations["errored"] == 0, operations
    assert result["test_cases"]["generated"] >= 10 * operations["total"]
    assert all(phase["status"] == "success" for phase in result["phases"].values()), result["phases"]
    if names == "served":  # the cases got past the name: 2xx (accepted) or 4xx (rejected) answers, not only 404s
        for route in MODEL_ROUTES:
            counts = result["valid_rates"][route]
            assert sum(c["accepted"] + c["rejected"] for c in counts.values()) > 0, (route, counts)
