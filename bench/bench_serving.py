"""Serving benchmark: in-process predict vs a straightforward kserve.Model server vs ``mlengine serve``.

All on the same SavedModel and the same rows, in one run, loopback only:

(a) in-process: the loaded ``serving_default`` signature called with numpy columns;
(b) "plain": a ``kserve.Model`` whose ``predict`` turns ``instances`` into tensors and calls the
    model once per request, as KServe's custom-model docs show, stock ModelServer settings,
    with 1 and 2 workers (the model is loaded in each worker: a loaded SavedModel cannot be pickled);
(c) ``mlengine serve`` (validation + micro-batching), with 1 and 2 workers; ``mlengine:base-N`` is
    the old request path: bulk path off (``MLENGINE_SERVE_FAST_PATH=0``: every
    request through kserve's handlers) and the model on its own thread (``--model-thread``), so
    before and after are measured in one run (its HTTP stack is today's, httptools and uvloop,
    which helps it too); ``mlengine:model-thread-N`` is today's server with a model thread (what
    the hand-off costs).

Rows/s at batch 256 are measured over v1 rows (``instances``), v1 columns (``inputs``), v2 JSON and
v2 with the binary tensor extension (what ``tritonclient`` sends), each as a ratio of the in-process
call through the public SavedModel API. ``--profile`` adds one more run of each ``mlengine`` server
kind under cProfile (event-loop thread; the model thread shows as the awaits) and prints the top
functions by own time (with their cumulative time) for each bulk protocol.

Measured: p50/p99 latency at batch 1 and concurrency 1, requests/s at concurrency 8 (batch 1),
rows/s at batch 256 (concurrency 1 and 2), and the error count (must be 0). The load generator
runs in this process, bounded in request count and in time: by default prepared HTTP/1.1 request
bytes on kept-alive asyncio connections (as wrk does), ``--client aiohttp`` an aiohttp session; the
client shares the 2 cores with the server either way.

    python -m bench.bench_serving [--model DIR] [--quick] [--servers ...] [--profile] [--repeat N]

writes bench/results/serving.json and prints a table with ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import load_client
from bench.load_client import (
    CLIENTS,
    load,
    percentile_ms,
    v1_bodies,
    v1_columnar_bodies,
    v2_binary_bodies,
    v2_bodies,
)

RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
ROOT = Path(__file__).resolve().parents[1]


# --- (b) the straightforward server -------------------------------------------------------------------------
from mlengine.components.deploy.kserve_compat import kserve_argv  # noqa: E402

with kserve_argv():
    import kserve


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
    from mlengine.components.deploy.kserve_compat import hide_argv_from_kserve

    hide_argv_from_kserve()
    from mlengine.components.deploy.http.server import LocalModelServer

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


# --- one server ------------------------------------------------------------------------------------------
PROFILE_TOP = 20
BULK_PHASES = ("b256_c1", "b256_columnar_c1", "v2_b256_c1", "v2_binary_b256_c1")


def bench_server(kind: str, workers: int, model_dir: str, rows: list[dict], spec, settings: dict,
                 work_dir: Path, profile: bool = False) -> dict:
    """One server: start it, measure every phase, stop it. ``profile``: only the bulk phases, under cProfile."""
    import signal

    from mlengine.components.deploy.local import start_server_process, stop_process_group, wait_until_ready
    from mlengine.components.shared.processes import free_port

    port = free_port()
    name = "bench"
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    flags = kind.split(":")[1:]
    if "base" in flags:  # the server as it was before its bulk path: every request through kserve's handlers
        env["MLENGINE_SERVE_FAST_PATH"] = "0"
        flags = [*flags, "model-thread"]
    if kind == "plain":
        command = [sys.executable, "-m", "bench.bench_serving", "--serve-plain", "--model", model_dir,
                   "--port", str(port), "--workers", str(workers)]
    else:
        serve = ["serve", "--model", model_dir, "--port", str(port), "--name", name, "--workers", str(workers),
                 *("--" + flag for flag in flags if flag != "base")]
        command = [sys.executable, "-m", "mlengine.cli", *serve]
        if profile:
            stats_path = work_dir / f"profile-{kind.replace(':', '_')}-{workers}.pstats"
            command = [sys.executable, "-m", "bench.bench_serving", "--serve-profiled", str(stats_path), *serve]
    log = work_dir / f"{kind.replace(':', '_')}-{workers}{'-profiled' if profile else ''}.log"
    print(f"bench: starting {kind} server, {workers} worker(s){' under cProfile' if profile else ''}",
          file=sys.stderr, flush=True)
    process = start_server_process(command, log, env=env)
    try:
        wait_until_ready(url, name, process, log, timeout=240)
        predict = f"{url}/v1/models/{name}:predict"
        infer = f"{url}/v2/models/{name}/infer"
        one = v1_bodies(rows, 1, 256)
        load(predict, one, 8, 200, 10)  # warm up every worker
        out = {"server": kind, "workers": workers}
        pid = process.pid
        binary, lengths = v2_binary_bodies(rows, spec, 16)
        bulk = {
            "b256_c1": (predict, v1_bodies(rows, 256, 16), None),
            "b256_columnar_c1": (predict, v1_columnar_bodies(rows, 256, 16), None),
            "v2_b256_c1": (infer, v2_bodies(rows, spec, 16, 256), None),
            "v2_binary_b256_c1": (infer, binary, [{"inference-header-content-length": str(n)} for n in lengths]),
        }
        if profile:
            out["profiles"] = {}
            for phase, (target, bodies, headers) in bulk.items():
                load(target, bodies, 1, 10, 5, expect_rows=256, body_headers=headers)  # warm this route
                os.kill(pid, signal.SIGUSR2)  # a fresh profile
                time.sleep(0.3)
                out[phase] = load(target, bodies, 1, settings["big_requests"], settings["time_limit"],
                                  expect_rows=256, body_headers=headers)
                os.kill(pid, signal.SIGUSR1)  # write it
                out["profiles"][phase] = read_profile(stats_path)
            out["errors"] = sum(out[phase]["errors"] for phase in bulk)
            return out
        out["c1"] = load(predict, one, 1, settings["latency_requests"], settings["time_limit"], server_pid=pid)
        out["c8"] = load(predict, one, 8, settings["throughput_requests"], settings["time_limit"], server_pid=pid)
        big = bulk["b256_c1"][1]
        out["b256_c1"] = load(predict, big, 1, settings["big_requests"], settings["time_limit"], expect_rows=256,
                              server_pid=pid)
        out["b256_c2"] = load(predict, big, 2, settings["big_requests"], settings["time_limit"], expect_rows=256,
                              server_pid=pid)
        if kind.startswith("mlengine"):
            out["v2_c1"] = load(infer, v2_bodies(rows, spec, 256), 1, settings["latency_requests"],
                                settings["time_limit"], server_pid=pid)
            for phase in BULK_PHASES[1:]:
                target, bodies, headers = bulk[phase]
                out[phase] = load(target, bodies, 1, settings["big_requests"], settings["time_limit"],
                                  expect_rows=256, server_pid=pid, body_headers=headers)
        for key in ("b256_c2", *BULK_PHASES):
            if key in out:
                out[key]["rows_per_s"] = out[key]["requests_per_s"] * 256
        out["errors"] = sum(v["errors"] for v in out.values() if isinstance(v, dict))
        return out
    finally:
        stop_process_group(process.pid)


def read_profile(path: Path, timeout: float = 20.0) -> list[dict]:
    """The top functions by own time (idle epoll waits left out) of a profile the server wrote on SIGUSR1."""
    import pstats

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = path.with_suffix(".done")
        if done.exists():
            done.unlink()
            break
        time.sleep(0.1)
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        if function == "<method 'poll' of 'select.epoll' objects>":
            continue  # the loop waiting (for the client or the model thread), not work
        rows.append({"function": f"{Path(file).name}:{line}({function})", "calls": calls,
                     "own_s": round(own, 4), "cumulative_s": round(cumulative, 4)})
    rows.sort(key=lambda row: -row["own_s"])
    return rows[:PROFILE_TOP]


def serve_profiled(stats_path: str, serve_args: list[str]) -> int:
    """``mlengine serve`` (one worker) under cProfile; SIGUSR2 starts a fresh profile, SIGUSR1 writes it."""
    import cProfile
    import signal

    from mlengine.cli import main as cli_main

    state = {"profile": cProfile.Profile()}

    def restart(*_):
        state["profile"].disable()
        state["profile"] = cProfile.Profile()
        state["profile"].enable()

    def write(*_):
        state["profile"].disable()
        state["profile"].dump_stats(stats_path)
        Path(stats_path).with_suffix(".done").touch()
        state["profile"] = cProfile.Profile()
        state["profile"].enable()

    signal.signal(signal.SIGUSR2, restart)
    signal.signal(signal.SIGUSR1, write)
    state["profile"].enable()
    return cli_main(serve_args)


# --- report ------------------------------------------------------------------------------------------------
TARGETS = {"b256_rows_ratio": 0.5}  # of the in-process public-API call


def median_of(runs: list):
    """Element-wise median of equally shaped result dicts (numbers), first value for anything else."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs]) for key in first}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return float(np.median(runs))
    return first


