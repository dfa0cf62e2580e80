"""``mlengine monitor``: compare a serving input log with the training statistics (skew report).

Nothing heavy is imported here: numpy and matplotlib load inside the handler.
"""

from __future__ import annotations

import argparse
import json

from mlengine.errors import MlengineError

EXIT_DRIFT = 1  # with --fail-on-drift, so a cron job or CI step can alert


def add_cli(subparsers) -> None:
    monitor = subparsers.add_parser(
        "monitor", help="training/serving skew: compare logged serving inputs with the ingest statistics",
        description="Read the serving input log (JSON Lines written by the predictor) and the ingest statistics, "
                    "compare per column (mean shift, variance ratio, PSI, Jensen-Shannon distance, out-of-range "
                    "share) and write drift.json, drift_report.md, drift_report.html and metrics.json to OUT. "
                    "For a classification model the predicted classes the log holds are compared with the "
                    "training label's class counts too (PSI, Jensen-Shannon distance). "
                    "Prints one JSON summary line.")
    monitor.add_argument("--statistics", required=True,
                         help="ingest statistics folder (statistics.json + feature_spec.yaml) or the JSON file")
    monitor.add_argument("--serving-log", required=True,
                         help="serving log folder (*.jsonl, *.jsonl.gz), a glob, or one JSON Lines file")
    monitor.add_argument("--out", required=True, help="folder for the drift reports")
    monitor.add_argument("--thresholds", default="",
                         help="overrides, e.g. 'psi=0.3,mean_shift=0.5,min_rows=500' or a JSON object; keys: "
                              "mean_shift, variance_ratio_high, variance_ratio_low, psi, js_distance, out_of_range, "
                              "min_rows, significance ('none' disables a flag)")
    monitor.add_argument("--spec", default=None,
                         help="feature spec YAML (default: feature_spec.yaml next to the statistics)")
    monitor.add_argument("--limit", type=int, default=None, help="use only the most recent N logged rows")
    monitor.add_argument("--no-html", action="store_true", help="skip the HTML report (no matplotlib)")
    monitor.add_argument("--fail-on-drift", action="store_true",
                         help=f"exit with code {EXIT_DRIFT} when drift is detected")
    monitor.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from mlengine.components.monitor.executor import parse_thresholds, run
    from mlengine.components.shared.logs import setup_logging

    if args.limit is not None and args.limit < 1:
        raise MlengineError(f"--limit {args.limit}: expected at least 1")
    from mlengine.components.shared.datafiles import sniff_jsonl_path

    sniff_jsonl_path(args.serving_log)
    thresholds = parse_thresholds(args.thresholds)
    setup_logging()
    result = run(args.statistics, args.serving_log, args.out, thresholds=thresholds, spec_path=args.spec,
                 limit=args.limit, html=not args.no_html)
    summary = {key: getattr(result, key) for key in ("status", "drift_detected", "columns_drifted", "max_psi",
                                                     "max_mean_shift", "serving_rows", "message",
                                                     "malformed_lines", "outputs")}
    print(json.dumps(summary))
    return EXIT_DRIFT if args.fail_on_drift and result.drift_detected else 0
