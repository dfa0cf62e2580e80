"""Serving benchmark: in-process predict vs a straightforward kserve.Model server vs ``mlengine serve``.

All on the same SavedModel and the same rows, in one run, loopback only:

(a) in-process: the loaded ``serving_default`` signature called with numpy columns;
(b) "plain": a ``kserve.Model`` whose ``predict`` turns ``instances`` into tensors and calls the
    model once per request, as KServe's custom-model docs show, stock ModelServer settings,
    with 1 and 2 workers (the model is loaded in each worker: a loaded SavedModel cannot be pickled);
(c) ``mlengine serve`` (validation + micro-batching), with 1 and 2 workers.

Measured: p50/p99 latency at batch 1 and concurrency 1, requests/s at concurrency 8 (batch 1),
rows/s at batch 256 (concurrency 1 and 2), and the error count (must be 0). The load generator
is asyncio + aiohttp in this process, bounded in request count and in time.

    python -m bench.bench_serving [--model DIR] [--quick]

writes bench/results/serving.json and prints a table with ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
ROOT = Path(__file__).resolve().parents[1]


# --- (b) the straightforward server -------------------------------------------------------------------------
_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve.model_server parses sys.argv when it is imported
try:
    import kserve
finally:
    sys.argv = _argv


class PlainModel(kserve.Model):
    """Load in load(); predict calls the model once per request (KServe's custom-model docs)."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir

    def load(self) -> bool:
        from mlengine.components.shared.tf import import_tf

        tf, _ = import_tf()
        self._tf = tf
        self._loaded = tf.saved_model.load(str(Path(self.model_dir) / "serving"))
        self._fn = self._loaded.signatures["serving_default"]
        self._dtypes = {k: v.dtype for k, v in self._fn.structured_input_signature[1].items()}
        self.load_pending = False
        self.ready = True
        return True

    def predict(self, payload: dict, headers: dict | None = None) -> dict:
        instances = payload["instances"]
        inputs = {name: self._tf.constant([row[name] for row in instances], dtype=dtype)
                  for name, dtype in self._dtypes.items()}
        return {"predictions": self._fn(**inputs)["predictions"].numpy().tolist()}

    def __getstate__(self):  # kserve pickles the model into each worker: load it there again
        return {"name": self.name, "model_dir": self.model_dir}

    def __setstate__(self, state):
        # loading right here would starve kserve's 5 s liveness ping on a busy machine (the worker
        # gets killed and respawned forever): the REST server loads pending models in the worker
        self.__init__(state["name"], state["model_dir"])
        self.load_pending = True


def serve_plain(model_dir: str, name: str, port: int, workers: int) -> None:
    sys.argv = sys.argv[:1]
    from mlengine.components.deploy.server import LocalModelServer

    model = PlainModel(name, model_dir)
    model.load()
    LocalModelServer(host="127.0.0.1", http_port=port, workers=workers, hardened=False).start([model])


# --- data --------------------------------------------------------------------------------------------------
def sample_rows(spec, count: int, seed: int = 11) -> list[dict]:
    """Synthetic taxi rows inside the spec's ranges, as plain JSON types."""
    from mlengine.synthetic import generate_columns

    columns = generate_columns(count * 2, seed)
    keep = np.ones(count * 2, dtype=bool)
    for col in spec.columns:
        if col.range is not None:
            keep &= (columns[col.name] >= col.range[0]) & (columns[col.name] <= col.range[1])
    rows = []
    for index in np.flatnonzero(keep)[:count]:
        rows.append({c.name: (float(columns[c.name][index]) if c.type == "float" else int(columns[c.name][index]))
                     for c in spec.columns})
    return rows


def percentile_ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1000.0, q)) if latencies else float("nan")


# --- (a) in-process ---------------------------------------------------------------------------------------
def bench_in_process(model_dir: str, rows: list[dict], latency_requests: int, big_requests: int,
                     public_api: bool = False) -> dict:
    """The model called directly: the server's runner (flat call), or with ``public_api`` the
    SavedModel signature called with keyword tensors."""
    from mlengine.components.shared.savedmodel import columns_from_rows, load_model_dir

    runner = load_model_dir(model_dir, fast_path=not public_api)
    one = [columns_from_rows([row], runner.spec) for row in rows[:64]]
    for columns in one[:20]:
        runner(columns)
    latencies = []
    for i in range(latency_requests):
        start = time.perf_counter()
        runner(one[i % len(one)])
        latencies.append(time.perf_counter() - start)
    big = columns_from_rows(rows[:256], runner.spec)
    runner(big)
    start = time.perf_counter()
    for _ in range(big_requests):
        runner(big)
    elapsed = time.perf_counter() - start
    return {"p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
            "rows_per_s_b256": 256 * big_requests / elapsed, "errors": 0}