PROTOCOL_LABELS = {"b256_c1": "v1 instances", "b256_columnar_c1": "v1 columnar", "v2_b256_c1": "v2 JSON",
                   "v2_binary_b256_c1": "v2 binary"}


def summarize(results: dict) -> list[str]:
    ip = results["in_process"]
    public = results.get("in_process_public_api") or ip
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
    lines.append("rows/s at batch 256, concurrency 1, as a ratio of the in-process public-API call (target >= 0.5):")
    lines.append(f"{'setup':<26}" + "".join(f"{label:>14}" for label in PROTOCOL_LABELS.values()))
    results["ratios"] = {}
    for key, server in servers.items():
        if not key.startswith("mlengine"):
            continue
        protocol = {phase: server.get(phase, {}).get("rows_per_s", float("nan")) / public["rows_per_s_b256"]
                    for phase in PROTOCOL_LABELS}
        lines.append(f"{key:<26}" + "".join(f"{protocol[phase]:>14.2f}" for phase in PROTOCOL_LABELS))
        best_b256 = max(server["b256_c1"]["rows_per_s"], server["b256_c2"]["rows_per_s"])
        ratios = {
            "p50_ms": server["c1"]["p50_ms"],
            "p50_over_public_api_ms": server["c1"]["p50_ms"] - public["p50_ms"],
            "c8_requests_per_s": server["c8"]["requests_per_s"],
            "b256_rows_ratio_vs_public_api": best_b256 / public["rows_per_s_b256"],
            "v2_p50_ms": server.get("v2_c1", {}).get("p50_ms", float("nan")),
            **{f"{phase}_rows_ratio_vs_public_api": value for phase, value in protocol.items()},
        }
        if plain2:
            ratios["c8_vs_plain2"] = server["c8"]["requests_per_s"] / plain2["c8"]["requests_per_s"]
        met = {f"{phase}_rows_ratio": value >= TARGETS["b256_rows_ratio"] for phase, value in protocol.items()}
        results["ratios"][key] = {"values": ratios, "targets_met": met}
    lines.append("")
    for key, server in servers.items():
        kind, _, workers = key.rpartition("-")
        if not kind.startswith("mlengine") or "base" in kind.split(":"):
            continue
        base_key = f"mlengine:base-{workers}" if kind == "mlengine" else None
        base = servers.get(base_key) if base_key else None
        if base is None:
            continue
        versus = {
            "p50_b1_ratio": server["c1"]["p50_ms"] / base["c1"]["p50_ms"],
            "c8_ratio": server["c8"]["requests_per_s"] / base["c8"]["requests_per_s"],
            **{f"{phase}_ratio": server[phase]["rows_per_s"] / base[phase]["rows_per_s"] for phase in PROTOCOL_LABELS},
        }
        results["ratios"][key]["vs_base"] = versus
        lines.append(f"{key} vs {base_key}: p50 b1 {versus['p50_b1_ratio']:.2f}x (lower is better), "
                     f"req/s c8 {versus['c8_ratio']:.2f}x, rows/s b256 "
                     + ", ".join(f"{label} {versus[phase + '_ratio']:.2f}x"
                                 for phase, label in PROTOCOL_LABELS.items()))
    for key, profiles in results.get("profiles", {}).items():
        for phase, top in profiles.items():
            lines.append("")
            lines.append(f"profile {key} {PROTOCOL_LABELS.get(phase, phase)} "
                         "(event-loop thread, top by own s; cumulative s, own s, calls):")
            for row in top:
                lines.append(f"  {row['cumulative_s']:>8.3f} {row['own_s']:>8.3f} {row['calls']:>8} {row['function']}")
    return lines


