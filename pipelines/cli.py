"""`mlengine compile`, `mlengine run` and `mlengine manifests` (handlers import lazily)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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

    comp = subparsers.add_parser("compile", help="write the pipeline YAMLs (cluster target: the ones to upload)")
    comp.add_argument("--out", required=True, help="folder for the YAML files")
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
                                                "trial 1 is always the default configuration)")
    run.add_argument("--tune-epochs", type=int, help=f"maximum epochs of each trial (default {DEFAULT_TUNE_EPOCHS})")
    run.add_argument("--split-seed", type=int, help="seed of the hash split into train/eval/test (default 0)")
    run.add_argument("--blessing-margin", type=float,
                     help=f"how much the model must beat the benchmark RMSE by (default {DEFAULT_BLESSING_MARGIN})")
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

    man = subparsers.add_parser("manifests", help="render (not apply) the TFJob, Katib Experiment and InferenceService "
                                                  "a cluster run creates")
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
    add_registry_flag(man)
    man.set_defaults(handler=_manifests)

    from mlengine.rehearsal.rehearse import add_cli as add_rehearse_cli

    add_rehearse_cli(subparsers)


def _run_params(args: argparse.Namespace) -> dict:
    fixed = explicit_values({name: getattr(args, name) for name in HyperParameters.names()})
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
        "ingest_workers": args.ingest_workers,
    }
    return {key: value for key, value in params.items() if value not in (None, "")}


def _compile(args: argparse.Namespace) -> int:
    from mlengine.kubeflow.cli import target_from_args
    from mlengine.pipelines.platform import compile_for

    print(json.dumps(compile_for(target_from_args(args), args.out), indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    import sys

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
    from mlengine.components.shared.runguard import owning_run

    with owning_run(args.out):  # one run per --out; every process this run starts ends when it does
        summary = run_training_locally(
            args.out, data=args.data, rows=args.rows, seed=args.seed, params=_run_params(args), resume=args.resume,
            runner=args.runner,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    print(format_summary_table(summary, Path(args.out).resolve() / SUMMARY_FILE))
    return 0


def _manifests(args: argparse.Namespace) -> int:
    from mlengine.constants import K8S_NAMESPACE, image_for
    from mlengine.kubeflow.manifests import render_cluster_manifests, write_manifests
    from mlengine.pipelines.platform import check_registry

    manifests = render_cluster_manifests(
        data_root=args.data_root, model_uri=args.model_uri, previous_model_uri=args.previous_model_uri,
        name=args.name, namespace=args.namespace or K8S_NAMESPACE, workers=args.workers, ps=args.ps,
        canary_traffic_percent=args.canary_traffic_percent, trials=args.trials,
        image=image_for("trainer", check_registry(args.image_registry) if args.image_registry else None),
        server_image=image_for("server", check_registry(args.image_registry) if args.image_registry else None),
    )
    print(json.dumps(write_manifests(args.out, manifests), indent=2))
    return 0
