"""Training throughput: raw tf-keras ``fit`` vs our trainer vs our local parameter-server cluster.

Same generated taxi data, same transform, same model, in one run:

  (a) raw   - tf-keras ``fit`` of model.build_model on in-memory numpy columns (no input pipeline);
  (b) ours  - trainer.train in one process (Parquet streamed through data.make_dataset);
  (c) ps    - run_local_cluster with a chief, 1 ps and 2 workers on 127.0.0.1.

Examples/s is the median over epochs after the first (the first traces the functions). Writes
bench/results/training.json. ``python -m bench.bench_training [--rows 200000] [--readme]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _steady_rate(rates: list[float | None]) -> float:
    usable = [r for r in rates[1:] if r] or [r for r in rates if r]
    return statistics.median(usable) if usable else float("nan")


def prepare(workdir: Path, rows: int, nbuckets: int) -> dict[str, str]:
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.synthetic import generate_columns
    from tests.model_fixtures import write_splits

    spec = load_spec(None)
    splits = write_splits(generate_columns(rows, seed=11), spec, workdir / "data", train_parts=4)
    state = analyze(str(splits["train"]), spec, nbuckets)
    state.save(workdir / "transform")
    return {"train_dir": str(splits["train"]), "eval_dir": str(splits["eval"]),
            "transform_dir": str(workdir / "transform")}


def raw_keras_fit(paths: dict[str, str], hidden_units: list[int], learning_rate: float, batch_size: int,
                  epochs: int) -> dict:
    """(a): the same model, fit on numpy columns held in memory."""
    import numpy as np
    import pyarrow.parquet as pq

    from mlengine.components.shared.tf import import_tf
    from mlengine.components.shared.transform_state import TransformState
    from mlengine.components.train import model as model_lib

    _, keras = import_tf()
    state = TransformState.load(paths["transform_dir"])
    spec = state.spec
    table = pq.read_table(sorted(Path(paths["train_dir"]).glob("*.parquet")))
    features = {c.name: table.column(c.name).to_numpy().astype(c.dtypes.numpy) for c in spec.columns}
    labels = table.column(spec.label.name).to_numpy().astype(np.float32)
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(state, hidden_units, learning_rate)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    model.fit(features, labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    rates = [len(labels) / t for t in times]
    return {"examples_per_second": _steady_rate(rates), "epoch_rates": rates, "rows": len(labels)}


def ours(paths: dict[str, str], model_dir: Path, topology, hidden_units, learning_rate, batch_size, epochs,
         steps_per_epoch: int | None) -> dict:
    """(b) and (c): our trainer, in one process or as a local cluster."""
    from mlengine.components.train.local import run_local_cluster
    from mlengine.components.train.trainer import TrainConfig

    config = TrainConfig(**paths, model_dir=str(model_dir), hidden_units=hidden_units, learning_rate=learning_rate,
                         batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch)
    started = time.perf_counter()
    logger = logging.getLogger("mlengine.components.train")  # the launcher's and the trainer's lines
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: _quiet_log(record.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = run_local_cluster(config, topology, connect_timeout=300)
    finally:
        logger.removeHandler(handler)
    wall = time.perf_counter() - started
    rates = result["history"]["examples_per_second"]
    return {"examples_per_second": _steady_rate(rates), "epoch_rates": rates, "eval_rmse": result["eval_rmse"],
            "wall_seconds": wall}


def _quiet_log(line: str) -> None:
    if "train: epoch" in line or "error" in line.lower() or "local cluster" in line:
        _log(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--hidden-units", default="64,32")
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--nbuckets", type=int, default=16)
    parser.add_argument("--skip-cluster", action="store_true", help="leave out (c), the local ps cluster")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--readme", action="store_true", help="write the table into bench/README.md too")
    args = parser.parse_args(argv)

    from mlengine.components.shared.distributed import Topology
    from mlengine.components.train.model import parse_hidden_units

    hidden = parse_hidden_units(args.hidden_units)
    results: dict = {"rows": args.rows, "epochs": args.epochs, "batch_size": args.batch_size,
                     "hidden_units": hidden, "cpu_count": __import__("os").cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mlengine-bench-training-") as tmp:
        work = Path(tmp)
        _log(f"bench_training: generating {args.rows:,} rows")
        paths = prepare(work, args.rows, args.nbuckets)
        _log("bench_training: (a) raw tf-keras fit on in-memory columns")
        results["raw_keras"] = raw_keras_fit(paths, hidden, args.learning_rate, args.batch_size, args.epochs)
        _log("bench_training: (b) our trainer, one process")
        results["trainer_single"] = ours(paths, work / "model-single", Topology(), hidden, args.learning_rate,
                                         args.batch_size, args.epochs, None)
        if not args.skip_cluster:
            _log("bench_training: (c) local cluster: chief + 1 ps + 2 workers")
            results["local_ps_cluster"] = ours(paths, work / "model-ps", Topology(workers=2, ps=1), hidden,
                                               args.learning_rate, args.batch_size, args.epochs, None)
    base = results["raw_keras"]["examples_per_second"]
    rows = []
    for key, label in (("raw_keras", "(a) raw tf-keras fit, in memory"), ("trainer_single", "(b) trainer, 1 process"),
                       ("local_ps_cluster", "(c) local cluster 1 ps + 2 workers")):
        if key in results:
            rate = results[key]["examples_per_second"]
            results[key]["ratio_to_raw"] = rate / base
            rows.append((label, rate, rate / base, results[key].get("eval_rmse")))
    print(f"{'run':40s} {'examples/s':>12s} {'vs (a)':>8s} {'eval RMSE':>10s}")
    for label, rate, ratio, rmse in rows:
        print(f"{label:40s} {rate:12,.0f} {ratio:8.2f} {('' if rmse is None else f'{rmse:.3f}'):>10s}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.readme:
        write_readme(results, args, hidden, rows)
    _log(f"bench_training: wrote {out}")
    return 0


def write_readme(results: dict, args: argparse.Namespace, hidden: list[int], rows: list[tuple]) -> None:
    """The training section of bench/README.md (``--readme`` only: the file is tracked)."""
    from bench.tables import markdown_table, write_section

    load = __import__("os").getloadavg()[0]
    write_section("training", "\n".join([
        "## Training: our trainer vs raw Keras `fit`",
        "",
        f"{args.rows:,} rows, {args.epochs} epoch(s), batch {args.batch_size}, hidden {hidden}, "
        f"{results['cpu_count']} cores (load average at the end {load:.2f}); `python -m bench.bench_training`:",
        "",
        markdown_table(["run", "examples/s", "ratio to (a), same run", "eval RMSE"],
                       [[label, f"{rate:,.0f}", f"{ratio:.2f}", "" if rmse is None else f"{rmse:.3f}"]
                        for label, rate, ratio, rmse in rows]),
    ]))


if __name__ == "__main__":
    sys.exit(main())
