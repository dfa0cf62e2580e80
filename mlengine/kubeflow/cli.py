"""`mlengine upload`, `submit`, `schedule` and `runs`: Kubeflow Pipelines operations (mlengine/kubeflow/client.py)."""

from __future__ import annotations

import argparse

from mlengine.constants import (
    DEFAULT_EXPERIMENT,
    ENV_IMAGE_REGISTRY,
    ENV_KFP_COOKIES,
    ENV_KFP_TOKEN,
    K8S_S3_SECRET,
    K8S_SERVICE_ACCOUNT,
)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kubeflow Pipelines API")
    group.add_argument("--host", help="the KFP API URL, e.g. http://localhost:8080 (default: $KF_PIPELINES_ENDPOINT)")
    group.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    group.add_argument("--existing-token", help=f"bearer token for the API (prefer ${ENV_KFP_TOKEN}: a flag shows "
                                                "in the process list); a token file: $KF_PIPELINES_SA_TOKEN_PATH")
    group.add_argument("--cookies", help=f"Cookie header for a Dex-protected endpoint, e.g. "
                                         f"'authservice_session=...' (prefer ${ENV_KFP_COOKIES})")


def add_target_flags(parser: argparse.ArgumentParser, *, target: bool) -> None:
    """The compile options shared by compile and upload (pipelines/platform.py)."""
    from mlengine.pipelines.platform import DEFAULT_SHARED_VOLUME_SIZE, TARGETS

    if target:
        parser.add_argument("--target", choices=TARGETS, default="cluster",
                            help="cluster: mode=cluster, MinIO Secret and shared PVC wired, for upload (default); "
                                 "local: what mlengine run executes under kfp.local")
    add_registry_flag(parser)
    parser.add_argument("--s3-secret", default=K8S_S3_SECRET,
                        help="cluster target: the Secret whose keys become every step's MinIO variables "
                             "(default %(default)s)")
    parser.add_argument("--shared-volume-size", default=DEFAULT_SHARED_VOLUME_SIZE,
                        help="cluster target: size of the ReadWriteMany PVC each run creates for parameter-server "
                             "training (default %(default)s)")
    parser.add_argument("--storage-class", help="cluster target: StorageClass of that PVC (default: the cluster's)")


def add_registry_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-registry",
                        help=f"registry of the mlengine images, e.g. registry.example.com/ml (default: "
                             f"${ENV_IMAGE_REGISTRY}, else the built-in one)")


def add_service_account_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service-account",
                        help="Kubernetes service account of the run's pods (default: KFP's, default-editor in a "
                             "Kubeflow profile); it needs what KFP's pipeline-runner has plus TFJobs, Katib "
                             f"Experiments, InferenceServices and PVCs (manifests/base's {K8S_SERVICE_ACCOUNT} "
                             "covers TFJobs only)")


def target_from_args(args: argparse.Namespace, name: str | None = None):
    from mlengine.pipelines.platform import Target

    return Target(name=name or args.target, image_registry=args.image_registry, s3_secret=args.s3_secret,
                  shared_volume_size=args.shared_volume_size, storage_class=args.storage_class)


