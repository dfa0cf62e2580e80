"""``mlengine batch-predict``: a model directory and raw rows in, a folder of predictions out."""

from __future__ import annotations

import argparse
import json


def add_cli(subparsers) -> None:
    cmd = subparsers.add_parser(
        "batch-predict", help="predict a CSV/Parquet file, folder, glob or s3:// prefix with a trained model",
        description="Streams the input through the model's SavedModel in large batches and writes "
                    "predictions-*.parquet (input row number, kept columns, prediction), rejects.jsonl "
                    "(rows that fail validation, with reasons) and batch_prediction.json (the counts). "
                    "For a classification model, prediction is the class (the label vocabulary's type) and "
                    "probabilities a list<float32> column, one entry per class in the vocabulary's order.")
    cmd.add_argument("--model", required=True, help="model directory (the train step's output)")
    cmd.add_argument("--data", required=True, help="CSV or Parquet file, folder, glob or s3:// URI")
    cmd.add_argument("--out", required=True, help="output folder")
    cmd.add_argument("--keep", default="", help="comma-separated input columns to copy to the output, e.g. an id")
    cmd.add_argument("--batch-rows", type=int, default=None, help="rows per model call (default 65536)")
    cmd.add_argument("--threads", type=int, default=None,
                     help="cores to use (default: every core this process may run on)")
    cmd.add_argument("--prefetch", type=int, default=None, help="batches read and validated ahead (default 2)")
    cmd.add_argument("--csv", action="store_true",
                     help="also write predictions-00000.csv (a classifier's probabilities as one column "
                          "per class, probability_<class>, in the vocabulary's order)")
    cmd.set_defaults(handler=_batch_predict)


def _batch_predict(args: argparse.Namespace) -> int:
    from mlengine.components.batch_predict.executor import BATCH_ROWS, PREFETCH_BATCHES, run
    from mlengine.components.shared.datafiles import sniff_data_path
    from mlengine.components.shared.logs import setup_logging
    from mlengine.errors import MlengineError

    setup_logging()
    sniff_data_path(args.data)
    result = run(args.model, args.data, args.out, keep=args.keep, batch_rows=args.batch_rows or BATCH_ROWS,
                 csv_output=args.csv, threads=args.threads, prefetch=args.prefetch or PREFETCH_BATCHES)
    summary = result.as_dict()
    if not summary.get("rows_read"):
        raise MlengineError(f"{args.data}: no rows to predict")
    print(json.dumps({key: summary[key] for key in ("rows_read", "rows_predicted", "rows_rejected", "seconds",
                                                    "load_seconds", "predict_seconds", "rows_per_second",
                                                    "out_dir")}))
    return 0
