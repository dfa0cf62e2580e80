"""The HTML statistics report: a histogram per numeric column, bar charts of top values and classes,
written by ``executor.run`` and by ``mlengine ingest``; a column without values gets a sentence, not axes."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import yaml

from mlengine.cli import main
from mlengine.components.ingest.report import NO_VALUES, render_statistics_html
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.constants import STATISTICS_FILE, STATISTICS_HTML_FILE, STATISTICS_VIEW_FILE
from mlengine.errors import DataError
from tests.ingest_fixtures import ingest, write_csv_rows

SPEC = {
    "name": "churn",
    "label": {"name": "churned", "type": "string", "vocabulary": ["no", "yes", "maybe"]},
    "columns": [
        {"name": "x", "type": "float", "range": [0, 10]},
        {"name": "visits", "type": "int", "range": [0, 100]},
        {"name": "plan", "type": "string"},
    ],
    "features": {"numeric": ["x", "visits"], "categorical": ["plan"]},
}
HEADER = ["x", "visits", "plan", "churned"]
IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"/>')


def _rows(labels: list[str], seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[f"{rng.uniform(0, 10):.3f}", str(rng.integers(0, 30)), str(rng.choice(["basic", "pro", "team"])), label]
            for label in labels]


def _images(page: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in IMAGE.findall(page)}


def test_run_writes_the_html_report_with_a_plot_per_column(tmp_path):
    labels = ["no"] * 120 + ["yes"] * 60 + ["maybe"] * 30
    path = write_csv_rows(tmp_path / "churn.csv", HEADER, _rows(labels))
    page_path = tmp_path / "report" / "statistics.html"
    run = ingest(path, tmp_path / "out", spec=spec_from_dict(SPEC), html_path=str(page_path))
    assert run.result.html_path == str(page_path)
    page = page_path.read_text(encoding="utf-8")
    assert page == render_statistics_html(run.statistics(), run.result)
    assert page.lower().startswith("<!doctype html") and "Ingest statistics: churn" in page
    images = _images(page)
    assert set(images) == {"histogram of x", "histogram of visits", "top values of plan", "classes of churned"}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000 for png in images.values())
    assert "<td>no</td><td>120</td><td>57.1%</td>" in page  # the class table beside its chart
    assert NO_VALUES not in page
    assert "html_path" not in run.statistics()["ingest"]  # where the report went is not a data figure


def test_a_column_without_values_gets_a_sentence_not_empty_axes(tmp_path):
    # every row's label outside the vocabulary: no ok row, so no column has a value to draw
    path = write_csv_rows(tmp_path / "bad.csv", HEADER, _rows(["perhaps"] * 20))
    page_path = tmp_path / "statistics.html"
    with pytest.raises(DataError):
        ingest(path, tmp_path / "out", spec=spec_from_dict(SPEC), html_path=str(page_path))
    page = page_path.read_text(encoding="utf-8")
    assert _images(page) == {}
    assert page.count(NO_VALUES) == 4  # x, visits, plan and the classes
    assert "<h3>churned (string)</h3><p>Its rows per class are in the classes section above.</p>" in page
    stats = json.loads((tmp_path / "out" / "stats" / STATISTICS_FILE).read_text(encoding="utf-8"))
    assert stats["all"]["rows"] == 0


def test_an_empty_column_beside_full_ones_is_the_only_one_without_a_plot():
    histogram = {"edges": [0.0, 1.0, 2.0], "counts": [3, 4], "underflow": 1, "overflow": 0, "integer": False,
                 "source": "sample"}
    empty = {"edges": [], "counts": [], "underflow": 0, "overflow": 0, "integer": False, "source": "sample"}
    stats = {"spec_name": "t", "label": "y", "all": {"rows": 8, "columns": {
        "a": {"type": "float", "count": 8, "missing": 0, "mean": 1.0, "histogram": histogram},
        "b": {"type": "float", "count": 0, "missing": 0, "histogram": empty},
        "s": {"type": "string", "count": 8, "missing": 0, "top_values": [], "distinct": 0},
        "$": {"type": "string", "count": 8, "missing": 0, "top_values": [{"value": "$x^$", "count": 8}]},
        "y": {"type": "float", "count": 8, "missing": 0, "histogram": histogram}}}}
    summary = {"rows_read": 8, "rows_ok": 8, "rows_rejected": 0, "rows_per_split": {"train": 8}}
    page = render_statistics_html(stats, summary)
    assert set(_images(page)) == {"histogram of a", "histogram of y", "top values of $"}  # "$" drawn as text
    assert page.count(NO_VALUES) == 2  # b and s
    assert "1 below the range drawn" not in page  # the caption is inside the picture, not the page


def test_mlengine_ingest_writes_statistics_html_beside_the_markdown(tmp_path, capsys):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    path = write_csv_rows(tmp_path / "churn.csv", HEADER, _rows(["no"] * 80 + ["yes"] * 60 + ["maybe"] * 40))
    out = tmp_path / "cli"
    assert main(["ingest", "--data", str(path), "--spec", str(spec_path), "--out", str(out), "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["html_path"] == str(out / "statistics" / STATISTICS_HTML_FILE)
    assert (out / "statistics" / STATISTICS_VIEW_FILE).is_file()
    page = (out / "statistics" / STATISTICS_HTML_FILE).read_text(encoding="utf-8")
    assert "histogram of x" in page and "classes of churned" in page