# --- load generator --------------------------------------------------------------------------------------
async def _load(url: str, bodies: list[bytes], concurrency: int, max_requests: int, time_limit: float,
                expect_rows: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + time_limit
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker():
            nonlocal sent, errors
            while sent < max_requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        payload = await response.read()
                        ok = response.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok, payload = False, b""
                latencies.append(time.perf_counter() - start)
                if ok and expect_rows and payload.count(b",") + 1 < expect_rows:
                    ok = False  # a 200 without all predictions is an error too
                if not ok:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed,
            "requests_per_s": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99)}


def group_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a server and its worker processes."""
    import psutil

    total = 0.0
    try:
        leader = psutil.Process(pid)
        members = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for member in members:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def load(url, bodies, concurrency, max_requests, time_limit, expect_rows=1, server_pid=None) -> dict:
    """One bounded load phase; with ``server_pid`` also the server's and this client's CPU per request."""
    server_before = group_cpu_s(server_pid) if server_pid else 0.0
    client_before = time.process_time()
    out = asyncio.run(_load(url, bodies, concurrency, max_requests, time_limit, expect_rows))
    if server_pid and out["requests"]:
        out["server_cpu_ms_per_request"] = 1000 * (group_cpu_s(server_pid) - server_before) / out["requests"]
        out["client_cpu_ms_per_request"] = 1000 * (time.process_time() - client_before) / out["requests"]
    return out


def v1_bodies(rows: list[dict], batch: int, count: int) -> list[bytes]:
    return [json.dumps({"instances": [rows[(i * batch + j) % len(rows)] for j in range(batch)]}).encode()
            for i in range(count)]


def v1_columnar_bodies(rows: list[dict], batch: int, count: int) -> list[bytes]:
    """TF Serving's columnar v1 layout: {"inputs": {column: [values]}} (mlengine serve and TF Serving accept it)."""
    bodies = []
    for i in range(count):
        chunk = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        bodies.append(json.dumps({"inputs": {name: [row[name] for row in chunk] for name in chunk[0]}}).encode())
    return bodies


def v2_bodies(rows: list[dict], spec, count: int, batch: int = 1) -> list[bytes]:
    """Open Inference v2 bodies: one input per column (the columnar layout the server accepts)."""
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    bodies = []
    for i in range(count):
        chunk = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        bodies.append(json.dumps({"inputs": [{"name": c.name, "shape": [batch], "datatype": types[c.type],
                                              "data": [row[c.name] for row in chunk]} for c in spec.columns]}).encode())
    return bodies


# --- one server ------------------------------------------------------------------------------------------
def bench_server(kind: str, workers: int, model_dir: str, rows: list[dict], spec, settings: dict,
                 work_dir: Path) -> dict:
    from mlengine.components.deploy.local import start_server_process, stop_process_group, wait_until_ready
    from mlengine.components.shared.processes import free_port

    port = free_port()
    name = "bench"
    url = f"http://127.0.0.1:{port}"
    if kind == "plain":
        command = [sys.executable, "-m", "bench.bench_serving", "--serve-plain", "--model", model_dir,
                   "--port", str(port), "--workers", str(workers)]
    else:
        command = [sys.executable, "-m", "mlengine.cli", "serve", "--model", model_dir, "--port", str(port),
                   "--name", name, "--workers", str(workers), *settings.get("serve_args", {}).get(kind, [])]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = work_dir / f"{kind}-{workers}.log"
    print(f"bench: starting {kind} server, {workers} worker(s)", file=sys.stderr, flush=True)
    process = start_server_process(command, log, env=env)
    try:
        wait_until_ready(url, name, process, log, timeout=240)
        predict = f"{url}/v1/models/{name}:predict"
        one = v1_bodies(rows, 1, 256)
        load(predict, one, 8, 200, 10)  # warm up every worker
        out = {"server": kind, "workers": workers}
        pid = process.pid
        out["c1"] = load(predict, one, 1, settings["latency_requests"], settings["time_limit"], server_pid=pid)
        out["c8"] = load(predict, one, 8, settings["throughput_requests"], settings["time_limit"], server_pid=pid)
        big = v1_bodies(rows, 256, 16)
        out["b256_c1"] = load(predict, big, 1, settings["big_requests"], settings["time_limit"], expect_rows=256,
                              server_pid=pid)
        out["b256_c2"] = load(predict, big, 2, settings["big_requests"], settings["time_limit"], expect_rows=256,
                              server_pid=pid)
        for key in ("b256_c1", "b256_c2"):
            out[key]["rows_per_s"] = out[key]["requests_per_s"] * 256
        if kind.startswith("mlengine"):
            out["b256_columnar_c1"] = load(predict, v1_columnar_bodies(rows, 256, 16), 1, settings["big_requests"],
                                           settings["time_limit"], expect_rows=256, server_pid=pid)
            out["b256_columnar_c1"]["rows_per_s"] = out["b256_columnar_c1"]["requests_per_s"] * 256
            infer = f"{url}/v2/models/{name}/infer"
            out["v2_c1"] = load(infer, v2_bodies(rows, spec, 256), 1, settings["latency_requests"],
                                settings["time_limit"], server_pid=pid)
            out["v2_b256_c1"] = load(infer, v2_bodies(rows, spec, 16, 256), 1, settings["big_requests"],
                                     settings["time_limit"], expect_rows=256, server_pid=pid)
            out["v2_b256_c1"]["rows_per_s"] = out["v2_b256_c1"]["requests_per_s"] * 256
        out["errors"] = sum(v["errors"] for v in out.values() if isinstance(v, dict))
        return out
    finally:
        stop_process_group(process.pid)


