"""`mlengine run` wall time split into orchestration overhead and work, from the run's own log.

    python -m bench.bench_end_to_end [--rows 20000] [--repeats 1] [--epochs 2] [--trials 0] [--readme]

Runs the real CLI (`python -m mlengine.cli run --data CSV ...`) on a pre-generated taxi CSV, times
the whole command (the baseline, 1.00), and reads out/pipeline.log, where kfp.local stamps each
task's start and end and the KFP executor stamps when the component body got its inputs and when
it wrote its outputs. Per task: span = end - start; work = the component body (inputs received ->
outputs written, heavy imports inside the body included); overhead = span - work (a new Python
process, kfp import, loading the component). Outside the tasks: CLI start, compiling the pipeline,
kfp.local set-up, the summary. Writes bench/results/end_to_end.json (``--readme``: its bench/README.md section too).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.bench_ingest_memory import CACHE_DIR, ensure_csv
from bench.tables import markdown_table, write_results, write_section

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - INFO - Executing task '([\w-]+)'")
TASK_END = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - INFO - Task '([\w-]+)' finished with status")
EXECUTOR = re.compile(r"\[KFP Executor (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) INFO\]: "
                      r"(Got executor_input|Wrote executor output)")


def _clock(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_log(text: str) -> dict[str, dict[str, float]]:
    """Per task {"span", "work", "overhead"} seconds from a kfp.local pipeline.log."""
    tasks: dict[str, dict[str, float]] = {}
    current = None
    marks: dict[str, float] = {}
    for raw in text.splitlines():
        line = ANSI.sub("", raw).strip()
        if match := TASK_START.match(line):
            current, marks = match.group(2), {"start": _clock(match.group(1))}
        elif (match := TASK_END.match(line)) and current == match.group(2):
            marks["end"] = _clock(match.group(1))
            span = (marks["end"] - marks["start"]) % 86400
            work = (marks["out"] - marks["in"]) % 86400 if {"in", "out"} <= set(marks) else span
            name = current if current not in tasks else f"{current}-{len(tasks)}"
            tasks[name] = {"span": round(span, 3), "work": round(work, 3), "overhead": round(span - work, 3)}
            current = None
        elif current and (match := EXECUTOR.search(line)):
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            clock = stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6
            marks["in" if match.group(2).startswith("Got") else "out"] = clock
    return tasks


def run_once(csv_path: Path, out: Path, epochs: int, trials: int) -> dict:
    argv = [sys.executable, "-m", "mlengine.cli", "run", "--data", str(csv_path), "--out", str(out),
            "--epochs", str(epochs), "--trials", str(trials)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench_end_to_end: mlengine run exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    tasks = parse_log((out / "pipeline.log").read_text(encoding="utf-8"))
    spans = sum(task["span"] for task in tasks.values())
    work = sum(task["work"] for task in tasks.values())
    return {"wall": round(wall, 3), "tasks": tasks, "task_spans": round(spans, 3), "work": round(work, 3),
            "overhead_in_tasks": round(spans - work, 3), "outside_tasks": round(wall - spans, 3)}


def table(report: dict) -> str:
    runs = report["runs"]
    median = {key: statistics.median(run[key] for run in runs)
              for key in ("wall", "work", "overhead_in_tasks", "outside_tasks")}
    wall = median["wall"]
    rows = [["`mlengine run`, whole command (baseline)", f"{wall:.1f}", "1.00"],
            ["work: component bodies", f"{median['work']:.1f}", f"{median['work'] / wall:.2f}"],
            ["overhead inside tasks (process start, kfp, loading the component)",
             f"{median['overhead_in_tasks']:.1f}", f"{median['overhead_in_tasks'] / wall:.2f}"],
            ["outside tasks (CLI start, compile, kfp.local set-up, summary)", f"{median['outside_tasks']:.1f}",
             f"{median['outside_tasks'] / wall:.2f}"]]
    last = runs[-1]["tasks"]
    rows += [[f"&nbsp;&nbsp;task {name}: work / overhead", f"{t['work']:.1f} / {t['overhead']:.1f}",
              f"{t['span'] / runs[-1]['wall']:.2f}"] for name, t in last.items()]
    machine = report["machine"]
    return "\n".join([
        "## End to end: `mlengine run` wall time, orchestration vs work",
        "",
        f"{report['rows']:,}-row taxi CSV, `--epochs {report['epochs']} --trials {report['trials']}`, median of "
        f"{len(runs)} run(s) (per-task rows: the last run), {machine['cpus']} cores (load "
        f"average at the end {machine['loadavg_at_end'][0]}); "
        "`python -m bench.bench_end_to_end`:",
        "",
        markdown_table(["what", "seconds", "share of the wall time"], rows),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=0)
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    args = parser.parse_args(argv)
    csv_path = ensure_csv(args.rows, 0.0, CACHE_DIR)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as work:
        for repeat in range(args.repeats):
            print(f"bench: end_to_end run {repeat + 1}/{args.repeats}", file=sys.stderr, flush=True)
            runs.append(run_once(csv_path, Path(work) / f"run{repeat}", args.epochs, args.trials))
    report = {"rows": args.rows, "epochs": args.epochs, "trials": args.trials, "runs": runs,
              "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
                          "python": platform.python_version()}}
    path = write_results("end_to_end", report)
    text = table(report)
    print(text)
    if args.readme:
        write_section("end_to_end", text)
    print(f"bench: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
