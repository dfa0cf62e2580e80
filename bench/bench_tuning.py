"""Tuning: eval RMSE reached vs number of trials, TPE against random search at the same budget.

    python -m bench.bench_tuning [--rows 200000] [--trials 20] [--epochs 2] [--parallel 2] [--readme]

Generates the built-in taxi data (noise std 1.0: the RMSE floor) as train/eval Parquet splits,
then runs the default search space (nbuckets, layers, learning rate, batch size) once with TPE
and once with random search: same budget, same seed, real trials (transform with the trial's
nbuckets + training), early stopping off so both spend the budget alike. Prints the best RMSE
so far after each trial for both, the best parameters (nbuckets included), and the gap to the
noise floor; writes bench/results/tuning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
RESULT_FILE = RESULTS_DIR / "tuning.json"
SEED = 2024
TARGET_GAP = 0.05  # within 5% of the noise floor


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_splits(root: Path, rows: int, seed: int) -> tuple[str, str]:
    """The generated taxi rows as 80/20 train/eval Parquet splits (the ingest output contract)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlengine.constants import PARQUET_PART_PATTERN
    from mlengine.synthetic import generate_columns

    columns = generate_columns(rows, seed)
    cut = int(rows * 0.8)
    dirs = []
    for split, part in (("train", slice(0, cut)), ("eval", slice(cut, rows))):
        directory = root / split
        directory.mkdir(parents=True, exist_ok=True)
        table = pa.table({name: values[part] for name, values in columns.items()})
        pq.write_table(table, directory / PARQUET_PART_PATTERN.format(index=0))
        dirs.append(str(directory))
    return dirs[0], dirs[1]


def best_so_far(result: dict) -> list[float | None]:
    """Best COMPLETE eval RMSE after each trial, in trial order."""
    curve, best = [], None
    for trial in sorted(result["trials"], key=lambda t: t["number"]):
        if trial["state"] == "COMPLETE" and trial["rmse"] is not None:
            best = trial["rmse"] if best is None else min(best, trial["rmse"])
        curve.append(best)
    return curve


def run(args: argparse.Namespace) -> dict:
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.tune.local import run_local_study
    from mlengine.components.tune.space_loader import load_search_space
    from mlengine.constants import TAXI_NOISE_STD

    setup_logging()  # the study's progress lines

    work = Path(tempfile.mkdtemp(prefix="mlengine-bench-tuning-"))
    try:
        started = time.monotonic()
        train_dir, eval_dir = write_splits(work / "data", args.rows, SEED)
        _log(f"bench: {args.rows:,} generated rows in {time.monotonic() - started:.1f}s")
        base = load_search_space(args.space)
        raw = base.to_dict()
        raw.pop("early_stopping", None)  # same budget for both: every trial runs all its epochs
        runs = {}
        for algorithm in args.algorithms:
            from mlengine.components.tune.space_loader import space_from_dict

            settings = {"random_state": SEED}
            if algorithm in ("tpe", "multivariate-tpe"):
                settings["n_startup_trials"] = args.startup_trials
            space = space_from_dict({**raw, "algorithm": algorithm, "algorithm_settings": settings,
                                     "max_trials": args.trials, "parallel_trials": args.parallel,
                                     "max_failed_trials": args.trials}, source=f"{base.source} ({algorithm})")
            _log(f"bench: {algorithm}: {args.trials} trials x {args.epochs} epoch(s), {args.parallel} in parallel")
            began = time.monotonic()
            result = run_local_study(train_dir, eval_dir, None, space, str(work / algorithm), epochs=args.epochs,
                                     seed=0)
            seconds = time.monotonic() - began
            curve = best_so_far(result)
            runs[algorithm] = {
                "best_rmse": result["best_rmse"],
                "best_params": result["best_params"],
                "gap_to_floor": result["best_rmse"] / TAXI_NOISE_STD - 1.0,
                "trials_to_within_5pct": next((i + 1 for i, v in enumerate(curve)
                                               if v is not None and v <= TAXI_NOISE_STD * (1 + TARGET_GAP)), None),
                "best_so_far": curve,
                "trials": [{k: t[k] for k in ("number", "params", "rmse", "state", "error")} for t in result["trials"]],
                "seconds": seconds,
            }
        return {
            "benchmark": "tuning",
            "rows": args.rows, "train_rows": int(args.rows * 0.8), "eval_rows": args.rows - int(args.rows * 0.8),
            "trials": args.trials, "epochs": args.epochs, "parallel": args.parallel,
            "noise_floor": TAXI_NOISE_STD, "target_gap": TARGET_GAP,
            "search_space": raw["parameters"],
            "runs": runs,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(report: dict) -> None:
    algorithms = list(report["runs"])
    print(f"eval RMSE (best so far) by trial; noise floor {report['noise_floor']}, "
          f"{report['train_rows']:,} train rows, {report['epochs']} epoch(s) per trial")
    print("trial | " + " | ".join(f"{a:>8}" for a in algorithms))
    for index in range(report["trials"]):
        cells = []
        for algorithm in algorithms:
            value = report["runs"][algorithm]["best_so_far"][index] if index < len(
                report["runs"][algorithm]["best_so_far"]) else None
            cells.append(f"{value:8.4f}" if value is not None else f"{'-':>8}")
        print(f"{index + 1:5d} | " + " | ".join(cells))
    for algorithm in algorithms:
        run = report["runs"][algorithm]
        params = run["best_params"]
        print(f"{algorithm}: best rmse {run['best_rmse']:.4f} ({run['gap_to_floor']:+.1%} vs floor), "
              f"nbuckets={params['nbuckets']} hidden={params['hidden_units']} lr={params['learning_rate']:.3g} "
              f"bs={params['batch_size']}; within 5% after "
              f"{run['trials_to_within_5pct'] or 'never'} trial(s); {run['seconds']:.0f}s")


def write_readme(report: dict) -> None:
    """The tuning section of bench/README.md: best-so-far eval RMSE by trial, per algorithm."""
    import os

    from bench.tables import markdown_table, write_section

    algorithms = list(report["runs"])
    rows = []
    for index in range(report["trials"]):
        cells = [report["runs"][a]["best_so_far"][index] if index < len(report["runs"][a]["best_so_far"]) else None
                 for a in algorithms]
        rows.append([index + 1, *("-" if v is None else f"{v:.4f} ({v / report['noise_floor']:.3f})" for v in cells)])
    write_section("tuning", "\n".join([
        "## Tuning: eval RMSE (best so far) vs trials",
        "",
        f"{report['train_rows']:,} train rows, {report['epochs']} epoch(s) per trial, noise floor "
        f"{report['noise_floor']} (in brackets: RMSE / noise floor), load average at the end "
        f"{os.getloadavg()[0]:.2f}; `python -m bench.bench_tuning`:",
        "",
        markdown_table(["trial", *algorithms], rows),
    ]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--startup-trials", type=int, default=6, help="random trials before TPE models")
    parser.add_argument("--algorithms", nargs="+", default=["tpe", "random"])
    parser.add_argument("--space", default=None, help="search space YAML (default: the built-in one)")
    parser.add_argument("--out", default=str(RESULT_FILE))
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print_table(report)
    if args.readme:
        write_readme(report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
