"""A bounded load test of ``mlengine serve`` on 127.0.0.1: mixed valid and invalid requests, 8 connections.

Valid requests (v1 rows, v1 columnar, v2 JSON, 1-8 rows each) must all be answered 200 with one
finite prediction per row; invalid ones (malformed JSON, out-of-range or missing features, too
many instances, oversized bodies, unknown model names and versions, wrong methods) must all be
4xx. At the end: zero 5xx, zero dropped valid requests (errors or non-200), and what the run
added to the shared ``live_server``'s serving log is exactly the rows of the accepted requests
(flushed after every batch; the drain at shutdown is ``test_server_faults.py``'s).

Bounded in time and count: ``MLENGINE_LOAD_TEST_SECONDS`` (default ``DEFAULT_SECONDS``, at most
``MAX_SECONDS``) and ``MAX_REQUESTS``. The figures in the README come from
``MLENGINE_LOAD_TEST_SECONDS=60 .venv/bin/python -m pytest tests/components/deploy/test_server_load.py -s``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections import Counter

import numpy as np
import pytest

from mlengine.components.shared.featurespec import load_spec
from tests.components.deploy.conftest import LIVE_LIMITS, LIVE_NAME
from tests.components.deploy.serving_helpers import serving_log_lines
from tests.serving_fixtures import sample_rows

NAME = LIVE_NAME
CONNECTIONS = 8
DEFAULT_SECONDS = 6.0
MAX_SECONDS = 60.0
MAX_REQUESTS = 200_000
MAX_INSTANCES = LIVE_LIMITS["max_instances"]
MAX_BODY_BYTES = LIVE_LIMITS["max_body_bytes"]
VALID_SHARE = 0.6
SEED = 1414
V2_TYPES = {"float": "FP32", "int": "INT64", "string": "BYTES"}


def load_seconds() -> float:
    return min(float(os.environ.get("MLENGINE_LOAD_TEST_SECONDS", DEFAULT_SECONDS)), MAX_SECONDS)


def row_key(row: dict) -> tuple:
    """A row as the serving log keeps it: floats through float32, rounded."""
    return tuple(round(float(np.float32(v)), 4) if isinstance(v, float) else int(v) for _, v in sorted(row.items()))


class Traffic:
    """Deterministic mix of request kinds; each call: (method, path, body bytes, content type, rows or None)."""

    def __init__(self, spec, rows: list[dict], seed: int):
        self.spec, self.rows, self.rng = spec, rows, random.Random(seed)

    def next(self):
        rng, rows = self.rng, self.rng.sample(self.rows, self.rng.randint(1, 8))
        v1, v2 = f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"
        if rng.random() < VALID_SHARE:
            kind = rng.choice(["v1", "columnar", "v2"])
            if kind == "v1":
                return "POST", v1, json.dumps({"instances": rows}), rows
            if kind == "columnar":
                return "POST", v1, json.dumps({"inputs": {k: [r[k] for r in rows] for k in rows[0]}}), rows
            return "POST", v2, json.dumps(self.v2(rows)), rows
        bad = dict(rows[0])
        kind = rng.randrange(10)
        if kind == 0:
            return "POST", v1, '{"instances": [', None
        if kind == 1:
            bad["hourofday"] = 99
            return "POST", v1, json.dumps({"instances": [*rows, bad]}), None
        if kind == 2:
            bad.pop("dayofweek")
            return "POST", v1, json.dumps({"instances": [bad]}), None
        if kind == 3:
            return "POST", v1, json.dumps({"instances": [rows[0]] * (MAX_INSTANCES + 1)}), None
        if kind == 4:
            return "POST", v1, json.dumps({"instances": rows, "pad": "x" * MAX_BODY_BYTES}), None
        if kind == 5:
            return "POST", "/v2/models/nope/infer", json.dumps(self.v2(rows)), None
        if kind == 6:
            return "POST", f"/v2/models/{NAME}/versions/9/infer", json.dumps(self.v2(rows)), None
        if kind == 7:
            return "GET", v1, "", None
        if kind == 8:
            body = self.v2(rows)
            body["inputs"][0]["data"] = [math.nan] * len(rows)
            return "POST", v2, json.dumps(body), None
        body = self.v2(rows)
        body["inputs"] = body["inputs"][1:]  # a feature missing
        return "POST", v2, json.dumps(body) if rng.random() < 0.5 else json.dumps({"inputs": "nope"}), None

    def v2(self, rows: list[dict]) -> dict:
        return {"inputs": [{"name": c.name, "shape": [len(rows)], "datatype": V2_TYPES[c.type],
                            "data": [r[c.name] for r in rows]} for c in self.spec.columns]}


async def drive(url: str, traffic: Traffic, seconds: float) -> dict:
    import aiohttp

    stats = {"statuses": Counter(), "valid": 0, "invalid": 0, "dropped": [], "wrong_4xx": [], "server_errors": [],
             "accepted_rows": [], "latencies_ms": []}
    deadline = time.monotonic() + seconds
    sent = 0

    async def worker(session):
        nonlocal sent
        while time.monotonic() < deadline and sent < MAX_REQUESTS:
            sent += 1
            method, path, body, rows = traffic.next()
            start = time.perf_counter()
            try:
                async with session.request(method, url + path, data=body.encode(),
                                           headers={"content-type": "application/json"}) as answer:
                    status, payload = answer.status, await answer.read()
            except aiohttp.ClientError as err:
                status, payload = None, repr(err).encode()
            stats["statuses"][status] += 1
            if status is not None and status >= 500:
                stats["server_errors"].append((path, status, payload[:200]))
            if rows is None:
                stats["invalid"] += 1
                if status is None or not 400 <= status < 500:
                    stats["wrong_4xx"].append((path, status, payload[:200]))
                continue
            stats["valid"] += 1
            stats["latencies_ms"].append(1000 * (time.perf_counter() - start))
            predictions = _predictions(payload) if status == 200 else None
            if predictions is None or len(predictions) != len(rows) or not all(map(math.isfinite, predictions)):
                stats["dropped"].append((path, status, payload[:200]))
            else:
                stats["accepted_rows"] += rows

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONNECTIONS)))
    stats["requests"] = sent
    return stats


def _predictions(payload: bytes) -> list | None:
    body = json.loads(payload)
    if "predictions" in body:
        return body["predictions"]
    if "outputs" in body:
        outputs = body["outputs"]
        return outputs[0]["data"] if outputs and isinstance(outputs[0], dict) else outputs  # v2, or v1 columnar
    return None


@pytest.mark.e2e
def test_mixed_load_gives_no_5xx_drops_no_valid_request_and_logs_every_accepted_row(served_model_dir, live_server):
    spec = load_spec(served_model_dir / "feature_spec.yaml")
    traffic = Traffic(spec, sample_rows(spec, 400, seed=71), SEED)
    serving_log = live_server["serving_log"]
    before = Counter(row_key(line["instance"]) for line in serving_log_lines(serving_log))
    log_offset = len(live_server["log"].read_bytes())
    started = time.monotonic()
    stats = asyncio.run(drive(live_server["url"], traffic, load_seconds()))
    elapsed = time.monotonic() - started
    latencies = np.array(stats["latencies_ms"])
    print(f"\nload test: {stats['requests']} requests in {elapsed:.1f} s ({stats['requests'] / elapsed:.0f}/s) over "
          f"{CONNECTIONS} connections; {stats['valid']} valid, {stats['invalid']} invalid; statuses "
          f"{dict(sorted(stats['statuses'].items(), key=str))}; valid p50 {np.percentile(latencies, 50):.1f} ms, "
          f"p99 {np.percentile(latencies, 99):.1f} ms; {len(stats['accepted_rows'])} rows accepted")
    assert stats["server_errors"] == [], stats["server_errors"][:5]
    assert stats["dropped"] == [], stats["dropped"][:5]
    assert stats["wrong_4xx"] == [], stats["wrong_4xx"][:5]
    assert stats["valid"] > 50 and stats["invalid"] > 30  # both kinds really ran
    # the log is flushed after every batch: what this run added is exactly the accepted rows
    logged = Counter(row_key(line["instance"]) for line in serving_log_lines(serving_log)) - before
    assert logged == Counter(map(row_key, stats["accepted_rows"]))
    assert b"Traceback" not in live_server["log"].read_bytes()[log_offset:]
