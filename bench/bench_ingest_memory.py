"""Ingest + transform (analyze) memory and speed: peak RSS must not grow with the file size.

    python -m bench.bench_ingest_memory [--rows 20000000] [--small-rows 1000000] [--dirty-fraction 0.001] [--readme]

Generates a small and a large taxi CSV (cached under bench/results/.cache, which is gitignored),
ingests each in a fresh subprocess (so one run's memory cannot hide in the other's), and reports
per size: rows/s and the child's peak RSS (``VmHWM``: bench/memory.py), plus the RSS after imports and a
100-row warm-up ingest (the fixed cost), so the data-driven share is visible. Writes
bench/results/ingest_memory.json and prints a table (``--readme``: into bench/README.md too); the
ratio of the two peaks is the number to watch (close to 1.0 = memory flat in file size). Both
files have the same share of dirty rows, so every chunk of either takes the same path (a chunk
with a bad cell is read as text, which holds more memory per chunk than the typed fast path): the
sizes differ, the data mix does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
CACHE_DIR = RESULTS_DIR / ".cache"
RESULT_FILE = RESULTS_DIR / "ingest_memory.json"
SEED = 2024
CHILD_TIMEOUT_S = 3600


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_csv(rows: int, dirty_fraction: float, cache_dir: Path) -> Path:
    """The generated taxi CSV with ``rows`` rows (generated once, then reused)."""
    from mlengine import synthetic

    path = cache_dir / f"taxi-{rows}-seed{SEED}-dirty{dirty_fraction:g}.csv"
    if path.is_file() and path.stat().st_size > 0:
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    _log(f"bench: generating {rows:,} rows -> {path}")
    started = time.monotonic()
    synthetic.write_csv(partial, rows, seed=SEED, dirty_fraction=dirty_fraction)
    partial.rename(path)
    _log(f"bench: generated {rows:,} rows in {time.monotonic() - started:.1f}s")
    return path


def child_main(csv_path: str, out_dir: str, chunk_rows: int) -> None:
    """Runs in the fresh subprocess: ingest once, print one JSON line with the measurements."""
    import psutil

    from bench.memory import peak_rss_mb
    from mlengine import synthetic
    from mlengine.components.ingest.executor import run as run_ingest
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.constants import SPLITS

    spec = load_spec()
    nbuckets = HyperParameters().nbuckets
    out = Path(out_dir)
    # a warm-up ingest of a few rows loads what pyarrow loads lazily (compute kernels, pandas,
    # thread pools), so the baseline is the fixed cost and the rest is the data-driven part
    synthetic.write_csv(out / "warmup.csv", 300, seed=1)  # every split above the spec's split.min_rows
    run_ingest(str(out / "warmup.csv"), spec, {name: str(out / "warmup" / name) for name in SPLITS},
               str(out / "warmup"), str(out / "warmup" / "stats"), chunk_rows=chunk_rows, workers=1)
    analyze(str(out / "warmup" / "train"), spec, nbuckets)
    baseline_mb = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    result = run_ingest(csv_path, spec, {name: str(out / name) for name in SPLITS}, str(out / "rejects"),
                        str(out / "stats"), chunk_rows=chunk_rows, workers=1)  # this process's RSS only
    seconds = time.perf_counter() - started
    ingest_peak_mb = peak_rss_mb()
    started = time.perf_counter()
    state = analyze(str(out / "train"), spec, nbuckets)  # the transform's analyze pass
    analyze_seconds = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(json.dumps({
        "rows_read": result.rows_read, "rows_ok": result.rows_ok, "rows_rejected": result.rows_rejected,
        "seconds": round(seconds, 3), "rows_per_s": round(result.rows_read / seconds),
        "baseline_rss_mb": round(baseline_mb, 1), "peak_rss_mb": round(peak_mb, 1),
        "ingest_rss_mb": round(ingest_peak_mb - baseline_mb, 1),
        "analyze_rows": state.rows, "analyze_seconds": round(analyze_seconds, 3),
    }))


def run_child(csv_path: Path, chunk_rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mlengine-bench-ingest-") as out_dir:
        command = [sys.executable, "-m", "bench.bench_ingest_memory", "--child", str(csv_path), out_dir,
                   "--chunk-rows", str(chunk_rows)]
        # subprocess.run kills the child if we are interrupted or it times out
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                                   check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"ingest child failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict]) -> str:
    header = (f"{'rows':>11} {'file MB':>8} {'seconds':>8} {'rows/s':>10} {'base MB':>8} {'peak MB':>8} "
              f"{'ingest MB':>10}")
    lines = [header, "-" * len(header)]
    for item in rows:
        lines.append(f"{item['rows_read']:>11,} {item['file_mb']:>8.1f} {item['seconds']:>8.2f} "
                     f"{item['rows_per_s']:>10,} {item['baseline_rss_mb']:>8.1f} {item['peak_rss_mb']:>8.1f} "
                     f"{item['ingest_rss_mb']:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ingest_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the large file (default 20,000,000)")
    parser.add_argument("--small-rows", type=int, default=1_000_000, help="rows of the small file (default 1,000,000)")
    parser.add_argument("--dirty-fraction", type=float, default=0.001,
                        help="share of dirty rows in both files (default 0.001)")
    parser.add_argument("--chunk-rows", type=int, default=None, help="ingest chunk size (default CSV_CHUNK_ROWS)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where generated CSVs are kept")
    parser.add_argument("--out", type=Path, default=RESULT_FILE, help="result JSON path")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    parser.add_argument("--child", nargs=2, metavar=("CSV", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from mlengine.constants import CSV_CHUNK_ROWS

    chunk_rows = args.chunk_rows or CSV_CHUNK_ROWS
    if args.child:
        child_main(args.child[0], args.child[1], chunk_rows)
        return 0
    if not 0 < args.small_rows <= args.rows:
        parser.error("need 0 < --small-rows <= --rows")

    measurements = []
    for rows in (args.small_rows, args.rows):
        csv_path = ensure_csv(rows, args.dirty_fraction, args.cache_dir)
        _log(f"bench: ingesting {rows:,} rows in a fresh process")
        measured = run_child(csv_path, chunk_rows)
        measured["file_mb"] = round(csv_path.stat().st_size / 2**20, 1)
        measurements.append(measured)
    small, large = measurements
    report = {
        "benchmark": "ingest_memory",
        "sizes": measurements,
        "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "ingest_rss_ratio": round(large["ingest_rss_mb"] / max(small["ingest_rss_mb"], 1.0), 3),
        "dirty_fraction": args.dirty_fraction,
        "chunk_rows": chunk_rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_table(measurements))
    print(f"peak RSS ratio {large['rows_read']:,} / {small['rows_read']:,} rows: {report['peak_rss_ratio']:.3f} "
          f"(ingest share ratio {report['ingest_rss_ratio']:.3f}); written to {args.out}")
    if not args.readme:
        return 0
    from bench.tables import write_section

    write_section("ingest_memory", "\n".join([
        "## Ingest memory: peak RSS flat in input size",
        "",
        f"{small['rows_read']:,} vs {large['rows_read']:,} rows ({args.dirty_fraction:g} of them dirty in both), "
        f"chunks of {chunk_rows:,}, each in a fresh process, load average at the end "
        f"{os.getloadavg()[0]:.2f}; peak RSS ratio large / small "
        f"{report['peak_rss_ratio']:.3f} (ingest share {report['ingest_rss_ratio']:.3f}); "
        "`python -m bench.bench_ingest_memory`"
        + (" (reduced size: the larger file spans under 10 chunks, so this ratio is not yet the flat-memory "
           "figure)" if large["rows_read"] < 10 * chunk_rows else "") + ":",
        "",
        "```",
        format_table(measurements),
        "```",
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
