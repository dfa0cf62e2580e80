"""Rendering of the evaluation reports (pure: a result dict in, text out)."""

from __future__ import annotations

import numpy as np

from mlengine.components.shared import reports


def _slice_table_rows(rows: list[dict], with_baseline: bool) -> list[list]:
    return [[r["value"], r["rows"], r["rmse"], r["mae"], *([r.get("baseline_rmse", "-")] if with_baseline else [])]
            for r in rows]


def render_evaluation_markdown(result: dict) -> str:
    """A short Markdown report: the metrics table, the verdict with its reasons, the sliced metrics."""
    feature = result.get("benchmark_feature")
    benchmark_name = f"least-squares line on `{feature}`" if feature else "the mean label"
    verdict = "**BLESSED**" if result["blessed"] else "**NOT blessed**"
    rows = [["model", result["rmse"], result["mae"]],
            [f"benchmark ({benchmark_name})", result["benchmark_rmse"], result["benchmark_mae"]]]
    if result.get("baseline_rmse") is not None:
        rows.append([f"served model ({result.get('baseline_model')})", result["baseline_rmse"], result["baseline_mae"]])
    lines = ["# Model evaluation", "", f"Test rows: {result['rows']:,}", "",
             reports.markdown_table(["", "RMSE", "MAE"], rows), "", f"{verdict}:", ""]
    lines += [f"- {reason}" for reason in result["reasons"][:-1]]
    with_baseline = result.get("baseline_rmse") is not None
    for name, slice_rows in (result.get("slices") or {}).items():
        headers = [name, "rows", "RMSE", "MAE", *(["served RMSE"] if with_baseline else [])]
        table = reports.markdown_table(headers, _slice_table_rows(slice_rows, with_baseline))
        lines += ["", f"## By {name}", "", table]
    return "\n".join(lines) + "\n"


def render_evaluation_html(result: dict) -> str:
    """The same report as HTML with a predicted-vs-actual and a residual plot."""
    import html

    sample = result.get("plot_sample") or {}
    label = np.asarray(sample.get("label") or [], np.float64)
    predicted = np.asarray(sample.get("prediction") or [], np.float64)
    parts = [f"<p><b>{'BLESSED' if result['blessed'] else 'NOT blessed'}</b></p><ul>"
             + "".join(f"<li>{html.escape(r)}</li>" for r in result["reasons"][:-1]) + "</ul>"]
    if label.size:
        figure, axis = reports.new_figure(5.5, 5.0)
        axis.scatter(label, predicted, s=4, alpha=0.4)
        low, high = float(min(label.min(), predicted.min())), float(max(label.max(), predicted.max()))
        axis.plot([low, high], [low, high], color="black", linewidth=1)
        axis.set_xlabel("actual")
        axis.set_ylabel("predicted")
        axis.set_title(f"predicted vs actual ({label.size:,} test rows)")
        parts.append(reports.html_image(reports.figure_png_base64(figure), "predicted vs actual"))
        figure, axis = reports.new_figure(5.5, 5.0)
        axis.scatter(predicted, predicted - label, s=4, alpha=0.4)
        axis.axhline(0.0, color="black", linewidth=1)
        axis.set_xlabel("predicted")
        axis.set_ylabel("residual (predicted - actual)")
        axis.set_title("residuals")
        parts.append(reports.html_image(reports.figure_png_base64(figure), "residuals"))
    with_baseline = result.get("baseline_rmse") is not None
    rows = [["model", result["rmse"], result["mae"]], ["benchmark", result["benchmark_rmse"], result["benchmark_mae"]]]
    if with_baseline:
        rows.append(["served model", result["baseline_rmse"], result["baseline_mae"]])
    parts.append(reports.html_table(["", "RMSE", "MAE"], rows))
    for name, slice_rows in (result.get("slices") or {}).items():
        headers = [name, "rows", "RMSE", "MAE", *(["served RMSE"] if with_baseline else [])]
        parts.append(f"<h3>By {html.escape(name)}</h3>" + reports.html_table(headers, _slice_table_rows(slice_rows,
                                                                                                        with_baseline)))
    return reports.html_page("Model evaluation", "".join(parts))


def summary_of(result: dict) -> dict:
    """What goes into evaluation.json (and summary.json): everything but the plot sample."""
    return {key: value for key, value in result.items() if key != "plot_sample"}
