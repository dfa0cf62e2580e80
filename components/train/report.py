"""The loss-curves HTML artifact of a training run (rendered by the Kubeflow UI)."""

from __future__ import annotations

from mlengine.components.shared import reports


def loss_curves_html(history: dict) -> str:
    """Training and validation objective per epoch as an embedded PNG, plus the per-epoch table.

    The objective is the RMSE of a regression model, the log loss of a classifier (its history has
    ``log_loss`` and ``accuracy`` columns instead of ``rmse``).
    """
    epochs = history.get("epoch") or []
    if not epochs:
        return reports.html_page("Training curves", "<p>No epoch was trained.</p>")
    classifier = "val_log_loss" in history
    metric, name = ("log_loss", "log loss") if classifier else ("rmse", "RMSE")
    figure, axis = reports.new_figure()
    for key, label in ((metric, f"train {name}"), (f"val_{metric}", f"eval {name}")):
        values = history.get(key) or []
        points = [(e, v) for e, v in zip(epochs, values, strict=False) if v is not None]
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel(name)
    axis.grid(alpha=0.3)
    axis.legend()
    image = reports.html_image(reports.figure_png_base64(figure), f"training and eval {name} per epoch")
    figures = ["log_loss", "val_log_loss", "accuracy", "val_accuracy"] if classifier else ["rmse", "val_rmse"]
    headers = ["epoch", "loss", "val_loss", *figures, "examples/s"]
    keys = ["epoch", "loss", "val_loss", *figures, "examples_per_second"]
    rows = []
    for index in range(len(epochs)):
        row = []
        for key in keys:
            values = history.get(key) or []
            value = values[index] if index < len(values) else None
            row.append("" if value is None else (f"{value:,.0f}" if key == "examples_per_second" else value))
        rows.append(row)
    return reports.html_page("Training curves", image + reports.html_table(headers, rows))
