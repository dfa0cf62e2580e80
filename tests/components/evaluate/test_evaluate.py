"""Evaluation on the test split: model and benchmark metrics against numpy, the blessing rule."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlengine.components.evaluate.executor import evaluate, render_evaluation_markdown
from mlengine.components.shared.derived import haversine_km_np
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.errors import MlengineError
from tests.model_fixtures import train_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("evaluate")
    return workdir, train_tiny_model(workdir, rows=2000, epochs=1)


def _test_columns(workdir) -> dict[str, np.ndarray]:
    table = pq.read_table(workdir / "data" / "test")
    return {name: table.column(name).to_numpy() for name in table.column_names}


def test_metrics_match_a_numpy_computation(tiny):
    workdir, model_dir = tiny
    result = evaluate(str(model_dir), str(workdir / "data" / "test"), batch_size=64, progress=False)
    columns = _test_columns(workdir)
    label = columns["fare_amount"]
    transform = json.loads((model_dir / "transform.json").read_text())
    bench = transform["benchmark"]
    assert bench["feature"] == "distance_km"
    distance = haversine_km_np(columns["pickup_latitude"], columns["pickup_longitude"],
                               columns["dropoff_latitude"], columns["dropoff_longitude"])
    bench_error = bench["slope"] * distance + bench["intercept"] - label
    model_error = load_model_dir(str(model_dir))(columns).astype(np.float64) - label

    assert result["rows"] == len(label) == 200
    assert result["benchmark_rmse"] == pytest.approx(np.sqrt(np.mean(bench_error ** 2)), rel=1e-9)
    assert result["benchmark_mae"] == pytest.approx(np.mean(np.abs(bench_error)), rel=1e-9)
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean(model_error ** 2)), rel=1e-6)
    assert result["mae"] == pytest.approx(np.mean(np.abs(model_error)), rel=1e-6)
    assert result["blessed"] == (result["rmse"] <= result["benchmark_rmse"] * 0.95)


def test_blessing_both_ways(tiny, tmp_path):
    workdir, model_dir = tiny
    test_dir = str(workdir / "data" / "test")
    # a margin no model can meet
    strict = evaluate(str(model_dir), test_dir, margin=0.99, progress=False)
    assert strict["blessed"] is False
    assert "**NOT blessed**" in render_evaluation_markdown(strict)

    # the same model against a poor benchmark (a constant far from every fare) is blessed
    weak = tmp_path / "weak"
    shutil.copytree(model_dir, weak)
    transform = json.loads((weak / "transform.json").read_text())
    transform["benchmark"] = {"feature": None, "slope": 0.0, "intercept": 500.0}
    (weak / "transform.json").write_text(json.dumps(transform))
    result = evaluate(str(weak), test_dir, margin=0.05, progress=False)
    label = _test_columns(workdir)["fare_amount"]
    assert result["benchmark_rmse"] == pytest.approx(np.sqrt(np.mean((500.0 - label) ** 2)), rel=1e-9)
    assert result["benchmark_feature"] is None
    assert result["blessed"] is True and result["improvement"] > 0.5
    markdown = render_evaluation_markdown(result)
    assert "**BLESSED**" in markdown and "the mean label" in markdown and "| model |" in markdown


def test_bad_margin_and_missing_model(tiny, tmp_path):
    workdir, model_dir = tiny
    with pytest.raises(MlengineError, match="margin"):
        evaluate(str(model_dir), str(workdir / "data" / "test"), margin=1.5, progress=False)
    (tmp_path / "transform.json").write_text((model_dir / "transform.json").read_text())
    with pytest.raises(MlengineError, match="no SavedModel"):
        evaluate(str(tmp_path), str(workdir / "data" / "test"), progress=False)
