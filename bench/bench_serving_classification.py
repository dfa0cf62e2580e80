"""Serving benchmark, classification row: a classifier's bulk path against kserve's handlers.

The same ``mlengine serve`` twice on one classification model (by default the fake classifier
of tests/classification_fixtures.py: three string classes, a string and a float column; it
costs almost nothing to run, so the figures are the server's own cost): with its bulk path
(``FastInferMiddleware``) and with it off (``MLENGINE_SERVE_FAST_PATH=0``, every request through
kserve's handlers). Rows/s at batch 256, one client, for v1 instances, v2 JSON and v2 JSON in /
binary tensors out (what tritonclient asks for), each the best of a few rounds, as a ratio of
the in-process ``runner.outputs`` call in the same run. Every answer is checked once against the in-process
classes before its phase is timed.

    python -m bench.bench_serving_classification [--model DIR] [--quick] [--readme]

writes bench/results/serving_classification.json, prints a table (``--readme``: also into
bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "serving_classification.json"
ROOT = Path(__file__).resolve().parents[1]
BATCH = 256
PHASES = {"v1": "v1 instances", "v2_json": "v2 JSON", "v2_binary_out": "v2 binary out"}


def sample_rows(spec, count: int, seed: int = 5) -> list[dict]:
    """Rows inside the spec's ranges: numbers spread over each range, strings from a few values."""
    rng = np.random.default_rng(seed)
    rows = [{} for _ in range(count)]
    for col in spec.columns:
        if col.type == "string":
            values = rng.choice(list(col.vocabulary or ("red", "blue", "green")), count)
        else:
            low, high = col.range if col.range is not None else (0, 1)
            values = rng.uniform(low, high, count)
            values = np.round(values).astype(int) if col.type == "int" else values.astype(np.float32)
        for row, value in zip(rows, values.tolist(), strict=True):
            row[col.name] = value
    return rows


def bodies(rows: list[dict], spec, count: int) -> dict[str, tuple[list[bytes], dict | None]]:
    """Request bodies per phase and the extra headers they need."""
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    v1, v2_json, v2_binary = [], [], []
    for i in range(count):
        chunk = [rows[(i * BATCH + j) % len(rows)] for j in range(BATCH)]
        v1.append(json.dumps({"instances": chunk}).encode())
        inputs = [{"name": c.name, "shape": [BATCH], "datatype": types[c.type], "data": [r[c.name] for r in chunk]}
                  for c in spec.columns]
        v2_json.append(json.dumps({"inputs": inputs}).encode())
        v2_binary.append(json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode())
    return {"v1": (v1, None), "v2_json": (v2_json, None), "v2_binary_out": (v2_binary, None)}


def in_process(model_dir: str, rows: list[dict], requests: int, rounds: int) -> tuple[float, list]:
    """(best rows/s of ``runner.outputs`` at batch 256 over ``rounds``, the classes of the first batch)."""
    from mlengine.components.shared.savedmodel import columns_from_rows, load_model_dir

    runner = load_model_dir(model_dir)
    columns = columns_from_rows(rows[:BATCH], runner.spec)
    first = runner.outputs(columns)["label"].tolist()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(requests):
            runner.outputs(columns)
        best = max(best, BATCH * requests / (time.perf_counter() - start))
    return best, first


def check_answer(url: str, body: bytes, phase: str, expected: list) -> None:
    """The server's classes for the first batch are the in-process ones (else the run is void)."""
    import requests

    response = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=60)
    response.raise_for_status()
    if phase == "v1":
        got = [p["label"] for p in response.json()["predictions"]]
    elif phase == "v2_json":
        got = next(o for o in response.json()["outputs"] if o["name"] == "label")["data"]
    else:
        import tritonclient.http as triton

        size = response.headers.get("inference-header-content-length")
        parsed = triton.InferenceServerClient.parse_response_body(response.content,
                                                                  header_length=int(size) if size else None)
        got = [v.decode() if isinstance(v, bytes) else v for v in parsed.as_numpy("label").tolist()]
    if got != expected:
        raise SystemExit(f"bench: {phase}: the server's classes differ from the in-process ones")


