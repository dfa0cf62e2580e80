"""Batch prediction's reports as text: the summary JSON and the progress lines (pure functions)."""

from __future__ import annotations

import json


def summary_json(result: dict) -> str:
    """``batch_prediction.json``: every field of the result (counts, paths, timings)."""
    return json.dumps(result, indent=1)


def progress_line(counts: dict) -> str:
    """One progress line: rows read so far, predicted and rejected."""
    return (f"batch-predict: {counts['rows_read']:,} rows read, {counts['rows_predicted']:,} predicted, "
            f"{counts['rows_rejected']:,} rejected")


def done_line(result: dict) -> str:
    """The last line: the counts, where the rejects are, the time and rate without the model load."""
    return (f"batch-predict: {result['rows_read']:,} rows read = {result['rows_predicted']:,} predicted + "
            f"{result['rows_rejected']:,} rejected ({result['rejects']}) in {result['seconds']:.1f}s "
            f"(model load {result['load_seconds']:.1f}s, {result['rows_per_second']:,.0f} rows/s after it) "
            f"-> {result['out_dir']}")
