"""Training/serving skew: compare serving inputs with the ingest statistics of the training data.

Per raw column of the spec (the label is not served):

- numeric columns: serving count, mean, std; **mean shift** ``|mean_s - mean_t| / std_t`` (in
  training standard deviations); **variance ratio** ``(std_s / std_t) ** 2``; **PSI** (population
  stability index) over the training histogram's bins (adjacent bins holding under
  ``MIN_BIN_FRACTION`` of the training rows are merged, plus one bin below and one above the
  training edges, holding the training histogram's underflow / overflow rows); **Jensen-Shannon
  distance** (base 2, in [0, 1]) over the same bins; the **out-of-range fraction** (serving
  values outside the training [min, max], the extremes themselves inside);
- categorical columns (string columns and the spec's ``features.categorical``): PSI and JS
  distance over the category frequencies (the training top values plus an "other" bucket);
  string columns whose training values are all known report the share of unseen values as
  their out-of-range fraction.

Everything is compared in one precision: the dtype the model's signature takes (float32 for
float columns, which is also what the serving log holds), with the training numbers (min, max,
bin edges) rounded to it, so a serving value equal to a training extreme is not "outside".

A column is flagged when a difference is *large* (above its threshold) *and* larger than the
sampling noise of ``n`` serving rows, so a few hundred rows do not raise false alarms.
``significance`` is family-wise: it is split evenly over every check of every column
(Bonferroni), so a sample without drift raises any flag with about that probability.

- mean shift: limit ``max(threshold, z * se)``;
- variance ratio: ``|ln ratio|`` against ``max(|ln threshold|, z * se)``, se from the serving kurtosis;
- PSI: ``n_eff * PSI`` is about chi-square with ``bins - 1`` degrees of freedom without drift, so
  the observed PSI carries a bias of ``(bins - 1) / n_eff``; the limit is
  ``max(threshold + bias, chi2_{1-a}(bins - 1) / n_eff)``;
- out of range: more outside values than a Poisson count with the no-drift rate
  ``2 / (n_train + 1)`` allows, and a share above the threshold.

Fewer than ``min_rows`` serving rows give the status ``not_enough_data``, never a drift alarm.

For a classification model, the classes it predicted (the serving log's ``prediction.label``)
are compared with the training label's class counts (:func:`training_class_counts`) by PSI and
Jensen-Shannon distance over the class shares, with the limits of a categorical column; a flag
there is drift too (``predictions`` in drift.json, a bar chart in the HTML report).

The statistics themselves (quantiles, PSI, JS distance, bins, one column's comparison) are in
``drift.py``; this module loads the inputs, applies them to every column and writes the reports.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.monitor.drift import (
    CHECKS_PER_COLUMN,
    STATUS_DRIFT,
    STATUS_NO_DATA,
    STATUS_NOT_ENOUGH_DATA,
    STATUS_OK,
    compare_classes,
    compare_column,
    json_safe,
)
from mlengine.components.shared.featurespec import FeatureSpec, load_spec
from mlengine.components.shared.userfiles import parse_json_object, read_json_object
from mlengine.constants import SPEC_FILE, STATISTICS_FILE
from mlengine.errors import DataError, MlengineError

DEFAULT_THRESHOLDS: dict[str, float | None] = {
    "mean_shift": 0.25,  # |mean_s - mean_t| in training std units
    "variance_ratio_high": 1.5,  # (std_s / std_t)^2 above this ...
    "variance_ratio_low": 0.67,  # ... or below this
    "psi": 0.2,  # the industry rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 shifted
    "js_distance": None,  # reported always; flags only when set (e.g. 0.15)
    "out_of_range": 0.01,  # share of serving values outside the training range / vocabulary
    "min_rows": 100,  # fewer serving rows: "not_enough_data"
    "significance": 0.001,  # family-wise chance that a no-drift sample raises a flag (sampling noise)
}
PREFERRED_SCOPE = "train"  # the statistics of the rows the model learnt from
DRIFT_FILE = "drift.json"
REPORT_MARKDOWN_FILE = "drift_report.md"
REPORT_HTML_FILE = "drift_report.html"
METRICS_FILE = "metrics.json"

__all__ = ["STATUS_DRIFT", "STATUS_NOT_ENOUGH_DATA", "STATUS_NO_DATA", "STATUS_OK", "MonitorResult",
           "compare", "load_statistics", "metrics_summary", "parse_thresholds", "run"]

log = logging.getLogger(__name__)


# --- thresholds ------------------------------------------------------------------------------------
def parse_thresholds(value: str | Mapping[str, Any] | None) -> dict[str, float | None]:
    """Defaults updated by ``"psi=0.3,mean_shift=0.5"``, a JSON object text, or a mapping.

    Unknown keys and non-positive numbers raise MlengineError naming the key; ``none`` disables
    a flag threshold.
    """
    thresholds = dict(DEFAULT_THRESHOLDS)
    if value is None or (isinstance(value, str) and not value.strip()):
        return thresholds
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            items = parse_json_object(text, "--thresholds")
        else:
            items = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, raw = part.partition("=")
                if not sep:
                    raise MlengineError(f"--thresholds: {part!r} is not KEY=VALUE")
                items[key.strip()] = raw.strip()
    else:
        items = dict(value)
    for key, raw in items.items():
        if key not in DEFAULT_THRESHOLDS:
            raise MlengineError(f"--thresholds: unknown key {key!r}; allowed: {', '.join(DEFAULT_THRESHOLDS)}")
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "off")):
            if key in ("min_rows", "significance"):
                raise MlengineError(f"--thresholds: {key} cannot be disabled")
            thresholds[key] = None
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise MlengineError(f"--thresholds: {key}={raw!r} is not a number") from None
        if not math.isfinite(number) or number <= 0 or (key == "significance" and number >= 1):
            raise MlengineError(f"--thresholds: {key}={raw!r} must be a positive number"
                                + (" below 1" if key == "significance" else ""))
        thresholds[key] = int(number) if key == "min_rows" else number
    low, high = thresholds["variance_ratio_low"], thresholds["variance_ratio_high"]
    if low is not None and high is not None and low >= high:
        raise MlengineError(f"--thresholds: variance_ratio_low {low} must be below variance_ratio_high {high}")
    return thresholds


# --- loading the training statistics ----------------------------------------------------------------
def load_statistics(path: str | Path) -> tuple[dict[str, Any], Path]:
    """statistics.json from a statistics artifact folder or the file itself; returns (doc, file)."""
    given = Path(path)
    stats_file = given / STATISTICS_FILE if given.is_dir() else given
    if not stats_file.is_file():
        raise DataError(f"{stats_file}: statistics not found (expected the ingest statistics folder "
                        f"with {STATISTICS_FILE}, or the file itself)")
    doc = read_json_object(stats_file, DataError, "statistics")
    if not any(isinstance(doc.get(s), dict) for s in (PREFERRED_SCOPE, "all")):
        raise DataError(f"{stats_file}: not an ingest statistics file (no 'train' or 'all' section)")
    return doc, stats_file


def load_statistics_spec(stats_file: Path, spec_path: str | Path | None = None) -> FeatureSpec:
    """The spec saved next to the statistics (or ``spec_path`` when given)."""
    if spec_path:
        return load_spec(spec_path)
    sibling = stats_file.parent / SPEC_FILE
    if not sibling.is_file():
        raise DataError(f"{sibling}: feature spec not found next to the statistics; pass --spec")
    return load_spec(sibling)


def _training_scope(train_stats: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """(scope name, scope) from a whole statistics.json or from one scope."""
    if isinstance(train_stats.get("columns"), Mapping):
        return "given", train_stats
    for name in (PREFERRED_SCOPE, "all"):
        scope = train_stats.get(name)
        if isinstance(scope, Mapping) and isinstance(scope.get("columns"), Mapping) and scope.get("rows", 0) > 0:
            return name, scope
    raise DataError("training statistics have no rows (no non-empty 'train' or 'all' section)")


def _counts(value: Any) -> dict[Any, int] | None:
    """``{class: count}`` from a mapping or a ``[{"value", "count"}, ...]`` list, else None."""
    if isinstance(value, Mapping) and value and all(isinstance(c, int | float) for c in value.values()):
        return {key: int(count) for key, count in value.items()}
    if isinstance(value, list) and value and all(isinstance(i, Mapping) and "value" in i and "count" in i
                                                 for i in value):
        return {item["value"]: int(item["count"]) for item in value}
    return None


def training_class_counts(train_stats: Mapping[str, Any], spec: FeatureSpec) -> dict[Any, int] | None:
    """The label's class counts in the training statistics, or None where they are not there.

    Read, first found: ``class_counts`` of the top-level ``label`` entry (when it is an object),
    of the scope's ``label`` entry, or of the label column's entry; else the label column's
    ``top_values`` (complete for a vocabulary of at most 20 classes); else, for an int label, its
    histogram when every bin holds one integer and no row fell outside it (the statistics'
    sample: the shares are right, the count is the sample's).
    """
    try:
        _, scope = _training_scope(train_stats)
    except DataError:
        scope = {}
    column = (scope.get("columns") or {}).get(spec.label.name) or {}
    for holder in (train_stats.get("label"), scope.get("label"), column):
        if isinstance(holder, Mapping):
            found = _counts(holder.get("class_counts"))
            if found:
                return found
    found = _counts(column.get("top_values"))
    return found if found else _integer_histogram_counts(column.get("histogram"))


def _integer_histogram_counts(histogram: Any) -> dict[Any, int] | None:
    """``{integer: count}`` of an integer histogram whose bins are one integer wide, else None."""
    if not isinstance(histogram, Mapping) or not histogram.get("integer"):
        return None
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    if len(edges) != len(counts) + 1 or histogram.get("underflow") or histogram.get("overflow"):
        return None
    if any(abs(b - a - 1.0) > 1e-9 for a, b in itertools.pairwise(edges)):
        return None
    found = {round(edge + 0.5): int(count) for edge, count in zip(edges, counts, strict=False) if count}
    return found or None


def compare(train_stats: Mapping[str, Any], serving_columns: Mapping[str, np.ndarray], spec: FeatureSpec,
            thresholds: Mapping[str, Any] | str | None = None,
            predicted_classes: Mapping[Any, int] | None = None) -> dict[str, Any]:
    """Compare serving columns with the training statistics; returns the drift result (JSON-safe).

    ``train_stats`` is a whole statistics.json document (its ``train`` scope is used) or one
    scope; ``serving_columns`` maps raw column names to 1-D arrays of equal length.
    Result keys: status (ok | drift | not_enough_data), drift_detected, message, serving_rows,
    training_rows, training_scope, thresholds, columns_drifted, max_psi, max_mean_shift,
    columns (per column: counts, moments, mean_shift, variance_ratio, psi, js_distance,
    out_of_range_fraction, their limits, flags, status, distribution); for a classification
    spec also ``predictions``: ``predicted_classes`` (``{class: count}`` of the served
    predictions) against the training label's class counts (:func:`compare_classes`).
    """
    limits = parse_thresholds(thresholds) if not isinstance(thresholds, Mapping) else \
        parse_thresholds(dict(thresholds))
    scope_name, scope = _training_scope(train_stats)
    checks = CHECKS_PER_COLUMN * len(spec.columns) + (1 if spec.is_classification else 0)
    alpha = limits["significance"] / checks
    lengths = {len(np.asarray(serving_columns[c.name])) for c in spec.columns if c.name in serving_columns}
    if len(lengths) > 1:
        raise ValueError(f"serving columns have different lengths: {sorted(lengths)}")
    serving_rows = lengths.pop() if lengths else 0
    columns: dict[str, Any] = {}
    for col in spec.columns:
        train = scope["columns"].get(col.name)
        values = serving_columns.get(col.name)
        columns[col.name] = compare_column(spec, col.name, train, None if values is None else np.asarray(values),
                                            limits, alpha)
    drifted = [name for name, entry in columns.items() if entry["status"] == STATUS_DRIFT]
    psis = [entry["psi"] for entry in columns.values() if entry.get("psi") is not None]
    shifts = [entry["mean_shift"] for entry in columns.values() if entry.get("mean_shift") is not None]
    classes = None
    if spec.is_classification:
        classes = compare_classes(training_class_counts(train_stats, spec), predicted_classes or {},
                                  list(spec.classes), limits, alpha)
    classes_drifted = classes is not None and classes["status"] == STATUS_DRIFT
    if serving_rows < limits["min_rows"]:
        status = STATUS_NOT_ENOUGH_DATA
        message = (f"not enough serving data: {serving_rows} rows, at least {limits['min_rows']} needed "
                   "for a drift verdict")
    elif drifted or classes_drifted:
        status = STATUS_DRIFT
        parts = [f"drift in {len(drifted)} of {len(columns)} columns: {', '.join(drifted)}"] if drifted else []
        if classes_drifted:
            parts.append(f"predicted classes differ from the training labels (PSI {classes['psi']:.3g})")
        message = "; ".join(parts)
    else:
        status = STATUS_OK
        message = f"no drift in {len(columns)} columns over {serving_rows} serving rows"
    extra = {} if classes is None else {"predictions": classes}
    return json_safe({
        "status": status,
        "drift_detected": status == STATUS_DRIFT,
        "message": message,
        "serving_rows": serving_rows,
        "training_rows": int(scope.get("rows") or 0),
        "training_scope": scope_name,
        "thresholds": limits,
        "columns_drifted": drifted,
        "max_psi": max(psis) if psis else None,
        "max_mean_shift": max(shifts) if shifts else None,
        "columns": columns,
        **extra,
    })


def metrics_summary(result: Mapping[str, Any]) -> dict[str, float | int]:
    """The numbers for a KFP Metrics artifact (numbers only; booleans as 0/1)."""
    return {
        "drift_detected": int(bool(result["drift_detected"])),
        "enough_data": int(result["status"] != STATUS_NOT_ENOUGH_DATA),
        "columns_drifted": len(result["columns_drifted"]),
        "max_psi": float(result["max_psi"]) if result.get("max_psi") is not None else 0.0,
        "max_mean_shift": float(result["max_mean_shift"]) if result.get("max_mean_shift") is not None else 0.0,
        "serving_rows": int(result["serving_rows"]),
        **_class_metrics(result.get("predictions")),
    }


def _class_metrics(classes: Mapping[str, Any] | None) -> dict[str, float | int]:
    """A classifier's predicted-class numbers for the Metrics artifact (none for regression)."""
    if classes is None:
        return {}
    return {"predicted_classes_drift": int(classes["status"] == STATUS_DRIFT),
            "predicted_classes_psi": float(classes.get("psi") or 0.0)}


def serving_class_counts(predictions: list[Mapping[str, Any] | None]) -> dict[Any, int]:
    """``{class: count}`` of the serving log's predicted classes (lines with a ``prediction.label``)."""
    from collections import Counter

    counts: Counter = Counter()
    for prediction in predictions:
        if prediction is not None and isinstance(prediction.get("label"), str | int) and \
                not isinstance(prediction.get("label"), bool):
            counts[prediction["label"]] += 1
    return dict(counts)


# --- the whole job --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonitorResult:
    """What one monitor run found and wrote.

    Attributes:
        status: ok | drift | not_enough_data.
        drift_detected: True when at least one column is flagged.
        message: the verdict in one line.
        columns_drifted: the flagged columns.
        max_psi: the largest PSI over the columns (None without distributions).
        max_mean_shift: the largest mean shift in training std units (None without moments).
        serving_rows: the serving rows compared.
        malformed_lines: serving log lines skipped as malformed.
        metrics: the numbers for a KFP Metrics artifact (also in metrics.json).
        outputs: the written files by kind (drift, markdown, html, metrics).
        drift: the whole drift.json document.
    """

    status: str
    drift_detected: bool
    message: str
    columns_drifted: list[str]
    max_psi: float | None
    max_mean_shift: float | None
    serving_rows: int
    malformed_lines: int
    metrics: dict[str, float | int]
    outputs: dict[str, str]
    drift: dict[str, Any]


def run(statistics: str | Path, serving_log: str | Path, out: str | Path, *,
        thresholds: Mapping[str, Any] | str | None = None, spec_path: str | Path | None = None,
        limit: int | None = None, html: bool = True, markdown_path: str | Path | None = None,
        html_path: str | Path | None = None) -> MonitorResult:
    """Read the statistics and the serving log, compare, write drift.json + reports + metrics.json to ``out``.

    Args:
        statistics: the ingest statistics folder (statistics.json + feature_spec.yaml) or the file.
        serving_log: the serving log: an s3:// prefix, a folder, a glob or one JSON Lines file.
        out: the folder for drift.json, the reports and metrics.json.
        thresholds: overrides of DEFAULT_THRESHOLDS (text or mapping; see parse_thresholds).
        spec_path: the feature spec (default: the one next to the statistics).
        limit: use only the most recent N logged rows.
        html: also write the HTML report (needs matplotlib).
        markdown_path: a second place for the Markdown report (a KFP Markdown artifact).
        html_path: a second place for the HTML report (a KFP HTML artifact); implies ``html``.

    Returns:
        The verdict, the metrics and the written paths; ``drift`` holds the whole document with
        ``serving_log`` (the reader's accounting) and ``outputs``.
    """
    from mlengine.components.monitor.report import render_html, render_markdown
    from mlengine.components.shared.serving_log import read_serving_log

    limits = parse_thresholds(thresholds) if not isinstance(thresholds, Mapping) else parse_thresholds(dict(thresholds))
    doc, stats_file = load_statistics(statistics)
    spec = load_statistics_spec(stats_file, spec_path)
    served = read_serving_log(serving_log, spec, limit=limit)
    log.info("monitor: %s serving rows from %d file(s) (%s malformed, %s incomplete lines skipped)",
             f"{served.rows:,}", len(served.files), f"{served.malformed:,}", f"{served.incomplete:,}")
    predicted = serving_class_counts(served.predictions) if spec.is_classification else None
    result = compare(doc, served.columns, spec, limits, predicted_classes=predicted)
    result["serving_log"] = json_safe(served.summary())
    result["statistics"] = str(stats_file)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {"drift": str(out_dir / DRIFT_FILE), "markdown": str(out_dir / REPORT_MARKDOWN_FILE),
               "metrics": str(out_dir / METRICS_FILE)}
    markdown = render_markdown(result)
    for target in filter(None, (outputs["markdown"], markdown_path)):
        Path(target).write_text(markdown, encoding="utf-8")
    if html or html_path:
        outputs["html"] = str(out_dir / REPORT_HTML_FILE)
        page = render_html(result)
        for target in filter(None, (outputs["html"], html_path)):
            Path(target).write_text(page, encoding="utf-8")
    metrics = metrics_summary(result)
    Path(outputs["metrics"]).write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    result["outputs"] = outputs
    Path(outputs["drift"]).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    log.info("monitor: %s", result["message"])
    return MonitorResult(
        status=result["status"], drift_detected=bool(result["drift_detected"]), message=result["message"],
        columns_drifted=list(result["columns_drifted"]), max_psi=result["max_psi"],
        max_mean_shift=result["max_mean_shift"], serving_rows=int(result["serving_rows"]),
        malformed_lines=int(result["serving_log"]["malformed"]), metrics=metrics, outputs=outputs, drift=result)
