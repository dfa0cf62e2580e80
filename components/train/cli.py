"""``mlengine train``: train on this machine, in one process or as a local TF_CONFIG cluster.

Nothing heavy is imported here: TensorFlow loads inside the handler (or in the task processes).
"""

from __future__ import annotations

import argparse
import json

from mlengine.components.shared.hyperparameters import HyperParameters
from mlengine.constants import DEFAULT_EPOCHS

DEFAULTS = HyperParameters()


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train the wide-and-deep model (one process, or chief/ps/workers as local processes)",
        description="Train on Parquet splits and a transform artifact. With --ps or --workers > 1 the same "
                    "TF_CONFIG topology a TFJob would run starts as local processes on 127.0.0.1.")
    parser.add_argument("--train-dir", required=True, help="training split: a folder of part-*.parquet")
    parser.add_argument("--eval-dir", required=True, help="evaluation split: a folder of part-*.parquet")
    parser.add_argument("--transform-dir", required=True, help="the transform artifact (transform.json)")
    parser.add_argument("--model-dir", required=True, help="output: serving/, history.json, checkpoints/")
    topology = parser.add_argument_group("topology")
    topology.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    topology.add_argument("--ps", type=int, default=0, help="parameter servers (default %(default)s)")
    topology.add_argument("--chief", choices=("auto", "yes", "no"), default="auto",
                          help="a separate chief task (auto: yes under parameter_server)")
    topology.add_argument("--strategy", choices=("auto", "parameter_server", "all_reduce", "none"), default="auto",
                          help="auto: parameter_server when --ps > 0, all_reduce when --workers > 1")
    topology.add_argument("--max-restarts", type=int, default=2, help="restarts per crashed task (default 2)")
    topology.add_argument("--connect-timeout", type=float, default=120.0,
                          help="seconds a task may take to start and connect (default %(default)s)")
    topology.add_argument("--timeout", type=float, default=None, help="seconds the whole run may take")
    hparams = parser.add_argument_group("hyperparameters")
    hparams.add_argument("--hidden-units", default=DEFAULTS.hidden_units, help="e.g. 64,32 (default %(default)s)")
    hparams.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate, help="default %(default)s")
    hparams.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="default %(default)s")
    hparams.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="default %(default)s")
    hparams.add_argument("--steps-per-epoch", type=int, default=None,
                         help="batches per epoch (default: one pass over the training split)")
    hparams.add_argument("--seed", type=int, default=0)
    hparams.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                         help="class label only: 'balanced' weighs each class's rows by rows / (classes * rows of "
                              "the class) in the training loss (default %(default)s)")
    module = parser.add_argument_group("your own model")
    module.add_argument("--model-module", default="", metavar="FILE",
                        help="a Python file whose build_model(features, hp) is the network's body (checked on a tiny "
                             "batch before training); mlengine adds preprocessing, head, loss and export")
    module.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="a hyperparameter value: the module's own, or learning_rate/batch_size/hidden_units; "
                             "repeatable")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from mlengine.components.shared.distributed import Topology
    from mlengine.components.train.local import run_local_cluster
    from mlengine.components.train.trainer import TrainConfig

    builtin, module_values, module = _module_and_values(args)
    config = TrainConfig(train_dir=args.train_dir, eval_dir=args.eval_dir, transform_dir=args.transform_dir,
                         model_dir=args.model_dir, hidden_units=builtin.get("hidden_units", args.hidden_units),
                         learning_rate=builtin.get("learning_rate", args.learning_rate),
                         batch_size=builtin.get("batch_size", args.batch_size), epochs=args.epochs,
                         steps_per_epoch=args.steps_per_epoch, seed=args.seed, model_module=module,
                         model_hp=module_values, class_weight=args.class_weight)
    topology = Topology(workers=args.workers, ps=args.ps, chief={"auto": None, "yes": True, "no": False}[args.chief],
                        strategy=args.strategy)
    result = run_local_cluster(config, topology, max_restarts=args.max_restarts,
                               connect_timeout=args.connect_timeout, timeout=args.timeout)
    keys = ("eval_metric", "eval_objective", "eval_rmse", "eval_log_loss", "eval_accuracy", "examples_per_second",
            "model_dir", "restarts")
    summary = {key: result.get(key) for key in keys if key in result}
    summary["topology"] = topology.to_dict()
    print(json.dumps(summary))
    return 0


def _module_and_values(args: argparse.Namespace) -> tuple[dict, dict, str]:
    """``(built-in values from --hp, the module's values, the module path)``; the module is checked first."""
    from mlengine.components.shared.model_module import (
        BUILTIN_NAMES,
        ModelModuleError,
        builtin_from_text,
        parse_assignments,
        split_values,
    )

    given = parse_assignments(args.hp)
    if "nbuckets" in given:
        raise ModelModuleError("--hp nbuckets: the buckets are the transform's (--transform-dir); analyze again to "
                               "change them")
    builtin = {k: builtin_from_text(k, v) for k, v in given.items() if k in BUILTIN_NAMES}
    module_raw = {k: v for k, v in given.items() if k not in BUILTIN_NAMES}
    if not args.model_module:
        split_values(module_raw, None, "--hp")  # a module's name without a module: one line
        return builtin, {}, ""
    from mlengine.components.shared.transform_state import TransformState
    from mlengine.components.train.model_module import check_model_module

    state = TransformState.load(args.transform_dir)
    loaded = check_model_module(args.model_module, state=state, values=module_raw, builtin=builtin)
    return builtin, loaded.typed(module_raw, "--hp"), args.model_module
