"""Ingest scaling with cores: `mlengine ingest` beside the bare CSV parser at 1, 2, ... cores.

    python -m bench.bench_scaling [--rows 10000000] [--repeats 5] [--max-cores N]
                                  [--baseline-path DIR] [--readme]

On one generated taxi CSV (cached under bench/results/.cache), for each core count n (the first
n cores of this process's affinity), in the same interleaved rounds so machine load hits every
command alike, each a whole process under ``taskset -c`` with ``OMP_NUM_THREADS=n``:

- ``mlengine ingest`` (default ``--workers``: one per core it may use);
- the parser alone: ``pyarrow.csv.read_csv`` of the same file in its own process;
- with ``--baseline-path``, the ``mlengine ingest`` found under that PYTHONPATH (an older
  version, e.g. ``git archive <commit>`` laid out as the package; see bench/README.md).

Wall time of each process (start-up and imports included, as a user sees it), best of
``--repeats`` (the machine may be shared: the best run is the least disturbed one). Reports
rows/s, ingest / parser ratio, and each command's speed-up over 1 core. Writes
bench/results/scaling.json, and the table into bench/README.md with ``--readme``, else beside the
JSON (scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_ingest_memory import CACHE_DIR, RESULTS_DIR, ensure_csv
from bench.tables import markdown_table, write_section

CHILD_TIMEOUT_S = 1800
INGEST = "import sys; from mlengine.cli import main; sys.exit(main())"
PARSER = "import sys, pyarrow.csv as c; print(c.read_csv(sys.argv[1]).num_rows)"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(command: list[str], cores: list[int], env_extra: dict[str, str] | None = None,
           cwd: Path | None = None) -> float:
    """Seconds one whole process takes under ``taskset -c cores``; raises with its stderr if it fails.

    ``cwd``: run there. A ``python -c`` child puts its working directory first on ``sys.path``: from
    the repository root it would import this checkout's ``mlengine`` before a ``PYTHONPATH`` baseline.
    """
    prefix, env = pinned(cores)
    command = [*prefix, *command]
    started = time.perf_counter()
    proc = subprocess.run(command, env={**env, **(env_extra or {})}, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S, cwd=cwd)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds


def pinned(cores: list[int]) -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that keep a child on ``cores``: ``taskset -c``, ``OMP_NUM_THREADS``."""
    return (["taskset", "-c", ",".join(str(c) for c in cores)],
            {**os.environ, "OMP_NUM_THREADS": str(len(cores))})


def measure(csv_path: Path, rows: int, core_counts: list[int], repeats: int, baseline: str | None,
            work: Path) -> dict:
    """{command: {cores: [seconds per repeat]}}, the commands interleaved in every round."""
    available = sorted(os.sched_getaffinity(0))
    commands = {
        "ingest": ([sys.executable, "-c", INGEST, "ingest", "--data", str(csv_path), "--out", str(work / "new")],
                   None),
        "parser": ([sys.executable, "-c", PARSER, str(csv_path)], None),
    }
    if baseline:
        commands["baseline"] = ([sys.executable, "-c", INGEST, "ingest", "--data", str(csv_path),
                                 "--out", str(work / "base")], {"PYTHONPATH": baseline})
    times: dict[str, dict[int, list[float]]] = {name: {n: [] for n in core_counts} for name in commands}
    _timed(commands["parser"][0], available[:1])  # warm-up: the file in the page cache, imports compiled
    for repeat in range(repeats):
        for n in core_counts:
            for name, (command, env) in commands.items():
                seconds = _timed(command, available[:n], env, cwd=work)
                times[name][n].append(round(seconds, 4))
                _log(f"bench: scaling round {repeat + 1}/{repeats}: {name} on {n} core(s): {seconds:.2f}s")
    summary = json.loads((work / "new" / "statistics" / "statistics.json").read_text(encoding="utf-8"))["ingest"]
    if summary["rows_read"] != rows:
        raise AssertionError(f"ingest read {summary['rows_read']} rows of {rows}")
    return times