def write_readme_section(results: dict, command: str, repeat: int = 1,
                         readme: Path = ROOT / "bench" / "README.md") -> None:
    """The serving table between the bench_serving markers of bench/README.md."""
    ip = results.get("in_process_public_api") or results["in_process"]
    # three decimals: the target (0.5) is close enough that two would round 0.496 up to it
    phases = {**PROTOCOL_LABELS, "b256_c2": "v1 instances, 2 clients,"}
    rows = ["| setup | p50 ms b1 | req/s c8 | " + " | ".join(f"{label} b256" for label in phases.values())
            + " |", "|---|---|---|" + "---|" * len(phases)]
    for key, server in results["servers"].items():
        cells = [f"{server[phase]['rows_per_s'] / ip['rows_per_s_b256']:.3f}" if phase in server else "-"
                 for phase in phases]
        rows.append(f"| {key} | {server['c1']['p50_ms']:.2f} | {server['c8']['requests_per_s']:,.0f} | "
                    + " | ".join(cells) + " |")
    markdown = "\n".join([
        f"`{command}` ({'one run' if repeat == 1 else f'median of {repeat} interleaved runs'}, "
        f"{os.cpu_count()} cores, load average at the end {results['machine']['load_avg_end'][0]:.2f}, load "
        f"generator: the {load_client.CLIENT} client on the same cores). Rows/s at batch 256 as a ratio of the "
        f"in-process call through the public SavedModel API in the same run ({ip['rows_per_s_b256']:,.0f} rows/s, "
        "one caller); one client at a time unless the column says 2; "
        "`mlengine:base` is the old request path: bulk path off (`MLENGINE_SERVE_FAST_PATH=0`) "
        "and the model on its own thread (`--model-thread`), on today's HTTP stack (httptools, uvloop); "
        "`mlengine:model-thread` is today's server with a model thread.", "", *rows])
    from bench.tables import write_section

    write_section("serving", markdown, readme)


