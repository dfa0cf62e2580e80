"""Small builders for the Markdown and HTML artifacts the Kubeflow UI renders.

Pictures are matplotlib figures embedded as base64 PNG, so one HTML file carries everything
(the UI shows HTML artifacts in a sandboxed iframe that cannot fetch other files).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence


def figure_png_base64(figure) -> str:
    """Encode a matplotlib figure as base64 PNG and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float = 7.0, height: float = 4.0):
    """A matplotlib figure on the non-interactive Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def html_image(png_base64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64}"/>'


def markdown_image(png_base64: str, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{png_base64})"


def html_page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head>"
        f"<body><h2>{html.escape(title)}</h2>{body}</body></html>"
    )


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def log_metrics(metrics_artifact, values: dict) -> None:
    """Log scalar metrics on a KFP Metrics artifact and also write them to its file.

    KFP shows the metadata; the file makes the artifact exist on disk, which kfp.local's task
    cache requires before it reuses a step (`mlengine run --resume`).
    """
    import json
    from pathlib import Path

    for key, value in values.items():
        metrics_artifact.log_metric(key, value)
    path = Path(metrics_artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(metrics_artifact.metadata), sort_keys=True), encoding="utf-8")


def log_classification_metrics(artifact, values: dict | None) -> None:
    """Log a classifier's confusion matrix and ROC curve on a KFP ClassificationMetrics artifact.

    The Kubeflow UI draws both from the artifact's metadata. ``values`` is None for a regressor:
    the artifact then stays empty. Its file is written either way (kfp.local's cache needs it).
    """
    import json
    from pathlib import Path

    if values:
        artifact.log_confusion_matrix(values["categories"], values["matrix"])
        if values["fpr"]:
            artifact.log_roc_curve(values["fpr"], values["tpr"], values["thresholds"])
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(artifact.metadata), sort_keys=True), encoding="utf-8")
