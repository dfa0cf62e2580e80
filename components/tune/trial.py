"""One tuning trial: re-run the transform's analyze pass with the trial's ``nbuckets``, then train.

``transform_and_train`` is the default trial runner of the local study (it runs inside a trial
process). ``main`` is the same trial as a program, the command of a Katib trial's TFJob: it
prints ``rmse=<value>`` after every epoch and at the end, the lines Katib's StdOut metrics
collector reads (the last one is the trial's objective; the per-epoch ones drive medianstop).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlengine.constants import (
    CHECKPOINT_SUBDIR,
    DEFAULT_HPARAMS,
    PARAM_BATCH_SIZE,
    PARAM_HIDDEN_UNITS,
    PARAM_LEARNING_RATE,
    PARAM_NBUCKETS,
    SERVING_MODEL_SUBDIR,
    SPEC_FILE,
)
from mlengine.errors import MlengineError

METRIC_LINE = "rmse={value:.6f}"
TRANSFORM_SUBDIR = "transform"
MODEL_SUBDIR = "model"
# the trainer's per-epoch progress line carries the eval RMSE: "train: epoch 2/4 loss=... val_rmse=1.08 ..."
_EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ .*val_rmse=([-+0-9.eE]+|nan|inf)")

Report = Callable[[int, float], None]


@dataclass(frozen=True)
class TrialContext:
    """What a trial process needs besides its parameters (picklable: it crosses a process boundary)."""

    number: int
    train_dir: str
    eval_dir: str
    spec: dict  # FeatureSpec.to_dict()
    epochs: int
    trial_dir: str
    seed: int = 0
    keep_models: bool = False
    steps_per_epoch: int | None = None


def epoch_rmse_from_line(line: str) -> tuple[int, float] | None:
    """``(epoch, val_rmse)`` from a trainer progress line, or None for other lines."""
    match = _EPOCH_LINE.search(line)
    if not match:
        return None
    return int(match.group(1)), float(match.group(2))


def transform_and_train(params: dict[str, Any], context: TrialContext, report: Report) -> float:
    """Analyze the training split with the trial's nbuckets, train, and return the eval RMSE."""
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.train.trainer import TrainConfig, train
    from mlengine.components.transform import logic as transform

    merged = {**DEFAULT_HPARAMS, **params}
    spec = spec_from_dict(context.spec, source=f"trial {context.number}: feature spec")
    trial_dir = Path(context.trial_dir)
    transform_dir = trial_dir / TRANSFORM_SUBDIR
    model_dir = trial_dir / MODEL_SUBDIR

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    state = transform.analyze(context.train_dir, spec, int(merged[PARAM_NBUCKETS]), seed=context.seed, progress=log)
    transform.save_transform(state, str(transform_dir))
    config = TrainConfig(
        train_dir=context.train_dir, eval_dir=context.eval_dir, transform_dir=str(transform_dir),
        model_dir=str(model_dir), hidden_units=str(merged[PARAM_HIDDEN_UNITS]),
        learning_rate=float(merged[PARAM_LEARNING_RATE]), batch_size=int(merged[PARAM_BATCH_SIZE]),
        epochs=context.epochs, steps_per_epoch=context.steps_per_epoch, seed=context.seed,
    )

    def progress(message: str) -> None:
        log(message)
        parsed = epoch_rmse_from_line(message)
        if parsed is not None:
            report(*parsed)

    metrics = train(config, progress=progress)
    rmse = metrics.get("eval_rmse")
    if not context.keep_models:  # a study keeps numbers, not one SavedModel per trial
        for sub in (SERVING_MODEL_SUBDIR, CHECKPOINT_SUBDIR):
            shutil.rmtree(model_dir / sub, ignore_errors=True)
    if rmse is None:
        raise MlengineError(f"trial {context.number}: training reported no eval RMSE")
    return float(rmse)


# --- the trial as a program (Katib trial container) ----------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlengine.components.tune.trial",
        description="One tuning trial: transform with --nbuckets, train, print rmse=<value> lines for Katib.",
    )
    parser.add_argument("--train-dir", required=True, help="training split (directory of Parquet parts)")
    parser.add_argument("--eval-dir", required=True, help="eval split (directory of Parquet parts)")
    parser.add_argument("--spec", default="", help="feature spec YAML, or a statistics directory holding one")
    parser.add_argument("--out", required=True, help="directory for this trial's transform and model")
    parser.add_argument("--nbuckets", type=int, default=DEFAULT_HPARAMS[PARAM_NBUCKETS])
    parser.add_argument("--hidden-units", default=DEFAULT_HPARAMS[PARAM_HIDDEN_UNITS])
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_HPARAMS[PARAM_LEARNING_RATE])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_HPARAMS[PARAM_BATCH_SIZE])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def load_spec_dict(spec_dir_or_file: str | Path | Any | None) -> dict:
    """A feature spec as a dict from a FeatureSpec, a dict, a YAML file, or a directory with ``feature_spec.yaml``."""
    from mlengine.components.shared.featurespec import FeatureSpec, load_spec, spec_from_dict

    if isinstance(spec_dir_or_file, FeatureSpec):
        return spec_dir_or_file.to_dict()
    if isinstance(spec_dir_or_file, dict):
        return spec_from_dict(spec_dir_or_file).to_dict()
    path = Path(spec_dir_or_file) if spec_dir_or_file else None
    if path is not None and path.is_dir():
        path = path / SPEC_FILE
    return load_spec(path).to_dict()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = {PARAM_NBUCKETS: args.nbuckets, PARAM_HIDDEN_UNITS: args.hidden_units,
              PARAM_LEARNING_RATE: args.learning_rate, PARAM_BATCH_SIZE: args.batch_size}

    def report(epoch: int, value: float) -> None:  # per-epoch lines: Katib's medianstop reads them
        print(METRIC_LINE.format(value=value), flush=True)

    try:
        context = TrialContext(number=0, train_dir=args.train_dir, eval_dir=args.eval_dir,
                               spec=load_spec_dict(args.spec), epochs=args.epochs, trial_dir=args.out,
                               seed=args.seed)
        rmse = transform_and_train(params, context, report)
    except MlengineError as err:
        print(f"trial: error: {err}", file=sys.stderr)
        return 2
    if not math.isfinite(rmse):
        print(f"trial: error: eval RMSE is {rmse} (training diverged)", file=sys.stderr)
        return 3
    print(METRIC_LINE.format(value=rmse), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