# --- report ------------------------------------------------------------------------------------------------
TARGETS = {"p50_over_in_process_ms": 3.0, "b256_rows_ratio": 0.7, "c8_vs_plain2": 1.3}


def median_of(runs: list):
    """Element-wise median of equally shaped result dicts (numbers), first value for anything else."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs]) for key in first}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return float(np.median(runs))
    return first


def summarize(results: dict) -> list[str]:
    ip = results["in_process"]
    servers = results["servers"]
    plain2 = servers.get("plain-2")
    header = (f"{'setup':<26}{'p50 ms':>8}{'p99 ms':>8}{'req/s c8':>10}{'cpu ms/req c8':>15}"
              f"{'rows/s b256 c1':>16}{'rows/s b256 c2':>16}{'errors':>8}")
    lines = [header]
    for label, figures in (("in-process", ip), ("in-process public API", results.get("in_process_public_api"))):
        if figures:
            lines.append(f"{label:<26}{figures['p50_ms']:>8.2f}{figures['p99_ms']:>8.2f}{'-':>10}{'-':>15}"
                         f"{figures['rows_per_s_b256']:>16,.0f}{'-':>16}{0:>8}")
    for key, server in servers.items():
        cpu = server["c8"].get("server_cpu_ms_per_request", float("nan"))
        lines.append(f"{key:<26}{server['c1']['p50_ms']:>8.2f}{server['c1']['p99_ms']:>8.2f}"
                     f"{server['c8']['requests_per_s']:>10,.0f}{cpu:>15.2f}"
                     f"{server['b256_c1']['rows_per_s']:>16,.0f}{server['b256_c2']['rows_per_s']:>16,.0f}"
                     f"{server['errors']:>8.0f}")
    lines.append("")
    results["ratios"] = {}
    for key, server in servers.items():
        if not key.startswith("mlengine"):
            continue
        best_b256 = max(server["b256_c1"]["rows_per_s"], server["b256_c2"]["rows_per_s"])
        ratios = {
            "p50_over_in_process_ms": server["c1"]["p50_ms"] - ip["p50_ms"],
            "b256_c1_rows_ratio": server["b256_c1"]["rows_per_s"] / ip["rows_per_s_b256"],
            "b256_rows_ratio": best_b256 / ip["rows_per_s_b256"],
            "v2_p50_ms": server.get("v2_c1", {}).get("p50_ms", float("nan")),
            "v2_b256_c1_rows_ratio": server.get("v2_b256_c1", {}).get("rows_per_s", float("nan"))
            / ip["rows_per_s_b256"],
            "b256_columnar_c1_rows_ratio": server.get("b256_columnar_c1", {}).get("rows_per_s", float("nan"))
            / ip["rows_per_s_b256"],
        }
        public = results.get("in_process_public_api")
        if public:
            ratios["p50_over_public_api_ms"] = server["c1"]["p50_ms"] - public["p50_ms"]
            ratios["b256_rows_ratio_vs_public_api"] = best_b256 / public["rows_per_s_b256"]
        if plain2:
            ratios["c8_vs_plain2"] = server["c8"]["requests_per_s"] / plain2["c8"]["requests_per_s"]
        met = {
            "p50_over_in_process_ms": ratios["p50_over_in_process_ms"] <= TARGETS["p50_over_in_process_ms"],
            "b256_rows_ratio": ratios["b256_rows_ratio"] >= TARGETS["b256_rows_ratio"],
        }
        if plain2:
            met["c8_vs_plain2"] = ratios["c8_vs_plain2"] >= TARGETS["c8_vs_plain2"]
        results["ratios"][key] = {"values": ratios, "targets_met": met}
        lines.append(f"{key}: p50 +{ratios['p50_over_in_process_ms']:.2f} ms over in-process (target <= 3), "
                     f"rows/s b256 {ratios['b256_c1_rows_ratio']:.2f} (c1) / {ratios['b256_rows_ratio']:.2f} (best) "
                     f"of in-process (target >= 0.7)"
                     + (f", req/s c8 {ratios['c8_vs_plain2']:.2f}x plain-2 (target >= 1.3)" if plain2 else "")
                     + (f"; vs the public-API in-process call: p50 +{ratios['p50_over_public_api_ms']:.2f} ms, "
                        f"rows/s b256 {ratios['b256_rows_ratio_vs_public_api']:.2f}" if public else "")
                     + f"; v1 columnar rows/s b256 c1 {ratios['b256_columnar_c1_rows_ratio']:.2f} of in-process"
                       f"; v2 p50 {ratios['v2_p50_ms']:.2f} ms, v2 rows/s b256 c1 "
                       f"{ratios['v2_b256_c1_rows_ratio']:.2f} of in-process")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: train a tiny one in a temp dir)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--servers", default="plain-1,plain-2,mlengine-1,mlengine-2",
                        help="which servers to run, comma-separated kind-workers")
    parser.add_argument("--repeat", type=int, default=1, help="run everything N times, report medians")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8080, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_plain:
        serve_plain(args.model, "bench", args.port, args.workers)
        return 0

    settings = ({"latency_requests": 200, "throughput_requests": 600, "big_requests": 40, "time_limit": 10.0}
                if args.quick else
                {"latency_requests": 1000, "throughput_requests": 6000, "big_requests": 200, "time_limit": 20.0})
    with tempfile.TemporaryDirectory(prefix="mlengine-bench-serving-") as tmp:
        work_dir = Path(tmp)
        model_dir = args.model
        if not model_dir:
            sys.path.insert(0, str(ROOT))
            from tests.model_fixtures import train_tiny_model

            print("bench: training a small model", file=sys.stderr, flush=True)
            model_dir = str(train_tiny_model(work_dir / "train", rows=20_000, epochs=1, nbuckets=8))
        from mlengine.components.shared.featurespec import load_spec

        spec = load_spec(Path(model_dir) / "feature_spec.yaml")
        rows = sample_rows(spec, 2048)
        results = {"model_dir": model_dir, "settings": settings, "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_start": os.getloadavg()}}
        print("bench: in-process", file=sys.stderr, flush=True)
        results["in_process"] = bench_in_process(model_dir, rows, settings["latency_requests"],
                                                 settings["big_requests"])
        results["in_process_public_api"] = bench_in_process(model_dir, rows, settings["latency_requests"],
                                                            settings["big_requests"], public_api=True)
        runs: dict[str, list] = {}
        in_process_runs = [results["in_process"]]
        for repeat in range(args.repeat):
            if repeat:
                in_process_runs.append(bench_in_process(model_dir, rows, settings["latency_requests"],
                                                        settings["big_requests"]))
            for entry in (e.strip() for e in args.servers.split(",") if e.strip()):
                kind, workers = entry.rsplit("-", 1)
                if kind.startswith("mlengine:"):  # variants, e.g. mlengine:inline-model-1 or mlengine:no-batching-1
                    settings.setdefault("serve_args", {})[kind] = ["--" + flag for flag in kind.split(":")[1:]]
                runs.setdefault(entry, []).append(bench_server(kind, int(workers), model_dir, rows, spec, settings,
                                                               work_dir))
        results["runs"] = {"in_process": in_process_runs, **runs}
        results["in_process"] = median_of(in_process_runs)
        results["servers"] = {entry: median_of(server_runs) for entry, server_runs in runs.items()}
        results["machine"]["load_avg_end"] = os.getloadavg()
        lines = summarize(results)
    total_errors = sum(run["errors"] for server_runs in runs.values() for run in server_runs)
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    print(f"bench: wrote {out}" + (f"; {total_errors} ERRORS" if total_errors else ""), file=sys.stderr)
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
