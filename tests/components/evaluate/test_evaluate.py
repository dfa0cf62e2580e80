"""Evaluation on the test split: model and benchmark metrics against numpy, the blessing rule."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlengine.components.evaluate.executor import score as evaluate
from mlengine.components.evaluate.report import render_evaluation_markdown
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
    result = evaluate(str(model_dir), str(workdir / "data" / "test"), batch_size=64)
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
    strict = evaluate(str(model_dir), test_dir, margin=0.99)
    assert strict["blessed"] is False
    assert "**NOT blessed**" in render_evaluation_markdown(strict)

    # the same model against a poor benchmark (a constant far from every fare) is blessed
    weak = tmp_path / "weak"
    shutil.copytree(model_dir, weak)
    transform = json.loads((weak / "transform.json").read_text())
    transform["benchmark"] = {"feature": None, "slope": 0.0, "intercept": 500.0}
    (weak / "transform.json").write_text(json.dumps(transform))
    result = evaluate(str(weak), test_dir, margin=0.05)
    label = _test_columns(workdir)["fare_amount"]
    assert result["benchmark_rmse"] == pytest.approx(np.sqrt(np.mean((500.0 - label) ** 2)), rel=1e-9)
    assert result["benchmark_feature"] is None
    assert result["blessed"] is True and result["improvement"] > 0.5
    markdown = render_evaluation_markdown(result)
    assert "**BLESSED**" in markdown and "the mean label" in markdown and "| model |" in markdown


def test_bad_margin_and_missing_model(tiny, tmp_path):
    workdir, model_dir = tiny
    with pytest.raises(MlengineError, match="margin"):
        evaluate(str(model_dir), str(workdir / "data" / "test"), margin=1.5)
    (tmp_path / "transform.json").write_text((model_dir / "transform.json").read_text())
    with pytest.raises(MlengineError, match="no SavedModel"):
        evaluate(str(tmp_path), str(workdir / "data" / "test"))


# --- the served baseline, the reasons, the slices --------------------------------------------------
def test_baseline_comparison_blesses_only_when_not_worse(tiny, tmp_path):
    """The same model as its own baseline passes; a baseline that is far better blocks the blessing."""
    workdir, model_dir = tiny
    test_dir = str(workdir / "data" / "test")
    weak = tmp_path / "weak"  # a benchmark every model beats, so only the baseline rule decides
    shutil.copytree(model_dir, weak)
    transform = json.loads((weak / "transform.json").read_text())
    transform["benchmark"] = {"feature": None, "slope": 0.0, "intercept": 500.0}
    (weak / "transform.json").write_text(json.dumps(transform))

    alone = evaluate(str(weak), test_dir)
    assert alone["baseline_rmse"] is None and alone["blessed"] is True
    assert alone["reasons"][1] == "no baseline comparison: no model is in service yet"

    same = evaluate(str(weak), test_dir, baseline_dir=str(model_dir), tolerance=0.0)
    assert same["baseline_rmse"] == pytest.approx(same["rmse"], rel=1e-6) and same["blessed"] is True
    assert same["not_worse_than_baseline"] is True

    # a better served model: the tiny model trained for more epochs on the same data
    from tests.model_fixtures import train_tiny_model

    better_dir = train_tiny_model(tmp_path / "better", rows=2000, epochs=8)
    versus = evaluate(str(weak), test_dir, baseline_dir=str(better_dir), tolerance=0.01)
    label = _test_columns(workdir)["fare_amount"]
    served = load_model_dir(str(better_dir))(_test_columns(workdir)).astype(np.float64)
    assert versus["baseline_rmse"] == pytest.approx(np.sqrt(np.mean((served - label) ** 2)), rel=1e-6)
    assert versus["baseline_rmse"] < versus["rmse"] / 1.01, "the 8-epoch model should be clearly better"
    assert versus["blessed"] is False and versus["beats_benchmark"] is True
    change = versus["rmse"] / versus["baseline_rmse"] - 1
    assert versus["reasons"][1] == (f"RMSE {versus['rmse']:.4g} is {change:.1%} worse than the served model's "
                                    f"{versus['baseline_rmse']:.4g} (allowed: at most 1% worse): fails")
    assert versus["reasons"][-1] == "not blessed"
    assert "served model" in render_evaluation_markdown(versus)


def test_blessing_rule_words():
    from mlengine.components.evaluate.executor import blessing

    verdict = blessing(612.0, 1500.0, 0.05, 599.0, 0.01)
    assert verdict["blessed"] is False and verdict["beats_benchmark"] is True
    assert verdict["reasons"][1] == ("RMSE 612 is 2.2% worse than the served model's 599 (allowed: at most 1% worse): "
                                     "fails")
    assert blessing(600.0, 1500.0, 0.05, 599.0, 0.01)["blessed"] is True
    failing = blessing(1490.0, 1500.0, 0.05, None, 0.01)
    assert failing["blessed"] is False and failing["reasons"][0].endswith(": fails")


def test_slices_match_numpy_and_the_html_has_both_plots(tiny):
    workdir, model_dir = tiny
    result = evaluate(str(model_dir), str(workdir / "data" / "test"), batch_size=64)
    columns = _test_columns(workdir)
    error = load_model_dir(str(model_dir))(columns).astype(np.float64) - columns["fare_amount"]
    by_hour = {row["value"]: row for row in result["slices"]["hourofday"]}
    for hour in np.unique(columns["hourofday"]):
        rows = columns["hourofday"] == hour
        assert by_hour[int(hour)]["rows"] == int(rows.sum())
        assert by_hour[int(hour)]["rmse"] == pytest.approx(np.sqrt(np.mean(error[rows] ** 2)), rel=1e-6)
    bins = result["slices"]["distance_km (quantile bins)"]
    assert sum(row["rows"] for row in bins) == result["rows"] and 2 <= len(bins) <= 4
    from mlengine.components.evaluate.report import render_evaluation_html, summary_of

    page = render_evaluation_html(result)
    assert page.count("data:image/png;base64,") == 2
    assert 'alt="predicted vs actual"' in page and 'alt="residuals"' in page
    assert "plot_sample" not in summary_of(result) and json.dumps(summary_of(result))


def test_cluster_baseline_is_the_inference_services_storage_uri(tiny, tmp_path):
    """mode=cluster without a URI: the InferenceService named like the spec is read for its storageUri."""
    from mlengine.components.evaluate.executor import served_model_dir
    from mlengine.constants import K8S_NAMESPACE, SPEC_FILE
    from tests.k8s_fake import FakeKubeAPI

    _, model_dir = tiny
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "nyc-taxi-fare", "namespace": K8S_NAMESPACE},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": str(model_dir)}}}}
    with FakeKubeAPI() as api:
        assert served_model_dir(baseline_uri="", mode="cluster", model_name="", namespace=None, scratch=tmp_path,
                                spec_file=model_dir / SPEC_FILE, api=api.custom_objects_api()) == (None, "")
        api.put(isvc, "inferenceservices")
        found = served_model_dir(baseline_uri="", mode="cluster", model_name="", namespace=None, scratch=tmp_path,
                                 spec_file=model_dir / SPEC_FILE, api=api.custom_objects_api())
    assert found == (str(model_dir), str(model_dir))
    # locally the pipeline passes the directory itself; nothing is looked up
    assert served_model_dir(baseline_uri="", mode="local", model_name="", namespace=None, scratch=tmp_path,
                            spec_file=model_dir / SPEC_FILE) == (None, "")


def test_a_model_that_loses_to_the_benchmark_is_said_to_be_worse_in_plain_words():
    from mlengine.components.evaluate.executor import blessing

    verdict = blessing(rmse=1.177, benchmark_rmse=1.0, margin=0.05, baseline_rmse=None, tolerance=0.01)
    assert verdict["reasons"][0] == ("RMSE 1.177 is 17.7% worse than the benchmark's 1 "
                                     "(needed: at least 5% better, RMSE <= 0.95): fails")
    assert not verdict["blessed"] and "-" not in verdict["reasons"][0].split("%")[0]  # never "-17.7% better"
