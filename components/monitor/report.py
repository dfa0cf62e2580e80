"""The skew monitor's reports: a Markdown table and an HTML page with training-vs-serving histograms."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlengine.components.shared.reports import (
    figure_png_base64,
    html_image,
    html_page,
    html_table,
    markdown_table,
    new_figure,
)

TABLE_HEADERS = ("column", "status", "flags", "serving n", "train mean", "serving mean", "mean shift (std)",
                 "variance ratio", "PSI", "JS distance", "out of range")
CLASS_HEADERS = ("class", "training share", "serving share")
MAX_PLOT_LABELS = 30


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.6g}"  # 6 digits: coordinates differ in the 3rd decimal


def _with_limit(value: Any, limit: Any) -> str:
    """``0.031 (≤ 0.25)``: the value and the limit it is checked against."""
    if value is None:
        return "–"
    text = f"{value:.4g}"
    return f"{text} (> {limit:.3g}!)" if limit is not None and value > limit else text


def _ratio_text(entry: Mapping[str, Any]) -> str:
    ratio = entry.get("variance_ratio")
    if ratio is None:
        return "–"
    low, high = entry.get("variance_ratio_limits") or (None, None)
    if high is not None and ratio > high:
        return f"{ratio:.4g} (> {high:.3g}!)"
    if low is not None and ratio < low:
        return f"{ratio:.4g} (< {low:.3g}!)"
    return f"{ratio:.4g}"


def table_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for name, entry in result["columns"].items():
        share = entry.get("out_of_range_fraction")
        rows.append([
            name, entry["status"], ", ".join(entry.get("flags") or []) or "–", entry.get("serving_count", 0),
            _number(entry.get("train_mean")), _number(entry.get("serving_mean")),
            _with_limit(entry.get("mean_shift"), entry.get("mean_shift_limit")), _ratio_text(entry),
            _with_limit(entry.get("psi"), entry.get("psi_limit")),
            _with_limit(entry.get("js_distance"), entry.get("js_distance_limit")),
            "–" if share is None else f"{100 * share:.2f}%",
        ])
    return rows


def _summary_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"**{result['status'].upper()}**: {result['message']}", ""]
    lines.append(f"- serving rows: {result['serving_rows']:,}; training rows ({result['training_scope']} "
                 f"statistics): {result['training_rows']:,}")
    log = result.get("serving_log")
    if log:
        lines.append(f"- serving log: {log.get('files', 0)} file(s), {log.get('malformed', 0):,} malformed and "
                     f"{log.get('incomplete', 0):,} incomplete lines skipped")
        if log.get("first_problem"):
            lines.append(f"- first malformed line: `{log['first_problem']}`")
    if result.get("max_psi") is not None:
        lines.append(f"- max PSI: {result['max_psi']:.4g}; max mean shift: {result['max_mean_shift']:.4g} std")
    limits = result["thresholds"]
    lines.append("- thresholds: " + ", ".join(f"{key}={value}" for key, value in limits.items())
                 + " (a limit above its threshold is the sampling noise of this many serving rows)")
    return lines


def class_lines(classes: Mapping[str, Any]) -> list[str]:
    """A classifier's predicted classes against the training labels: the verdict in words."""
    status = classes["status"]
    if status in ("no_training_data",):
        return [f"**{status.upper()}**: the training statistics have no class counts of the label"]
    line = f"**{status.upper()}**: {classes.get('serving_count', 0):,} predictions"
    if classes.get("psi") is not None:
        line += (f"; PSI {_with_limit(classes['psi'], classes.get('psi_limit'))}, JS distance "
                 f"{_with_limit(classes['js_distance'], classes.get('js_distance_limit'))}")
    return [line]


def class_rows(classes: Mapping[str, Any]) -> list[list[Any]]:
    distribution = classes.get("distribution")
    if not distribution:
        return []
    return [[label, f"{100 * t:.1f}%", f"{100 * s:.1f}%"] for label, t, s in
            zip(distribution["labels"], classes["train_shares"], classes["serving_shares"], strict=True)]


def render_markdown(result: Mapping[str, Any]) -> str:
    """The drift verdict, the accounting and one table row per column (and per class for a classifier)."""
    lines = ["# Training/serving skew", "", *_summary_lines(result), "",
             markdown_table(TABLE_HEADERS, table_rows(result)), ""]
    classes = result.get("predictions")
    if classes is not None:
        lines += ["## Predicted classes vs training labels", "", *class_lines(classes), ""]
        if class_rows(classes):
            lines += [markdown_table(CLASS_HEADERS, class_rows(classes)), ""]
    return "\n".join(lines)


def _plot(name: str, entry: Mapping[str, Any]) -> str | None:
    """Training vs serving share per bin / category as one PNG (base64)."""
    distribution = entry.get("distribution")
    if not distribution:
        return None
    train = np.asarray(distribution["train_counts"], np.float64)
    serving = np.asarray(distribution["serving_counts"], np.float64)
    labels = list(distribution["labels"])
    if distribution["kind"] == "histogram" and train[0] == 0 and serving[0] == 0:  # hide empty overflow bins
        train, serving, labels = train[1:], serving[1:], labels[1:]
    if distribution["kind"] == "histogram" and train[-1] == 0 and serving[-1] == 0:
        train, serving, labels = train[:-1], serving[:-1], labels[:-1]
    if len(labels) > MAX_PLOT_LABELS:
        train, serving, labels = train[:MAX_PLOT_LABELS], serving[:MAX_PLOT_LABELS], labels[:MAX_PLOT_LABELS]
    train_share = train / train.sum() if train.sum() > 0 else train
    serving_share = serving / serving.sum() if serving.sum() > 0 else serving
    figure, axes = new_figure(7.0, 3.2)
    positions = np.arange(len(labels))
    axes.bar(positions - 0.2, train_share, width=0.4, label="training", color="#4878a8")
    axes.bar(positions + 0.2, serving_share, width=0.4, label="serving", color="#e07b39")
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("share of rows")
    psi = entry.get("psi")
    axes.set_title(f"{name}: {entry['status']}" + (f" (PSI {psi:.3g})" if psi is not None else ""), fontsize=10)
    axes.legend(fontsize=8)
    return figure_png_base64(figure)


def render_html(result: Mapping[str, Any]) -> str:
    """One self-contained page: verdict, table, one training-vs-serving histogram per column."""
    summary = "".join(f"<p>{html.escape(line.lstrip('- ').replace('**', ''))}</p>"
                      for line in _summary_lines(result) if line)
    parts = [summary, html_table(TABLE_HEADERS, table_rows(result))]
    classes = result.get("predictions")
    if classes is not None:
        parts.append("<h2>Predicted classes vs training labels</h2>" + "".join(
            f"<p>{html.escape(line.replace('**', ''))}</p>" for line in class_lines(classes)))
        if class_rows(classes):
            parts.append(html_table(CLASS_HEADERS, class_rows(classes)))
        png = _plot("predicted class", classes)
        if png is not None:
            parts.append(html_image(png, "predicted classes: training labels vs serving predictions"))
    for name, entry in result["columns"].items():
        png = _plot(name, entry)
        if png is not None:
            parts.append(f"<h3>{html.escape(name)}</h3>{html_image(png, f'{name}: training vs serving')}")
    return html_page("Training/serving skew", "".join(parts))
