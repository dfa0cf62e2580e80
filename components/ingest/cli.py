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


def _spec(args: argparse.Namespace) -> int:
    from mlengine.components.ingest.draft_spec import write_draft
    from mlengine.components.shared.logs import setup_logging

    setup_logging()
    summary = write_draft(args.data, args.out, label=args.label, sample_rows=args.rows, force=args.force)
    print(json.dumps(summary))
    return 0