def add_cli(subparsers) -> None:
    up = subparsers.add_parser("upload", help="compile (cluster target) and upload the training and monitoring "
                                              "pipelines; a changed spec becomes a new version")
    add_connection_flags(up)
    up.add_argument("--name", help="training pipeline name (default mlengine-training); the monitor is "
                                   "<name>-skew-monitor")
    up.add_argument("--version", help="version name (default: <package version>-<hash of the compiled YAML>)")
    up.add_argument("--out", default="out/pipelines", help="where the uploaded YAMLs are written (default %(default)s)")
    up.add_argument("--pipeline-file", metavar="YAML",
                    help="upload this compiled pipeline instead of the built-in two (your own DAG; named --name, "
                         "else the YAML's pipeline name)")
    add_target_flags(up, target=False)
    up.set_defaults(handler=_upload)

    sub = subparsers.add_parser("submit", help="start a run of the uploaded training pipeline")
    add_connection_flags(sub)
    sub.add_argument("--name", help="pipeline name given to upload (default mlengine-training)")
    sub.add_argument("--version", help="version name or id (default: the newest)")
    sub.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment, created if missing "
                                                                      "(default %(default)s)")
    sub.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a pipeline parameter, e.g. data_uri=s3://bucket/taxi/ or "
                          "hyperparameters='{\"nbuckets\": 8}'; repeat for more")
    sub.add_argument("--run-name", help="the run's display name (default: pipeline name and time)")
    add_service_account_flag(sub)
    sub.add_argument("--wait", action="store_true", help="follow the run to its end; exit code = its outcome")
    sub.add_argument("--poll-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    sub.add_argument("--timeout", type=float, help="with --wait: give up following after this many seconds")
    sub.set_defaults(handler=_submit)

    sch = subparsers.add_parser("schedule", help="create, list, disable or delete recurring runs")
    add_connection_flags(sch)
    what = sch.add_mutually_exclusive_group(required=True)
    what.add_argument("--cron", help='when: five fields as in crontab ("0 3 * * *" = 03:00 daily), or KFP\'s six '
                                     "(leading seconds); the cluster's time zone (UTC unless set)")
    what.add_argument("--list", action="store_true", help="list the recurring runs")
    what.add_argument("--disable", metavar="NAME", help="disable the recurring run NAME (or id)")
    what.add_argument("--delete", metavar="NAME", help="delete the recurring run NAME (or id)")
    sch.add_argument("--monitoring", action="store_true",
                     help="schedule the skew monitor with the statistics and serving-log URIs of the last "
                          "training run (--summary), instead of the training pipeline")
    sch.add_argument("--summary", default="out/run/summary.json",
                     help="with --monitoring: that run's summary.json (default %(default)s)")
    sch.add_argument("--name", help="pipeline name given to upload (default mlengine-training)")
    sch.add_argument("--version", help="version name or id (default: the newest)")
    sch.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment (default %(default)s)")
    sch.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    sch.add_argument("--run-name", help="the recurring run's name (default <pipeline>-schedule)")
    sch.add_argument("--max-concurrency", type=int, default=1, help="runs at once (default %(default)s)")
    add_service_account_flag(sch)
    sch.add_argument("--no-catchup", action="store_true",
                     help="after a pause, start only the latest missed run instead of every missed one")
    sch.set_defaults(handler=_schedule)

    runs = subparsers.add_parser("runs", help="recent runs: state, start, duration, metrics")
    add_connection_flags(runs)
    runs.add_argument("--experiment", help="only this experiment's runs")
    runs.add_argument("--limit", type=int, default=20, help="how many (default %(default)s)")
    runs.set_defaults(handler=_runs)


def _connection(args: argparse.Namespace):
    from mlengine.kubeflow.client import Connection

    return Connection.from_args(args.host, args.namespace, args.existing_token, args.cookies)


def _setup_logging() -> None:
    from mlengine.components.shared.logs import setup_logging

    setup_logging()


def _upload(args: argparse.Namespace) -> int:
    from mlengine.kubeflow.client import upload

    _setup_logging()
    conn = _connection(args)
    if args.pipeline_file:
        from mlengine.kubeflow.client import upload_file

        results = [upload_file(conn, args.pipeline_file, name=args.name, version=args.version)]
    else:
        results = upload(conn, target_from_args(args, "cluster"), args.out, name=args.name, version=args.version)
    for result in results:
        print(f"{result.kind}: pipeline {result.pipeline} id {result.pipeline_id}; version {result.version} "
              f"id {result.version_id} ({result.action}; {result.yaml})")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from mlengine.kubeflow.client import submit

    _setup_logging()
    return submit(_connection(args), name=args.name, version=args.version, experiment=args.experiment,
                  params=args.param, run_name=args.run_name, wait=args.wait, poll_interval=args.poll_interval,
                  timeout=args.timeout, service_account=args.service_account)


def _schedule(args: argparse.Namespace) -> int:
    from mlengine.kubeflow import schedules as kubeflow

    _setup_logging()
    if args.cron is not None:
        from mlengine.kubeflow.cron import to_kfp_cron

        to_kfp_cron(args.cron)  # a bad cron fails before the host is even looked at
    conn = _connection(args)
    if args.list:
        print(kubeflow.list_schedules(conn))
    elif args.disable:
        print(kubeflow.change_schedule(conn, args.disable, "disable"))
    elif args.delete:
        print(kubeflow.change_schedule(conn, args.delete, "delete"))
    else:
        kubeflow.schedule(conn, cron=args.cron, name=args.name, version=args.version, experiment=args.experiment,
                          params=args.param, run_name=args.run_name, max_concurrency=args.max_concurrency,
                          no_catchup=args.no_catchup, monitoring=args.monitoring, summary=args.summary,
                          service_account=args.service_account)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from mlengine.kubeflow.schedules import runs_table

    _setup_logging()
    print(runs_table(_connection(args), experiment=args.experiment, limit=args.limit))
    return 0