def main(argv: list[str] | None = None) -> int:
    from mlengine.components.shared.processes import exit_on_sigterm

    exit_on_sigterm()  # the servers it started are stopped by its finally blocks
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: train a tiny one in a temp dir)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--servers", default="plain-1,plain-2,mlengine:base-1,mlengine-1,mlengine:base-2,mlengine-2",
                        help="which servers to run, comma-separated kind-workers; kind is plain, mlengine, "
                             "mlengine:base (the old request path: bulk path off, model thread) "
                             "or mlengine:<serve flag>")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each one-worker mlengine server kind (cProfile, bulk phases)")
    parser.add_argument("--readme", action="store_true", help="write the serving table into bench/README.md")
    parser.add_argument("--repeat", type=int, default=1, help="run everything N times, report medians")
    parser.add_argument("--client", choices=sorted(CLIENTS), default=load_client.CLIENT,
                        help="load generator: raw (prepared HTTP/1.1 bytes on kept-alive connections, the "
                             "default) or aiohttp (its client session, as before)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-profiled", metavar="STATS", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8080, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--serve-profiled"]:  # --serve-profiled STATS <mlengine serve arguments>
        return serve_profiled(raw[1], raw[2:])
    args = parser.parse_args(raw)
    load_client.CLIENT = args.client
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
        runs: dict[str, list] = {}
        in_process_runs: list[dict] = []
        public_runs: list[dict] = []

        def reference() -> None:  # both in-process calls before every server: medians, interleaved with them
            print("bench: in-process", file=sys.stderr, flush=True)
            in_process_runs.append(bench_in_process(model_dir, rows, settings["latency_requests"],
                                                    settings["big_requests"]))
            public_runs.append(bench_in_process(model_dir, rows, settings["latency_requests"],
                                                settings["big_requests"], public_api=True))

        for _ in range(args.repeat):
            for entry in (e.strip() for e in args.servers.split(",") if e.strip()):
                kind, workers = entry.rsplit("-", 1)
                reference()
                runs.setdefault(entry, []).append(bench_server(kind, int(workers), model_dir, rows, spec, settings,
                                                               work_dir))
        reference()
        if args.profile:
            results["profiles"] = {}
            for entry in dict.fromkeys(e.strip() for e in args.servers.split(",") if e.strip().endswith("-1")):
                kind = entry.rsplit("-", 1)[0]
                if kind.startswith("mlengine"):
                    profiled = bench_server(kind, 1, model_dir, rows, spec, settings, work_dir, profile=True)
                    results["profiles"][entry] = profiled.pop("profiles")
                    results.setdefault("profiled_runs", {})[entry] = profiled
        results["runs"] = {"in_process": in_process_runs, "in_process_public_api": public_runs, **runs}
        results["in_process"] = median_of(in_process_runs)
        results["in_process_public_api"] = median_of(public_runs)
        results["servers"] = {entry: median_of(server_runs) for entry, server_runs in runs.items()}
        results["machine"]["load_avg_end"] = os.getloadavg()
        lines = summarize(results)
    total_errors = sum(run["errors"] for server_runs in runs.values() for run in server_runs)
    print("\n".join(lines))
    if args.readme:
        write_readme_section(results, "python -m bench.bench_serving " + " ".join(raw), args.repeat)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    print(f"bench: wrote {out}" + (f"; {total_errors} ERRORS" if total_errors else ""), file=sys.stderr)
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
