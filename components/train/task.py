"""The one training program of every topology: ``python -m mlengine.components.train.task``.

It reads its role from ``TF_CONFIG`` exactly as the Kubeflow Training Operator injects it into
a TFJob pod (and as components/train/local.py writes it for local processes):

- no TF_CONFIG / one task: train in this process;
- parameter_server: ps and worker tasks start a ``tf.distribute.Server`` and serve until they
  are terminated; the chief builds a ``ParameterServerStrategy`` and runs ``trainer.train``;
- all_reduce: every task trains under ``MultiWorkerMirroredStrategy``; the chief (worker 0
  without a chief) exports.

The configuration is a TrainConfig JSON file (``--config``, optionally with a ``strategy``
field), and/or one flag per TrainConfig field (``--train-dir``, ``--epochs``...; flags win).
Data and model locations may be ``s3://`` URIs (MinIO in a cluster): inputs are copied into a
scratch directory first and the chief uploads the model directory at the end.

On success the trainer's metrics go to stdout as ``name=value`` lines (what Katib's stdout
metrics collector reads). Exit codes: 0 success, 2 a problem the user must fix (bad config,
missing data: restarting cannot help), 3 the task's port is taken, 1 anything else (a crash
worth a restart), 128+N killed by signal N.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import math
import os
import signal
import sys
import types
from pathlib import Path
from typing import Any

from mlengine.components.shared.processes import EXIT_OK, PortInUseError, die_with_parent, exit_hard, run_program
from mlengine.components.shared.userfiles import read_json_object
from mlengine.errors import MlengineError

READY_MARKER = "mlengine-task: ready"  # the local supervisor waits for this line from every task
METRIC_KEYS = ("eval_rmse", "eval_log_loss", "eval_accuracy", "examples_per_second")
ENV_PARENT_PID = "MLENGINE_SUPERVISOR_PID"  # set by the local supervisor (local.py): die with it


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config_fields() -> list[dataclasses.Field]:
    from mlengine.components.train.trainer import TrainConfig

    return list(dataclasses.fields(TrainConfig))


def add_config_arguments(parser: argparse.ArgumentParser, *, required_paths: bool = False) -> None:
    """One ``--kebab-case`` flag per TrainConfig field (all optional: a --config file may supply them)."""
    for item in _config_fields():
        flag = "--" + item.name.replace("_", "-")
        if item.name == "hidden_units":
            parser.add_argument(flag, dest=item.name, help="comma-separated layer sizes, e.g. 64,32")
        elif _field_type(item) in (int, float):
            parser.add_argument(flag, dest=item.name, type=_field_type(item), help=f"TrainConfig.{item.name}")
        else:
            parser.add_argument(flag, dest=item.name, required=required_paths and item.name.endswith("_dir"),
                                help=f"TrainConfig.{item.name}")


def _field_type(item: dataclasses.Field) -> type:
    text = str(item.type)
    if text.startswith("int"):
        return int
    if text.startswith("float"):
        return float
    return str


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None):
    """A TrainConfig from a base dict (a --config file) overridden by the flags that were given."""
    from mlengine.components.train.trainer import TrainConfig

    raw = dict(base or {})
    for item in _config_fields():
        value = getattr(args, item.name, None)
        if value is not None:
            raw[item.name] = value
    missing = [f.name for f in _config_fields()
               if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise MlengineError(f"train config: missing {', '.join(missing)} (pass --config FILE or "
                            f"--{missing[0].replace('_', '-')})")
    return TrainConfig.from_json(json.dumps(raw))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlengine.components.train.task",
                                     description="Train one task of a (possibly distributed) training job.")
    parser.add_argument("--config", help="TrainConfig JSON file (may carry a 'strategy' field)")
    parser.add_argument("--strategy", choices=("auto", "parameter_server", "all_reduce", "none"),
                        help="distribution strategy; auto follows TF_CONFIG (default)")
    parser.add_argument("--result-file", help="the chief writes the trainer's result JSON here")
    parser.add_argument("--scratch-dir", default=None,
                        help="where s3:// inputs are copied and the model is built before upload")
    add_config_arguments(parser)
    return parser


def _load_base(path: str | None) -> tuple[dict[str, Any], str | None]:
    if not path:
        return {}, None
    raw = read_json_object(path, what="config")
    strategy = raw.pop("strategy", None)
    raw.pop("topology", None)  # informational: the cluster shape comes from TF_CONFIG
    return raw, strategy


def _serve(role) -> None:
    """A ps or worker task of parameter_server training: serve until terminated."""
    from mlengine.components.shared import distributed

    try:
        server = distributed.start_server(role)
    except Exception as err:
        if _port_in_use(err):
            raise PortInUseError(f"{role.name}: cannot listen on {role.address}: the port is in use") from None
        raise
    _stderr(f"{READY_MARKER} {role.name} serving at {role.address} (pid {os.getpid()})")
    server.join()


def _port_in_use(err: BaseException) -> bool:
    text = str(err).lower()
    return "address already in use" in text or "could not start grpc server" in text or "failed to bind" in text


def print_metrics(result: dict) -> None:
    """``name=value`` lines on stdout, for Katib's stdout metrics collector (and humans)."""
    lines = []
    # the objective first under its own name (rmse= or log_loss=): what a Katib objective reads
    objective = (result.get("eval_metric") or "rmse", result.get("eval_objective", result.get("eval_rmse")))
    for key, value in (objective, *((k, result.get(k)) for k in METRIC_KEYS)):
        if isinstance(value, int | float) and math.isfinite(value):
            lines.append(f"{key}={value:.6g}")
    if lines:
        print("\n".join(lines), flush=True)


