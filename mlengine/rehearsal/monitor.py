"""The monitoring step: traffic to the predictor, its serving log in the bucket, ``mlengine monitor`` on it."""

from __future__ import annotations

import json
import time
from typing import Any

from mlengine.components.shared.storage import split_s3_uri
from mlengine.constants import (
    image_for,
)
from mlengine.rehearsal import log
from mlengine.rehearsal.data import sample_rows
from mlengine.rehearsal.engine import DATA_ROOT, Engine, Scrubber, last_error_line, tail_logs
from mlengine.rehearsal.s3stage import S3Stage, list_keys

# statistics artifact to a local path, then the step reads the serving log prefix straight from S3
MONITOR_STEP = (
    "import subprocess, sys; from pathlib import Path; "
    "from mlengine.components.shared.staging import download_prefix; "
    "download_prefix(sys.argv[1], Path('/tmp/statistics')); "
    "raise SystemExit(subprocess.call([sys.executable, '-m', 'mlengine.cli', 'monitor', "
    "'--statistics', '/tmp/statistics', '--serving-log', sys.argv[2], '--out', '/tmp/drift', '--no-html']))")
MONITOR_TRAFFIC_ROWS = 300  # sent to the predictor after the comparison, half over v1, half over v2
LOG_WAIT_TIMEOUT = 90.0


def predictor_serving_log(isvc: dict) -> str | None:
    """The s3:// prefix the rendered predictor logs to (its MLENGINE_SERVING_LOG_URI), if any."""
    from mlengine.components.shared.serving_log import ENV_SERVING_LOG_URI

    for item in (isvc["spec"]["predictor"].get("model") or {}).get("env") or []:
        if item.get("name") == ENV_SERVING_LOG_URI:
            return item.get("value")
    return None


def count_logged_rows(s3, uri: str) -> tuple[int, int]:
    """(objects, lines) of the serving log objects under ``uri`` in the stand-in bucket."""
    from mlengine.components.shared.serving_log import LOG_FILE_PREFIX

    bucket, prefix = split_s3_uri(uri)
    objects = lines = 0
    for key in list_keys(s3, uri):
        if key[len(prefix):].startswith(LOG_FILE_PREFIX) and key.endswith(".jsonl"):
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            lines += body.count(b"\n")
    return objects, lines


def run_monitor_step(engine: Engine, isvc: dict, *, url: str, rows_before: int, network: str,
                     secret: dict[str, str], s3: S3Stage, scrub: Scrubber,
                     pipeline_image: str | None = None) -> dict:
    """Send traffic, wait for the predictor's log objects in the bucket, run the monitor step in its container."""
    from mlengine.components.deploy.client import PredictionClient

    log_uri = predictor_serving_log(isvc)
    if not log_uri:
        return {"passed": False, "reason": "the rendered predictor has no serving log (MLENGINE_SERVING_LOG_URI)"}
    rows = sample_rows(MONITOR_TRAFFIC_ROWS, seed=23)
    half = len(rows) // 2
    for protocol, chunk in (("v1", rows[:half]), ("v2", rows[half:])):
        with PredictionClient(url, protocol=protocol) as client:
            client.predict(chunk)
    sent = rows_before + len(rows)
    log.info(f"monitor: {sent} rows sent to the predictor; waiting for them under {log_uri}")
    started = time.monotonic()
    objects = logged = 0
    while time.monotonic() - started < LOG_WAIT_TIMEOUT:
        objects, logged = count_logged_rows(s3.client(), log_uri)
        if logged >= sent:
            break
        time.sleep(1.0)
    waited = round(time.monotonic() - started, 1)
    if logged < sent:
        return {"passed": False, "serving_log_uri": log_uri, "rows_sent": sent, "rows_logged": logged,
                "objects": objects, "reason": f"{logged} of {sent} rows sent reached {log_uri} "
                f"in {LOG_WAIT_TIMEOUT:.0f} s"}
    log.info(f"monitor: {logged} rows in {objects} object(s) under {log_uri} after {waited} s")
    cid = engine.create(pipeline_image or image_for("pipeline"), name="monitor", network=network,
                        entrypoint=["python", "-c"],
                        command=[MONITOR_STEP, f"{DATA_ROOT}/statistics", log_uri], environment=secret)
    engine.client.api.start(cid)
    code = engine.client.api.wait(cid, timeout=300)["StatusCode"]
    stdout = scrub(engine.client.api.logs(cid, stdout=True, stderr=False).decode("utf-8", "replace"))
    result: dict[str, Any] = {"serving_log_uri": log_uri, "rows_sent": sent, "rows_logged": logged,
                              "objects": objects, "seconds_to_bucket": waited,
                              "command": ["mlengine", "monitor", "--statistics", f"{DATA_ROOT}/statistics (local copy)",
                                          "--serving-log", log_uri, "--out", "/tmp/drift", "--no-html"]}
    if code != 0:
        logs = tail_logs(engine, cid, scrub)
        return {**result, "passed": False, "reason": f"monitor step exited {code}: {last_error_line(logs)}",
                "logs": logs}
    try:
        summary = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {**result, "passed": False, "reason": "monitor step printed no JSON summary",
                "logs": tail_logs(engine, cid, scrub)}
    result.update(rows_read=summary.get("serving_rows"), malformed_lines=summary.get("malformed_lines"),
                  drift_detected=summary.get("drift_detected"), status=summary.get("status"),
                  columns_drifted=summary.get("columns_drifted"), max_psi=summary.get("max_psi"))
    result["passed"] = result["rows_read"] == sent and result["malformed_lines"] == 0
    if not result["passed"]:
        result["reason"] = f"the monitor step read {result['rows_read']} rows of {sent} sent " \
                           f"({result['malformed_lines']} malformed lines)"
    return result
