"""Rendering of the evaluation reports (pure: a result dict in, text out).

A regressor's page has a predicted-vs-actual and a residual plot; a classifier's the ROC and
precision-recall curves, the reliability (calibration) plot and the confusion matrix.
"""

from __future__ import annotations

import numpy as np

from mlengine.components.shared import reports


def _slice_table_rows(rows: list[dict], with_baseline: bool) -> list[list]:
    return [[r["value"], r["rows"], r["rmse"], r["mae"], *([r.get("baseline_rmse", "-")] if with_baseline else [])]
            for r in rows]


def _is_classification(result: dict) -> bool:
    return result.get("task") in ("binary", "multiclass")


def render_evaluation_markdown(result: dict) -> str:
    """A short Markdown report: the metrics table, the verdict with its reasons, the sliced metrics."""
    if _is_classification(result):
        return render_classification_markdown(result)
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
    """The same report as HTML with a predicted-vs-actual and a residual plot (a classifier: its four plots)."""
    import html

    if _is_classification(result):
        return render_classification_html(result)

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


# --- classification ------------------------------------------------------------------------------
def _value(value):
    return "-" if value is None else value


def _benchmark_name(result: dict) -> str:
    feature = result.get("benchmark_feature")
    return f"logistic regression on `{feature}`" if feature else "the class prior"


def _headline_rows(result: dict) -> list[list]:
    rows = [["model", result["log_loss"], result["accuracy"], _value(result.get("roc_auc"))],
            [f"benchmark ({_benchmark_name(result)})", result["benchmark_log_loss"], result["benchmark_accuracy"],
             _value(result.get("benchmark_roc_auc"))]]
    if result.get("baseline_log_loss") is not None:
        rows.append([f"served model ({result.get('baseline_model')})", result["baseline_log_loss"],
                     result["baseline_accuracy"], _value(result.get("baseline_roc_auc"))])
    return rows


HEADLINE = ["", "log loss", "accuracy", "ROC AUC"]


def _per_class_rows(result: dict) -> list[list]:
    return [[str(r["class"]), r["precision"], r["recall"], r["f1"], r["support"]] for r in result["per_class"]]


def _confusion_rows(result: dict) -> list[list]:
    return [[f"true {c}", *counts] for c, counts in zip(result["classes"], result["confusion_matrix"], strict=True)]


def _class_slice_rows(rows: list[dict], with_baseline: bool) -> list[list]:
    return [[r["value"], r["rows"], r["log_loss"], r["accuracy"], _value(r.get("roc_auc")),
             *([_value(r.get("baseline_log_loss"))] if with_baseline else [])] for r in rows]


def _class_slice_headers(name: str, with_baseline: bool) -> list[str]:
    return [name, "rows", "log loss", "accuracy", "ROC AUC", *(["served log loss"] if with_baseline else [])]


def render_classification_markdown(result: dict) -> str:
    """A classifier's Markdown report: headline figures, verdict, per-class figures, confusion matrix, slices."""
    verdict = "**BLESSED**" if result["blessed"] else "**NOT blessed**"
    extra = f", PR AUC {result['pr_auc']:.4f}" if result.get("pr_auc") is not None else ""
    lines = ["# Model evaluation", "",
             f"Task: {result['task']} ({len(result['classes'])} classes), test rows: {result['rows']:,}{extra}", "",
             reports.markdown_table(HEADLINE, _headline_rows(result)), "", f"{verdict}:", ""]
    lines += [f"- {reason}" for reason in result["reasons"][:-1]]
    lines += ["", "## Per class", "",
              reports.markdown_table(["class", "precision", "recall", "F1", "support"], _per_class_rows(result)),
              "", "## Confusion matrix (rows: true class, columns: predicted)", "",
              reports.markdown_table(["", *[f"predicted {c}" for c in result["classes"]]], _confusion_rows(result))]
    with_baseline = result.get("baseline_log_loss") is not None
    for name, slice_rows in (result.get("slices") or {}).items():
        lines += ["", f"## By {name}", "", reports.markdown_table(_class_slice_headers(name, with_baseline),
                                                                   _class_slice_rows(slice_rows, with_baseline))]
    return "\n".join(lines) + "\n"


