"""A real public dataset with only a spec: default `mlengine run` is blessed and near a default HistGradientBoosting.

The diamonds data ships inside the plotnine wheel (a dev dependency; nothing is downloaded), its
spec is mlengine/data/diamonds_spec.yaml. `make bench` (bench/bench_real_dataset.py) runs the same
comparison plus a second run on the same output folder.
"""

import pytest

from bench.bench_real_dataset import run_and_compare

pytestmark = pytest.mark.e2e


def test_diamonds_default_run_is_blessed_and_within_10_percent_of_hist_gradient_boosting(tmp_path):
    result = run_and_compare(tmp_path / "out", "diamonds")
    assert result["blessed"] is True, result["blessing_reasons"]
    assert result["rmse"] < result["benchmark_rmse"] * 0.95
    assert result["rmse"] <= 1.10 * result["hist_gradient_boosting_rmse"], result
    assert result["baseline_rmse"] is None  # the first run in this folder: nothing served yet