def report(rows: int, csv_path: Path, times: dict[str, dict[int, list[float]]], repeats: int) -> dict:
    best = {name: {n: min(values) for n, values in by_cores.items()} for name, by_cores in times.items()}
    first = min(best["ingest"])
    table = []
    for n in sorted(best["ingest"]):
        entry = {"cores": n}
        for name in best:
            entry[f"{name}_seconds"] = best[name][n]
            entry[f"{name}_rows_per_s"] = round(rows / best[name][n])
            entry[f"{name}_speedup"] = round(best[name][first] / best[name][n], 3)
        entry["ingest_vs_parser"] = round(best["parser"][n] / best["ingest"][n], 3)
        entry["speedup_vs_parser_speedup"] = round(entry["ingest_speedup"] / entry["parser_speedup"], 3)
        if "baseline" in best:
            entry["ingest_vs_baseline"] = round(best["baseline"][n] / best["ingest"][n], 3)
        table.append(entry)
    return {"rows": rows, "csv_bytes": csv_path.stat().st_size, "repeats": repeats, "statistic": "best of repeats",
            "table": table, "seconds_all": times,
            "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                        "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
                        "python": platform.python_version(), "platform": platform.platform()}}


def markdown(result: dict, command: str, baseline_label: str | None) -> str:
    header = ["cores", "ingest s", "ingest rows/s", "parser s", "parser rows/s", "ingest / parser",
              "ingest speed-up", "parser speed-up", "speed-up ratio"]
    if baseline_label:
        header += ["baseline s", "baseline speed-up", "ingest vs baseline"]
    rows = []
    for e in result["table"]:
        row = [e["cores"], f"{e['ingest_seconds']:.2f}", f"{e['ingest_rows_per_s']:,}", f"{e['parser_seconds']:.2f}",
               f"{e['parser_rows_per_s']:,}", f"{e['ingest_vs_parser']:.2f}", f"{e['ingest_speedup']:.2f}x",
               f"{e['parser_speedup']:.2f}x", f"{e['speedup_vs_parser_speedup']:.2f}"]
        if baseline_label:
            row += [f"{e['baseline_seconds']:.2f}", f"{e['baseline_speedup']:.2f}x", f"{e['ingest_vs_baseline']:.2f}x"]
        rows.append(row)
    machine = result["machine"]
    lines = [
        "## Ingest scaling with cores",
        "",
        f"`{command}`: a {result['rows']:,}-row taxi CSV ({result['csv_bytes'] / 2**20:,.0f} MiB), each command a "
        f"whole process under `taskset -c` (the first n cores) with `OMP_NUM_THREADS=n`, wall time with start-up "
        f"and imports, best of {result['repeats']} interleaved rounds; {machine['cpus']} CPUs, load average at the "
        f"end {machine['loadavg_at_end'][0]}. Parser: `pyarrow.csv.read_csv` of the same file (typed, "
        "multi-threaded). Speed-up: over the same command on 1 core; speed-up ratio: ingest's over the parser's.",
        "",
        markdown_table(header, rows),
    ]
    if baseline_label:
        lines += ["", f"Baseline: {baseline_label}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the taxi CSV (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--max-cores", type=int, default=0, help="largest core count (default: every core)")
    parser.add_argument("--baseline-path", default=None,
                        help="PYTHONPATH of an older mlengine whose ingest runs beside (e.g. the e9af8ba layout)")
    parser.add_argument("--baseline-label", default=None, help="what the baseline is, for the README caption")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the generated CSV is kept")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scaling.json", help="result JSON path")
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        _log("bench: taskset (util-linux) is needed")
        return 2
    available = len(os.sched_getaffinity(0))
    top = min(args.max_cores or available, available)
    core_counts = list(range(1, top + 1))
    csv_path = ensure_csv(args.rows, 0.0, args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as work:
        times = measure(csv_path, args.rows, core_counts, args.repeats, args.baseline_path, Path(work))
    result = report(args.rows, csv_path, times, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    shown = shlex.join(["python", "-m", "bench.bench_scaling", *(argv if argv is not None else sys.argv[1:])])
    label = args.baseline_label or (f"`mlengine ingest` under PYTHONPATH={args.baseline_path}"
                                    if args.baseline_path else None)
    text = markdown(result, shown, label)
    print(text)
    if args.readme:
        write_section("scaling", text)
    else:
        args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    _log(f"bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
