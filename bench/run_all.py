"""`make bench`: every benchmark, each side by side with its baseline in the same run.

Each benchmark runs in its own process (fresh memory and TF state) and writes
bench/results/<name>.json and, with the ``--readme`` each one is given here, its section of the
tracked bench/README.md (run alone, a benchmark writes under bench/results/ only); this prints
which ran and where the figures are. Pass names to run only some:
`python -m bench.run_all serving training`.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = {
    "ingest_memory": ["bench.bench_ingest_memory", "--readme"],
    # mlengine ingest beside the bare parser at 1..all cores (taskset), best of 5 interleaved rounds
    "scaling": ["bench.bench_scaling", "--readme"],
    # ingest vs the bare parser vs the Beam path, analyze single-process vs Beam
    "preprocessing": ["bench.bench_preprocessing", "--readme"],
    "training": ["bench.bench_training", "--readme"],
    # before/after in one run (base: bulk path off, model thread), medians of 2
    "serving": ["bench.bench_serving", "--servers",
                "plain-2,mlengine:base-1,mlengine-1,mlengine:base-2,mlengine-2,mlengine:model-thread-2",
                "--repeat", "2", "--profile", "--readme"],
    # a classifier's bulk path against kserve's handlers (answers checked against the in-process classes)
    "serving_classification": ["bench.bench_serving_classification", "--readme"],
    "tuning": ["bench.bench_tuning", "--trials", "12", "--readme"],
    # batch prediction vs in-process predict (CSV, Parquet), and both at 1..all cores (taskset)
    "batch_predict": ["bench.bench_batch_predict", "--readme"],
    "real_dataset": ["bench.bench_real_dataset", "--second-run", "--readme"],
    # two package-shipped classification datasets vs HistGradientBoostingClassifier and a one-hot logistic regression
    "classification": ["bench.bench_classification", "--readme"],
    # `mlengine run` wall time, orchestration overhead vs work
    "end_to_end": ["bench.bench_end_to_end", "--readme"],
}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"bench: unknown benchmark {unknown[0]!r}; expected some of {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        code = subprocess.call([sys.executable, "-m", *BENCHMARKS[name]])
        print(f"bench: {name} exit {code} after {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(name)
    print(f"bench: results in bench/results/; failed: {failed or 'none'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
