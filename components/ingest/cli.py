"""``mlengine spec``: draft a feature spec from a sample of a CSV (nothing heavy imported here)."""

from __future__ import annotations

import argparse
import json

from mlengine.constants import SPEC_SAMPLE_ROWS


def add_cli(subparsers) -> None:
    spec = subparsers.add_parser(
        "spec", help="draft a feature spec (YAML) from a sample of your CSV, to edit before `mlengine run`",
        description="Read the first rows of a CSV (file, folder of shards, glob or s3://) and write a commented "
                    "feature spec: column types, ranges from the observed min/max with a margin, vocabularies "
                    "of low-cardinality strings, a label suggestion, bucketized and crossed features as "
                    "commented suggestions. Every key: docs/feature-spec.md.")
    spec.add_argument("--data", required=True, help="CSV file, folder of CSV shards, glob or s3:// URI")
    spec.add_argument("--label", default=None, help="the column to predict (default: suggested from the sample)")
    spec.add_argument("--out", required=True, help="the spec YAML to write")
    spec.add_argument("--rows", type=int, default=SPEC_SAMPLE_ROWS,
                      help="rows of the sample (default %(default)s)")
    spec.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    spec.set_defaults(handler=_spec)

    ingest = subparsers.add_parser(
        "ingest", help="the ingest step alone: validate, split 80/10/10, Parquet, rejects and statistics under --out",
        description="Stream the CSV data, reject bad rows (rejects/rejects.jsonl, with file, line and reason), "
                    "hash-split the rest into train/ eval/ test/ Parquet parts and write statistics/ under --out "
                    "(statistics.json, statistics.md, and statistics.html with a plot per column). "
                    "--runner beam runs the same logic as an Apache Beam pipeline (pip install 'kfp-mlengine[beam]').")
    ingest.add_argument("--data", required=True, help="CSV file, folder of CSV shards, glob or s3:// URI")
    ingest.add_argument("--out", required=True, help="folder for train/, eval/, test/, rejects/ and statistics/")
    ingest.add_argument("--spec", default=None, help="feature spec YAML (default: the built-in taxi spec)")
    ingest.add_argument("--split-seed", type=int, default=0, help="seed of the hash split (default %(default)s)")
    ingest.add_argument("--runner", default="local",
                        help="local (this machine's cores, default) or beam (an Apache Beam pipeline)")
    ingest.add_argument("--workers", type=int, default=0,
                        help="processes of the local runner (default: one per core this process may use, "
                             "e.g. under taskset); the output does not depend on it")
    ingest.add_argument("--beam-option", action="append", default=[], metavar="OPTION",
                        help="a Beam pipeline option, repeatable, e.g. --beam-option=--runner=FlinkRunner "
                             "(default: Beam's in-process runner)")
    ingest.set_defaults(handler=_ingest)

    flink = subparsers.add_parser(
        "flink-manifests", help="render (not apply) the FlinkDeployment and Beam job server that run "
                                "`--runner beam` on Flink in Kubernetes (Flink Kubernetes operator)")
    flink.add_argument("--out", required=True, help="folder for the YAML files")
    flink.add_argument("--name", default="mlengine-beam", help="FlinkDeployment name (default %(default)s)")
    flink.add_argument("--namespace", default=None, help="Kubernetes namespace (default: the Kubeflow user namespace)")
    flink.add_argument("--task-managers", type=int, default=2, help="TaskManager pods (default %(default)s)")
    flink.add_argument("--task-slots", type=int, default=2, help="slots per TaskManager (default %(default)s)")
    flink.add_argument("--shared-claim", default="mlengine-shared",
                       help="ReadWriteMany PVC with the data and outputs, mounted at /mnt/shared everywhere")
    flink.add_argument("--image-registry", default=None, help="registry of the pipeline image (the Beam workers)")
    flink.set_defaults(handler=_flink_manifests)


def _spec(args: argparse.Namespace) -> int:
    from mlengine.components.ingest.draft_spec import write_draft
    from mlengine.components.shared.datafiles import sniff_data_path
    from mlengine.components.shared.logs import setup_logging

    setup_logging()
    sniff_data_path(args.data)
    summary = write_draft(args.data, args.out, label=args.label, sample_rows=args.rows, force=args.force)
    print(json.dumps(summary))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.runner == "local":
        from mlengine.components.ingest.workerserver import start_early

        start_early(args.data, args.workers)  # the workers' fork server imports while this process does

    from mlengine.components.ingest.executor import run
    from mlengine.components.shared.beam_runner import check_runner
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.logs import setup_logging
    from mlengine.constants import REJECTS_FILE, SPLITS, STATISTICS_HTML_FILE, STATISTICS_VIEW_FILE

    setup_logging()
    check_runner(args.runner)
    spec = load_spec(args.spec)
    from mlengine.components.shared.datafiles import sniff_data_path

    sniff_data_path(args.data, spec.column_names, spec.delimiter)
    out = Path(args.out)
    result = run(args.data, spec, {split: str(out / split) for split in SPLITS}, str(out / "rejects" / REJECTS_FILE),
                 str(out / "statistics"), statistics_view_path=str(out / "statistics" / STATISTICS_VIEW_FILE),
                 html_path=str(out / "statistics" / STATISTICS_HTML_FILE),
                 runner=args.runner, beam_options=args.beam_option, split_seed=args.split_seed, workers=args.workers)
    print(json.dumps({key: value for key, value in result.to_dict().items() if key != "parts"}))
    return 0


def _flink_manifests(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from mlengine.components.shared.flink import beam_options_for_flink, render_flink_manifests
    from mlengine.constants import K8S_NAMESPACE, image_for

    namespace = args.namespace or K8S_NAMESPACE
    manifests = render_flink_manifests(name=args.name, namespace=namespace, task_managers=args.task_managers,
                                       task_slots=args.task_slots, shared_claim=args.shared_claim,
                                       image=image_for("pipeline", args.image_registry))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, manifest in manifests.items():
        (out / file_name).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        written.append(str(out / file_name))
    print(json.dumps({"written": written, "beam_options": beam_options_for_flink(args.name, namespace)}, indent=2))
    return 0
