"""``mlengine tune``: run (or resume) a local tuning study, or write the Katib Experiment for a cluster.

Nothing heavy is imported here: the handler imports optuna and TensorFlow (through the trials)
only when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlengine.components.shared.hyperparameters import HyperParameters, add_hyperparameter_flags, explicit_values


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune", help="tune hyperparameters (nbuckets included) with local trials, or write a Katib Experiment",
        description="Search nbuckets, hidden layers, learning rate and batch size. Each trial re-runs the transform "
                    "with its nbuckets and trains; trials run as local processes. Re-running with the same --out "
                    "resumes the study (finished trials are not run again).")
    parser.add_argument("--train-dir", required=True, help="training split (directory of Parquet parts)")
    parser.add_argument("--eval-dir", required=True, help="eval split (directory of Parquet parts)")
    parser.add_argument("--spec-dir", default="",
                        help="feature spec YAML or a statistics directory holding feature_spec.yaml "
                             "(default: the built-in taxi spec)")
    parser.add_argument("--space", default="", help="search space YAML (default: the built-in one)")
    parser.add_argument("--out", required=True, help="study directory: study.db, trials.json, reports, trial logs")
    parser.add_argument("--trials", type=int, default=None, help="number of trials (default: the space's max_trials)")
    parser.add_argument("--parallel", type=int, default=None, help="trials at a time (default: the space's)")
    parser.add_argument("--algorithm", default=None,
                        help="random, grid, tpe, multivariate-tpe or bayesianoptimization (default: the space's)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per trial (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the transform sample and the training")
    add_hyperparameter_flags(parser.add_argument_group(
        "fixed hyperparameters", "a value given here is not searched: every trial uses it"))
    parser.add_argument("--model-module", default="", metavar="FILE",
                        help="a Python file whose build_model(features, hp) is the network's body; its "
                             "HYPERPARAMETERS join the search space (checked on a tiny batch before any trial)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="fix a hyperparameter (the module's own or a built-in one) in every trial; repeatable")
    parser.add_argument("--katib-manifest", metavar="FILE", default=None,
                        help="do not run: write the Katib Experiment YAML of this search to FILE "
                             "(--train-dir/--eval-dir/--spec-dir/--out are then URIs the trial pods can read)")
    parser.add_argument("--experiment-name", default=None, help="Katib Experiment name (with --katib-manifest)")
    parser.add_argument("--namespace", default=None, help="Kubernetes namespace (with --katib-manifest)")
    parser.add_argument("--trial-kind", choices=["TFJob", "TrainJob"], default="TFJob",
                        help="with --katib-manifest: the trials' kind, a TFJob (Training Operator v1) or a TrainJob "
                             "(Kubeflow Trainer v2, the project's TrainingRuntime); default %(default)s")
    parser.set_defaults(handler=_tune)


def _tune(args: argparse.Namespace) -> int:
    from mlengine.components.tune.space_loader import load_search_space
    from mlengine.errors import MlengineError

    fixed = _fixed(args)
    space = load_search_space(args.space or None)
    if args.katib_manifest:
        if args.model_module:
            raise MlengineError("--katib-manifest with --model-module: run the pipeline's tune step on the cluster "
                                "(it stages the module for the trials)")
        from mlengine.components.shared.model_module import split_values

        split_values(fixed, None, "--hp")  # a module's hyperparameter without the module: one line
        if fixed:
            space = space.without(fixed)
        if args.trials is not None or args.parallel is not None or args.algorithm is not None:
            trials = args.trials if args.trials is not None else space.max_trials
            if trials < 1:
                raise MlengineError(f"--trials must be at least 1, got {trials}")
            parallel = args.parallel if args.parallel is not None else min(space.parallel_trials, trials)
            space = space.with_overrides(max_trials=trials, parallel_trials=parallel, algorithm=args.algorithm)
        return _write_manifest(args, space, fixed)

    from mlengine.components.tune.executor import run

    trials = args.trials if args.trials is not None else space.max_trials
    if trials < 1:
        raise MlengineError(f"--trials must be at least 1, got {trials}")
    parallel = args.parallel if args.parallel is not None else min(space.parallel_trials, trials)
    out = Path(args.out)
    result = run(args.train_dir, args.eval_dir, args.spec_dir or "", str(out), fixed=fixed, trials=trials,
                 parallel=parallel, algorithm=args.algorithm, epochs=args.epochs, space_path=args.space or None,
                 model_module=args.model_module, seed=args.seed,
                 hyperparameters_path=str(out / "hyperparameters.json"), markdown_path=str(out / "tuning.md"),
                 html_path=str(out / "tuning.html"))
    study = result.study
    print(json.dumps({"best_params": study.get("best_params"), "best_rmse": study.get("best_rmse"),
                      "trials": len(study.get("trials") or []), "out": str(out.resolve())}))
    return 0


def _fixed(args: argparse.Namespace) -> dict:
    """The hyperparameters fixed for every trial: the built-in flags and every --hp NAME=VALUE."""
    from mlengine.components.shared.model_module import BUILTIN_NAMES, builtin_from_text, parse_assignments
    from mlengine.errors import MlengineError

    fixed = explicit_values({name: getattr(args, name) for name in HyperParameters.names()})
    for name, value in parse_assignments(args.hp).items():
        typed = builtin_from_text(name, value) if name in BUILTIN_NAMES else value
        if name in fixed and fixed[name] != typed:
            raise MlengineError(f"--hp {name}={value} and --{name.replace('_', '-')} {fixed[name]} disagree")
        fixed[name] = typed
    return fixed


def _write_manifest(args: argparse.Namespace, space, fixed: dict) -> int:
    import yaml

    from mlengine.components.tune import cluster as katib
    from mlengine.constants import K8S_NAMESPACE
    from mlengine.errors import MlengineError

    name = args.experiment_name or katib.experiment_name_for(args.out)
    manifest = katib.render_experiment(name, space, namespace=args.namespace or K8S_NAMESPACE,
                                       train_uri=args.train_dir, eval_uri=args.eval_dir, spec_uri=args.spec_dir,
                                       output_uri=args.out, epochs=args.epochs, seed=args.seed,
                                       fixed_params=fixed, trial_kind=args.trial_kind)
    problems = katib.webhook_problems(manifest)
    if problems:
        raise MlengineError(f"Experiment {name} would be rejected by Katib: {problems[0]}")
    path = Path(args.katib_manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    print(json.dumps({"experiment": name, "manifest": str(path.resolve())}))
    return 0
