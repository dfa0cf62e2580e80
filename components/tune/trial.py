"""One tuning trial: re-run the transform's analyze pass with the trial's ``nbuckets``, then train.

``transform_and_train`` is the default trial runner of the local study (it runs inside a trial
process). ``main`` is the same trial as a program: the command of every replica of a Katib
trial's TFJob (``python -m mlengine.components.tune.trial``). It reads its role from
``TF_CONFIG`` like the training task (components/train/task.py): parameter servers and workers
of a parameter-server job only serve; every training replica stages its ``s3://`` inputs in,
analyzes the training split with the trial's ``nbuckets`` (deterministic, so every replica gets
the same boundaries) and trains. The chief uploads the model and prints ``rmse=<value>`` (a class
label: ``log_loss=<value>``, ``labels.objective_metric``) after every epoch and once at the end:
the lines Katib's StdOut metrics collector reads (the per-epoch ones drive medianstop; the
objective uses the latest value).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlengine.components.shared.hyperparameters import HyperParameters
from mlengine.components.shared.processes import EXIT_DIVERGED, EXIT_OK, exit_hard, run_program
from mlengine.constants import CHECKPOINT_SUBDIR, CLASS_WEIGHTS, DEFAULT_TUNE_EPOCHS, SERVING_MODEL_SUBDIR, SPEC_FILE
from mlengine.errors import MlengineError

METRIC_LINE = "{metric}={value:.6f}"
TRANSFORM_SUBDIR = "transform"
MODEL_SUBDIR = "model"

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
    model_module: str = ""  # the model module (file or artifact folder); "": the built-in network


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run(params: dict[str, Any], *, train_dir: str, eval_dir: str, spec: dict, epochs: int, transform_dir: Path,
         model_dir: Path, seed: int, steps_per_epoch: int | None, report: Report, strategy=None,
         is_chief: bool = True, model_module: str = "") -> float | None:
    """Analyze with the trial's nbuckets into ``transform_dir``, train into ``model_dir``; the eval RMSE.

    ``params`` holds the built-in hyperparameters and, with ``model_module``, the module's own.
    """
    from mlengine.components.shared import analyze as transform
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.shared.logs import log_to_stderr
    from mlengine.components.train.public import TrainConfig, train

    hparams = HyperParameters.from_dict({k: v for k, v in params.items() if k in HyperParameters.names()})
    module_values = {k: v for k, v in params.items() if k not in HyperParameters.names()}
    feature_spec = spec_from_dict(spec, source="trial feature spec")
    state = transform.analyze(train_dir, feature_spec, hparams.nbuckets, seed=seed)
    state.save(transform_dir)
    config = TrainConfig(
        train_dir=train_dir, eval_dir=eval_dir, transform_dir=str(transform_dir), model_dir=str(model_dir),
        hidden_units=hparams.hidden_units, learning_rate=hparams.learning_rate, batch_size=hparams.batch_size,
        class_weight=hparams.class_weight, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed,
        model_module=model_module, model_hp=module_values,
    )

    log_to_stderr(train.__module__)  # the trainer's progress lines: in the trial's output, beside its own
    # the chief reports every epoch's eval objective (the pruner's, or Katib's medianstop's, input)
    metrics = train(config, strategy, is_chief=is_chief, on_epoch=report if is_chief else None)
    return metrics.get("eval_objective", metrics.get("eval_rmse"))  # RMSE, or log loss for a class label


def transform_and_train(params: dict[str, Any], context: TrialContext, report: Report) -> float:
    """The local study's trial: analyze the training split with the trial's nbuckets, train, return eval RMSE."""
    trial_dir = Path(context.trial_dir)
    model_dir = trial_dir / MODEL_SUBDIR
    rmse = _run(params, train_dir=context.train_dir, eval_dir=context.eval_dir, spec=context.spec,
                epochs=context.epochs, transform_dir=trial_dir / TRANSFORM_SUBDIR, model_dir=model_dir,
                seed=context.seed, steps_per_epoch=context.steps_per_epoch, report=report,
                model_module=context.model_module)
    if not context.keep_models:  # a study keeps numbers, not one SavedModel per trial
        for sub in (SERVING_MODEL_SUBDIR, CHECKPOINT_SUBDIR):
            shutil.rmtree(model_dir / sub, ignore_errors=True)
    if rmse is None:
        raise MlengineError(f"trial {context.number}: training reported no eval RMSE")
    return float(rmse)


# --- feature spec from a path, a statistics directory or an s3:// / minio:// URI ---------------------------
def load_spec_dict(spec_dir_or_file: str | Path | Any | None) -> dict:
    """A feature spec as a dict: from a FeatureSpec, a dict, a YAML file or URI, or a directory/prefix holding one."""
    from mlengine.components.shared.featurespec import FeatureSpec, load_spec, spec_from_dict

    if isinstance(spec_dir_or_file, FeatureSpec):
        return spec_dir_or_file.to_dict()
    if isinstance(spec_dir_or_file, dict):
        return spec_from_dict(spec_dir_or_file).to_dict()
    text = str(spec_dir_or_file or "")
    if text.startswith(("s3://", "minio://")):
        return _remote_spec(text)
    path = Path(text) if text else None
    if path is not None and path.is_dir():
        path = path / SPEC_FILE
    return load_spec(path).to_dict()


def _remote_spec(uri: str) -> dict:
    from mlengine.components.shared import storage
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.shared.staging import normalize_uri

    uri = normalize_uri(uri)
    if not uri.endswith((".yaml", ".yml")):
        uri = uri.rstrip("/") + "/" + SPEC_FILE
    from mlengine.components.shared.userfiles import safe_yaml_load
    from mlengine.constants import MAX_USER_FILE_BYTES

    with storage.open_text(uri) as handle:
        text = handle.read(MAX_USER_FILE_BYTES + 1)
    raw = safe_yaml_load(text, uri, MlengineError)
    return spec_from_dict(raw, source=uri).to_dict()


# --- the trial as a program (Katib trial container) ----------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlengine.components.tune.trial",
        description="One tuning trial: transform with --nbuckets, train, print rmse=<value> lines for Katib.",
    )
    parser.add_argument("--train-dir", required=True, help="training split: directory or s3:// prefix of Parquet parts")
    parser.add_argument("--eval-dir", required=True, help="eval split: directory or s3:// prefix of Parquet parts")
    parser.add_argument("--spec", default="", help="feature spec YAML, or a statistics directory/prefix holding one")
    parser.add_argument("--out", required=True, help="directory or s3:// prefix for this trial's model")
    defaults = HyperParameters()
    parser.add_argument("--nbuckets", type=int, default=defaults.nbuckets)
    parser.add_argument("--hidden-units", default=defaults.hidden_units)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--class-weight", choices=CLASS_WEIGHTS, default=defaults.class_weight)
    parser.add_argument("--epochs", type=int, default=DEFAULT_TUNE_EPOCHS)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="auto", choices=("auto", "parameter_server", "all_reduce", "none"),
                        help="distribution strategy; auto follows TF_CONFIG")
    parser.add_argument("--scratch-dir", default=None, help="where s3:// inputs are copied (an emptyDir in a pod)")
    parser.add_argument("--model-module", default="",
                        help="the model module artifact folder (directory or s3:// prefix); default: the built-in net")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="a model module hyperparameter of this trial; repeatable")
    return parser


def run(argv: list[str] | None = None) -> int:
    """Run this replica's part of one trial; returns the exit code."""
    from mlengine.components.shared import distributed, staging
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.shared.labels import objective_metric
    from mlengine.components.train.public import TrainConfig

    args = build_parser().parse_args(argv)
    from mlengine.components.shared.model_module import parse_assignments

    params = {name: getattr(args, name) for name in HyperParameters.names()}
    module_text = parse_assignments(args.hp)  # typed by the module's declaration when it is loaded
    role = distributed.role_from_env(args.strategy)
    if role.strategy == "parameter_server" and not role.trains:
        server = distributed.start_server(role)
        _log(f"trial: {role.name} serving at {role.address}")
        server.join()
        return EXIT_OK
    spec = load_spec_dict(args.spec)
    metric = objective_metric(spec_from_dict(spec))  # the Experiment's objectiveMetricName
    model_uri = args.out.rstrip("/") + "/" + MODEL_SUBDIR
    # every training replica builds the transform on its own disk (the stage copies only remote paths)
    scratch = Path(args.scratch_dir or os.environ.get("TMPDIR", "/tmp")) / f"mlengine-trial-{role.name}"
    if staging.is_remote(args.out):
        transform_dir = scratch / TRANSFORM_SUBDIR
    else:
        suffix = "" if role.task_type is None else f"-{role.name}"
        transform_dir = Path(args.out) / f"{TRANSFORM_SUBDIR}{suffix}"
    planned = TrainConfig(train_dir=args.train_dir, eval_dir=args.eval_dir, transform_dir=str(transform_dir),
                          model_dir=model_uri, hidden_units=args.hidden_units, learning_rate=args.learning_rate,
                          batch_size=args.batch_size, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                          seed=args.seed, model_module=args.model_module)
    stage = staging.Stage(planned, scratch_dir=str(scratch), task_name=role.name, is_chief=role.is_chief)
    local = stage.stage_in()
    if local.model_module:
        from mlengine.components.shared.model_module import load_module

        params.update(load_module(local.model_module).typed(module_text, "--hp"))
    elif module_text:
        raise MlengineError(f"--hp {sorted(module_text)[0]}: the trial has no --model-module")
    strategy = distributed.build_strategy(role)

    def report(epoch: int, value: float) -> None:  # per-epoch lines: Katib's medianstop reads them
        print(METRIC_LINE.format(metric=metric, value=value), flush=True)

    rmse = _run(params, train_dir=local.train_dir, eval_dir=local.eval_dir, spec=spec, epochs=args.epochs,
                transform_dir=transform_dir, model_dir=Path(local.model_dir), seed=args.seed,
                steps_per_epoch=args.steps_per_epoch, report=report, strategy=strategy, is_chief=role.is_chief,
                model_module=local.model_module)
    if not role.is_chief:
        return EXIT_OK
    stage.stage_out()
    if rmse is None or not math.isfinite(rmse):
        _log(f"trial: error: eval {metric} is {rmse} (training diverged)")
        return EXIT_DIVERGED
    print(METRIC_LINE.format(metric=metric, value=rmse), flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Run and exit hard: a ParameterServerStrategy coordinator keeps threads that block a normal exit."""
    exit_hard(run_program(lambda: run(argv), "trial"))


if __name__ == "__main__":
    main()