def run(argv: list[str] | None = None) -> int:
    """Run one task; returns its exit code (see the module docstring)."""
    from mlengine.components.shared import distributed, staging

    args = build_parser().parse_args(argv)
    die_with_parent(os.environ.get(ENV_PARENT_PID))  # a killed local supervisor leaves no orphans
    if os.environ.get("TMPDIR"):  # a TFJob points it at the shared volume; tempfile skips a missing dir
        os.makedirs(os.environ["TMPDIR"], exist_ok=True)
    base, file_strategy = _load_base(args.config)
    strategy_name = args.strategy or file_strategy or "auto"
    role = distributed.role_from_env(strategy_name)
    if role.strategy == "parameter_server" and not role.trains:
        _serve(role)
        return EXIT_OK
    config = config_from_args(args, base)
    stage = staging.Stage(config, scratch_dir=args.scratch_dir, task_name=role.name, is_chief=role.is_chief)
    local_config = stage.stage_in()
    strategy = distributed.build_strategy(role)
    _stderr(f"{READY_MARKER} {role.name} training with strategy {role.strategy} (pid {os.getpid()})")
    from mlengine.components.shared.logs import log_to_stderr
    from mlengine.components.train import trainer

    log_to_stderr(trainer.__name__)  # progress on stderr, where the local launcher picks out `train:` lines
    result = trainer.train(local_config, strategy, is_chief=role.is_chief)
    if role.is_chief:
        stage.stage_out()
        result = {**result, "model_dir": config.model_dir, "strategy": role.strategy, "task": role.name}
        if args.result_file:
            Path(args.result_file).write_text(json.dumps(result, default=_jsonable), encoding="utf-8")
        print_metrics(result)
    return EXIT_OK


def _jsonable(value):
    if isinstance(value, types.SimpleNamespace):
        return vars(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def main(argv: list[str] | None = None) -> None:
    """Run and exit hard: a ParameterServerStrategy coordinator keeps threads that block a normal exit."""
    # SIGTERM keeps its default action on purpose: a Python handler would never run while a task is
    # blocked inside TensorFlow (server.join, a stuck RPC), and the task would ignore its supervisor
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints where a task hangs
    exit_hard(run_program(lambda: run(argv), "mlengine-task"))


if __name__ == "__main__":
    main()
