"""The loss-curves HTML artifact of a training run (rendered by the Kubeflow UI)."""

from __future__ import annotations

from mlengine.components.shared import reports


def loss_curves_html(history: dict) -> str:
    """Training and validation RMSE per epoch as an embedded PNG, plus the per-epoch table."""
    epochs = history.get("epoch") or []
    if not epochs:
        return reports.html_page("Training curves", "<p>No epoch was trained.</p>")
    figure, axis = reports.new_figure()
    for key, label in (("rmse", "train RMSE"), ("val_rmse", "eval RMSE")):
        values = history.get(key) or []
        points = [(e, v) for e, v in zip(epochs, values, strict=False) if v is not None]
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("RMSE")
    axis.grid(alpha=0.3)
    axis.legend()
    image = reports.html_image(reports.figure_png_base64(figure), "training and eval RMSE per epoch")
    headers = ["epoch", "loss", "val_loss", "rmse", "val_rmse", "examples/s"]
    keys = ["epoch", "loss", "val_loss", "rmse", "val_rmse", "examples_per_second"]
    rows = []
    for index in range(len(epochs)):
        row = []
        for key in keys:
            values = history.get(key) or []
            value = values[index] if index < len(values) else None
            row.append("" if value is None else (f"{value:,.0f}" if key == "examples_per_second" else value))
        rows.append(row)
    return reports.html_page("Training curves", image + reports.html_table(headers, rows))