def _plot_roc(curves: dict) -> str | None:
    drawn = {name: c for name, c in curves["roc"].items() if c["fpr"]}
    if not drawn:
        return None
    figure, axis = reports.new_figure(5.5, 5.0)
    for name, curve in drawn.items():
        axis.plot(curve["fpr"], curve["tpr"], label=f"model: {name}" if len(drawn) > 1 else "model")
    bench = curves.get("benchmark_roc")
    if bench and bench["fpr"]:
        axis.plot(bench["fpr"], bench["tpr"], linestyle="--", label="benchmark")
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("ROC curve" + (" (each class against the rest)" if len(drawn) > 1 else ""))
    axis.legend(loc="lower right")
    return reports.figure_png_base64(figure)


def _plot_pr(curves: dict) -> str | None:
    drawn = {name: c for name, c in curves["pr"].items() if c["recall"]}
    if not drawn:
        return None
    figure, axis = reports.new_figure(5.5, 5.0)
    for name, curve in drawn.items():
        line = axis.step(curve["recall"], curve["precision"], where="post",
                         label=f"model: {name}" if len(drawn) > 1 else "model")
        share = curves["positive_share"][name]  # a classifier without skill
        axis.axhline(share, color=line[0].get_color(), linewidth=0.8, linestyle=":")
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_ylim(0, 1.02)
    axis.set_title("precision-recall curve (dotted: the class's share)")
    axis.legend(loc="lower left")
    return reports.figure_png_base64(figure)


def _plot_calibration(curves: dict) -> str | None:
    drawn = {name: c for name, c in curves["calibration"].items() if c["predicted"]}
    if not drawn:
        return None
    figure, axis = reports.new_figure(5.5, 5.0)
    for name, curve in drawn.items():
        axis.plot(curve["predicted"], curve["observed"], marker="o",
                  label=f"class {name}" if len(drawn) > 1 else f"P({name})")
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="perfectly calibrated")
    axis.set_xlabel("mean predicted probability")
    axis.set_ylabel("observed share of the class")
    axis.set_title("reliability (calibration)")
    axis.legend(loc="upper left")
    return reports.figure_png_base64(figure)


def _plot_confusion(result: dict) -> str:
    matrix = np.asarray(result["confusion_matrix"])
    labels = [str(c) for c in result["classes"]]
    size = max(4.0, 0.6 * len(labels) + 3)
    figure, axis = reports.new_figure(size, size * 0.9)
    axis.imshow(matrix, cmap="Blues")
    high = matrix.max() if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        axis.text(col, row, f"{count:,}", ha="center", va="center",
                  color="white" if high and count > high / 2 else "black")
    axis.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("confusion matrix")
    return reports.figure_png_base64(figure)


def render_classification_html(result: dict) -> str:
    """A classifier's HTML report: the verdict, the ROC, PR, reliability and confusion plots, the tables.

    A curve that cannot be drawn (the test rows hold one class only) is left out with a sentence.
    """
    import html

    curves = result.get("plot_sample") or {}
    parts = [f"<p><b>{'BLESSED' if result['blessed'] else 'NOT blessed'}</b></p><ul>"
             + "".join(f"<li>{html.escape(r)}</li>" for r in result["reasons"][:-1]) + "</ul>",
             reports.html_table([h or "" for h in HEADLINE], _headline_rows(result))]
    if result.get("pr_auc") is not None:
        parts.append(f"<p>PR AUC (average precision) of {html.escape(str(result['classes'][1]))}: "
                     f"{result['pr_auc']:.4f}</p>")
    plots = [("ROC curve", _plot_roc(curves) if curves else None),
             ("precision-recall curve", _plot_pr(curves) if curves else None),
             ("reliability (calibration) plot", _plot_calibration(curves) if curves else None),
             ("confusion matrix", _plot_confusion(result))]
    for alt, png in plots:
        parts.append(reports.html_image(png, alt) if png else
                     f"<p>No {html.escape(alt)}: the test rows do not hold both sides of any class.</p>")
    parts.append("<h3>Per class</h3>" + reports.html_table(["class", "precision", "recall", "F1", "support"],
                                                          _per_class_rows(result)))
    with_baseline = result.get("baseline_log_loss") is not None
    for name, slice_rows in (result.get("slices") or {}).items():
        parts.append(f"<h3>By {html.escape(name)}</h3>" + reports.html_table(
            _class_slice_headers(name, with_baseline), _class_slice_rows(slice_rows, with_baseline)))
    return reports.html_page("Model evaluation", "".join(parts))


def summary_of(result: dict) -> dict:
    """What goes into evaluation.json (and summary.json): everything but the plot sample."""
    return {key: value for key, value in result.items() if key != "plot_sample"}