def bench_server(model_dir: str, fast: bool, phases: dict, expected: list, settings: dict, work: Path) -> dict:
    from bench.bench_serving import load
    from mlengine.components.deploy.local import start_server_process, stop_process_group, wait_until_ready
    from mlengine.components.shared.processes import free_port

    port, name = free_port(), "bench"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MLENGINE_SERVE_FAST_PATH="1" if fast else "0")
    command = [sys.executable, "-m", "mlengine.cli", "serve", "--model", model_dir, "--port", str(port),
               "--name", name]
    log = work / f"server-{'bulk' if fast else 'kserve'}.log"
    process = start_server_process(command, log, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, name, process, log, timeout=240)
        out = {}
        for phase, (batch_bodies, headers) in phases.items():
            target = f"{url}/v1/models/{name}:predict" if phase == "v1" else f"{url}/v2/models/{name}/infer"
            check_answer(target, batch_bodies[0], phase, expected)
            load(target, batch_bodies, 1, 5, 5, expect_rows=0)  # warm this route
            rounds = [load(target, batch_bodies, 1, settings["requests"], settings["time_limit"], expect_rows=0,
                           body_headers=headers) for _ in range(settings["rounds"])]
            best = max(rounds, key=lambda result: result["requests_per_s"])
            out[phase] = {**best, "rows_per_s": best["requests_per_s"] * BATCH,
                          "errors": sum(result["errors"] for result in rounds)}
        return out
    finally:
        stop_process_group(process.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="classification model directory (default: the fake classifier)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    # best of a few rounds: on a shared machine a single round mostly measures the neighbours
    settings = {"requests": 30 if args.quick else 100, "time_limit": 10.0, "rounds": 3 if args.quick else 5}
    with tempfile.TemporaryDirectory(prefix="mlengine-bench-serving-classification-") as tmp:
        work = Path(tmp)
        model_dir = args.model
        if not model_dir:
            sys.path.insert(0, str(ROOT))
            from tests.classification_fixtures import write_fake_classifier

            model_dir = str(write_fake_classifier(work / "model"))
        from mlengine.components.shared.featurespec import load_spec

        spec = load_spec(Path(model_dir) / "feature_spec.yaml")
        if not spec.is_classification:
            raise SystemExit(f"bench: {model_dir} is not a classification model")
        rows = sample_rows(spec, 2048)
        phases = bodies(rows, spec, 16)
        # the reference before, between and after the servers: its best, so a busy moment does not lower it
        references = []
        servers = {}
        for key, fast in (("mlengine (bulk path)", True), ("mlengine (kserve handlers)", False)):
            reference, expected = in_process(model_dir, rows, settings["requests"], settings["rounds"])
            references.append(reference)
            servers[key] = bench_server(model_dir, fast, phases, expected, settings, work)
        references.append(in_process(model_dir, rows, settings["requests"], settings["rounds"])[0])
        reference = max(references)
    results = {"model_dir": args.model or "fake classifier", "classes": list(spec.classes), "settings": settings,
               "in_process_rows_per_s": reference, "servers": servers, "cpus": os.cpu_count(),
               "load_avg_end": os.getloadavg()}
    lines = [f"in-process runner.outputs at batch {BATCH}: {reference:,.0f} rows/s; ratios of it:", "",
             "| setup | " + " | ".join(f"{label} b{BATCH}" for label in PHASES.values()) + " |",
             "|---|" + "---|" * len(PHASES)]
    for key, server in servers.items():
        lines.append(f"| {key} | " + " | ".join(f"{server[p]['rows_per_s'] / reference:.3f}" for p in PHASES) + " |")
    print("\n".join(lines))
    if args.readme:
        from bench.tables import write_section

        caption = (f"`python -m bench.bench_serving_classification` ({results['model_dir']}, classes "
                   f"{', '.join(map(str, spec.classes))}; {os.cpu_count()} cores, load average at the end "
                   f"{results['load_avg_end'][0]:.2f}; the raw client on the same cores). A classifier's rows/s at "
                   f"batch {BATCH}, one client, best of {settings['rounds']} rounds of {settings['requests']} "
                   "requests, as a ratio of the in-process `runner.outputs` call in the same run; the bulk path "
                   "against the same server with it off (`MLENGINE_SERVE_FAST_PATH=0`: kserve's handlers).")
        write_section("serving_classification", "\n".join(["### Serving a classifier", "", caption, "", *lines]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    errors = sum(phase["errors"] for server in servers.values() for phase in server.values())
    print(f"bench: wrote {out}" + (f"; {errors} ERRORS" if errors else ""), file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
