"""`mlengine compile`, `mlengine run` and `mlengine manifests` (handlers import lazily)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlengine.components.shared.featurespec import TASKS
from mlengine.components.shared.hyperparameters import HyperParameters, add_hyperparameter_flags, explicit_values
from mlengine.constants import (
    DEFAULT_BASELINE_TOLERANCE,
    DEFAULT_BLESSING_MARGIN,
    DEFAULT_EPOCHS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    DEFAULT_TUNE_EPOCHS,
    RUNNERS,
)


def add_cli(subparsers) -> None:
    from mlengine.kubeflow.cli import add_registry_flag, add_target_flags

    comp = subparsers.add_parser("compile", help="write the pipeline YAMLs (cluster target: the ones to upload), "
                                                 "or each component's YAML (--components)")
    comp.add_argument("--out", help="folder for the pipeline YAML files")
    comp.add_argument("--components", metavar="DIR",
                      help="folder for one component YAML per component of mlengine.components, pinned to the "
                           "versioned pipeline image (kfp.components.load_component_from_file loads each)")
    comp.add_argument("--component-docs", action="store_true",
                      help="rewrite each components/<name>/README.md's generated block from the component's "
                           "docstring and signature (in a source checkout)")
    add_target_flags(comp, target=True)
    comp.set_defaults(handler=_compile)

    run = subparsers.add_parser("run", help="run the training pipeline on this machine under kfp.local")
    run.add_argument("--data", help="CSV file, folder of CSV shards, glob or s3:// URI (default: generated taxi data)")
    run.add_argument("--spec", default="", help="feature spec YAML (default: the built-in taxi spec)")
    run.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to generate when --data is not given")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the generated data")
    run.add_argument("--out", default="out/run", help="output folder (summary.json, pipeline YAML, artifacts)")
    add_hyperparameter_flags(run.add_argument_group(
        "hyperparameters", "a value given here is fixed: tuning searches only the others"))
    run.add_argument("--epochs", type=int, help=f"maximum training epochs of the final model (default "
                                                f"{DEFAULT_EPOCHS}; early stopping keeps the best epoch)")
    run.add_argument("--trials", type=int, help="tuning trials before the final training (0: no tuning; "
                                                "trial 0 is always the default configuration)")
    run.add_argument("--tune-epochs", type=int, help=f"maximum epochs of each trial (default {DEFAULT_TUNE_EPOCHS})")
    run.add_argument("--split-seed", type=int, help="seed of the hash split into train/eval/test (default 0)")
    run.add_argument("--blessing-margin", type=float,
                     help=f"how much the model must beat the benchmark by: RMSE, or log loss for a classifier "
                          f"(default {DEFAULT_BLESSING_MARGIN})")
    run.add_argument("--baseline-tolerance", type=float,
                     help="how much worse than the served model a new model may be "
                          f"(default {DEFAULT_BASELINE_TOLERANCE})")
    run.add_argument("--baseline-model", help="model directory to compare with (default: the model the last run "
                                              "in the same --out deployed)")
    run.add_argument("--model-name", help="served model name (default: from the feature spec's name)")
    run.add_argument("--canary-traffic-percent", type=int, help="traffic share of a new version while it is a canary")
    run.add_argument("--parallel-trials", type=int, help="trials run at once")
    run.add_argument("--tune-algorithm", help="tpe, random or grid")
    run.add_argument("--workers", type=int, help="training workers (local processes / TFJob replicas)")
    run.add_argument("--ps", type=int, help="parameter servers")
    run.add_argument("--ingest-workers", type=int,
                     help="ingest's worker processes (default 0: one per core the step may use; --workers are "
                          "the training workers); the ingested data does not depend on it")
    run.add_argument("--strategy", choices=["auto", "parameter_server", "all_reduce", "none"])
    run.add_argument("--task", choices=TASKS,
                     help="the task this run expects; the spec's label must say the same (default: the label's)")
    run.add_argument("--model-module", metavar="FILE",
                     help="your own model: a Python file whose build_model(features, hp) is the network's body "
                          "(checked on a tiny batch before anything runs); its HYPERPARAMETERS are tuned with the "
                          "built-in ones. See docs/own-model.md")
    run.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                     help="fix any hyperparameter, the model module's or a built-in one, in every trial and the "
                          "final model; repeatable")
    run.add_argument("--resume", action="store_true",
                     help="reuse the finished steps (ingest, tuning, training) of any earlier run in the same --out "
                          "with the same inputs; the console names the reused steps")
    run.add_argument("--keep-serving", action="store_true",
                     help="leave the local KServe server running after the run (default: checked, then stopped)")
    run.add_argument("--runner", choices=RUNNERS, default=RUNNERS[0],
                     help="subprocess: every step in this Python (default); docker: the compiled YAML, every step "
                          "in the image it names, as Kubeflow runs its pods (build them first: make images)")
    run.add_argument("--data-runner", default="local", metavar="{local,beam}",
                     help="engine of ingest and the analyze pass: local (the step's process, default) or beam "
                          "(an Apache Beam pipeline; pip install 'kfp-mlengine[beam]'). --runner picks the "
                          "orchestration runner (subprocess/docker), this one the data engine")
    run.add_argument("--beam-option", action="append", default=[], metavar="OPTION",
                     help="with --data-runner beam, a Beam pipeline option, repeatable, e.g. "
                          "--beam-option=--direct_num_workers=2 (default: Beam's in-process runner)")
    run.set_defaults(handler=_run)

    man = subparsers.add_parser("manifests", help="render (not apply) what a cluster run creates: TrainJob and its "
                                                  "runtimes, TFJob, both Katib Experiments, InferenceServices")
    man.add_argument("--out", required=True, help="folder for the YAML files")
    man.add_argument("--data-root", default="s3://mlpipeline/mlengine/run", help="where the run's splits live")
    man.add_argument("--model-uri", default="s3://mlpipeline/mlengine/models/v2", help="the new model version")
    man.add_argument("--previous-model-uri", default="s3://mlpipeline/mlengine/models/v1",
                     help="the version serving now (the canary's stable side)")
    man.add_argument("--name", default="taxi-fare", help="InferenceService / job name prefix")
    man.add_argument("--namespace", help="Kubernetes namespace (default: the Kubeflow user namespace)")
    man.add_argument("--workers", type=int, default=2)
    man.add_argument("--ps", type=int, default=1)
    man.add_argument("--canary-traffic-percent", type=int, default=10)
    man.add_argument("--trials", type=int, default=12)
    man.add_argument("--deployment-mode", choices=["Knative", "Standard"], default="Knative",
                     help="KServe mode of the InferenceServices: Knative (scale to zero, canaryTrafficPercent) or "
                          "Standard (HPA, the canary in spec.canary[])")
    add_registry_flag(man)
    man.set_defaults(handler=_manifests)

    from mlengine.rehearsal.rehearse import add_cli as add_rehearse_cli

    add_rehearse_cli(subparsers)


def _fixed_values(args: argparse.Namespace, module=None) -> dict:
    """The hyperparameters fixed for the run: the built-in flags and every --hp NAME=VALUE (typed by the
    model module's declaration when ``module``, a loaded module, is given)."""
    from mlengine.components.shared.model_module import BUILTIN_NAMES, builtin_from_text, parse_assignments
    from mlengine.errors import MlengineError

    fixed = explicit_values({name: getattr(args, name) for name in HyperParameters.names()})
    for name, value in parse_assignments(getattr(args, "hp", None)).items():
        if name in BUILTIN_NAMES:
            typed = builtin_from_text(name, value)
        else:
            typed = module.typed({name: value}, "--hp")[name] if module is not None else value
        if name in fixed and fixed[name] != typed:
            raise MlengineError(f"--hp {name}={value} and --{name.replace('_', '-')} {fixed[name]} disagree")
        fixed[name] = typed
    explicit_values({k: v for k, v in fixed.items() if k in BUILTIN_NAMES})
    return fixed


def _run_params(args: argparse.Namespace, module=None) -> dict:
    fixed = _fixed_values(args, module)
    params = {
        "spec_uri": args.spec,
        "hyperparameters": fixed or None,
        "epochs": args.epochs,
        "trials": args.trials,
        "parallel_trials": args.parallel_trials,
        "tune_algorithm": args.tune_algorithm,
        "tune_epochs": args.tune_epochs,
        "split_seed": args.split_seed,
        "blessing_margin": args.blessing_margin,
        "baseline_tolerance": args.baseline_tolerance,
        "baseline_model_uri": args.baseline_model,
        "model_name": args.model_name,
        "canary_traffic_percent": args.canary_traffic_percent,
        "workers": args.workers,
        "ps": args.ps,
        "strategy": args.strategy,
        "keep_serving": True if args.keep_serving else None,
        "runner": None if args.data_runner == "local" else args.data_runner,
        "beam_options": " ".join(args.beam_option),
        "model_module": args.model_module,
        "ingest_workers": args.ingest_workers,
        "task": args.task,
    }
    return {key: value for key, value in params.items() if value not in (None, "")}


def _compile(args: argparse.Namespace) -> int:
    from mlengine.errors import MlengineError
    from mlengine.kubeflow.cli import target_from_args
    from mlengine.pipelines import component_files
    from mlengine.pipelines.platform import compile_for

    if not (args.out or args.components or args.component_docs):
        raise MlengineError("give --out DIR (the pipelines), --components DIR or --component-docs")
    target = target_from_args(args)
    written = {}
    if args.out:
        written.update(compile_for(target, args.out))
    if args.components:
        written.update(component_files.compile_components(args.components, target.registry))
    if args.component_docs:
        written.update({f"{name} README": path for name, path in component_files.write_readmes().items()})
    print(json.dumps(written, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:

    from mlengine.components.shared.beam_runner import RUNNER_BEAM, check_runner
    from mlengine.errors import MlengineError
    from mlengine.pipelines.local_run import SUMMARY_FILE, format_summary_table, run_training_locally

    # run_training_locally checks that Beam is installed, before anything is written
    if check_runner(args.data_runner) != RUNNER_BEAM and args.beam_option:
        raise MlengineError("--beam-option needs --data-runner beam")
    if args.ingest_workers is not None and args.ingest_workers < 0:
        raise MlengineError(f"--ingest-workers {args.ingest_workers}: must be 0 (one per core) or more")
    if args.data is None and args.rows < 100:
        raise MlengineError(f"--rows {args.rows}: need at least 100 rows to split into train/eval/test")
    if (args.spec and "://" not in args.spec) or args.data:
        from mlengine.components.shared.datafiles import sniff_data_path
        from mlengine.components.shared.featurespec import load_spec

        # a bad spec or data file is one line here, not a traceback from a failed pipeline step
        spec = load_spec(args.spec if args.spec and "://" not in args.spec else None)
        if args.data:
            sniff_data_path(args.data, spec.column_names, spec.delimiter)
    module = _checked_module(args)
    params = _run_params(args, module)
    from mlengine.components.shared.runguard import owning_run

    with owning_run(args.out):  # one run per --out; every process this run starts ends when it does
        summary = run_training_locally(
            args.out, data=args.data, rows=args.rows, seed=args.seed, params=params, resume=args.resume,
            runner=args.runner,
        )
    print(format_summary_table(summary, Path(args.out).resolve() / SUMMARY_FILE))
    return 0


def _checked_module(args: argparse.Namespace):
    """The model module, imported and built on a tiny batch with the default (and fixed) hyperparameters
    before anything runs; None without --model-module. Every problem is one line naming the file."""
    from mlengine.components.shared.model_module import (
        BUILTIN_NAMES,
        load_module,
        parse_assignments,
        split_values,
    )

    if not args.model_module:
        split_values(parse_assignments(args.hp), None, "--hp")  # a module's hyperparameter needs the module
        return None
    if "://" in args.model_module:  # read by the tune step; checked there, before any trial
        return None
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.train.model_module import check_model_module

    fixed = _fixed_values(args, load_module(args.model_module))
    spec = load_spec(args.spec if args.spec and "://" not in args.spec else None)
    return check_model_module(args.model_module, spec=spec,
                              values={k: v for k, v in fixed.items() if k not in BUILTIN_NAMES},
                              builtin={k: v for k, v in fixed.items() if k in BUILTIN_NAMES})


def _manifests(args: argparse.Namespace) -> int:
    from mlengine.constants import K8S_NAMESPACE, image_for
    from mlengine.kubeflow.manifests import render_cluster_manifests, write_manifests
    from mlengine.pipelines.platform import check_registry

    manifests = render_cluster_manifests(
        data_root=args.data_root, model_uri=args.model_uri, previous_model_uri=args.previous_model_uri,
        name=args.name, namespace=args.namespace or K8S_NAMESPACE, workers=args.workers, ps=args.ps,
        canary_traffic_percent=args.canary_traffic_percent, trials=args.trials, deployment_mode=args.deployment_mode,
        image=image_for("trainer", check_registry(args.image_registry) if args.image_registry else None),
        server_image=image_for("server", check_registry(args.image_registry) if args.image_registry else None),
    )
    print(json.dumps(write_manifests(args.out, manifests), indent=2))
    return 0
