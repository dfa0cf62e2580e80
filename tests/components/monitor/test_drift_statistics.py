"""Direct tests of the drift statistics (components/monitor/drift.py): no files, no serving log."""

import math

import numpy as np
import pytest

from mlengine.components.monitor import drift
from mlengine.components.monitor.drift import (
    STATUS_DRIFT,
    STATUS_NO_DATA,
    STATUS_NOT_ENOUGH_DATA,
    STATUS_OK,
    chi2_quantile,
    compare_column,
    jensen_shannon_distance,
    json_safe,
    poisson_quantile,
    population_stability_index,
)
from mlengine.components.shared.featurespec import spec_from_dict

THRESHOLDS = {"mean_shift": 0.25, "variance_ratio_high": 1.5, "variance_ratio_low": 0.67, "psi": 0.2,
              "js_distance": None, "out_of_range": 0.01, "min_rows": 100, "significance": 0.001}
SPEC = spec_from_dict({
    "name": "cities", "label": {"name": "y", "type": "float"},
    "columns": [{"name": "city", "type": "string"}, {"name": "x", "type": "float"}],
    "features": {"categorical": ["city"], "numeric": ["x"]},
})


def test_distance_functions():
    p = np.array([10, 20, 30, 40])
    assert population_stability_index(p, p) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(p, 30 * p) < 1e-3  # counts are normalised (the pseudocount aside)
    q = np.array([40, 30, 20, 10])
    assert population_stability_index(p, q) == pytest.approx(population_stability_index(q, p))
    assert population_stability_index(p, q) > 0.5
    assert math.isfinite(population_stability_index([5, 5, 0], [0, 5, 5]))  # empty bins stay finite
    assert population_stability_index([0, 0], [0, 0]) == 0.0
    assert jensen_shannon_distance(p, p) == pytest.approx(0.0, abs=1e-9)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < jensen_shannon_distance(p, q) < 1
    assert chi2_quantile(0.999, 20) == pytest.approx(45.315, rel=0.01)
    assert chi2_quantile(0.95, 10) == pytest.approx(18.307, rel=0.01)
    assert chi2_quantile(0.95, 0) == 0.0
    assert poisson_quantile(0.05, 1.0) == 3  # P(X > 2) = 0.080, P(X > 3) = 0.019
    assert poisson_quantile(0.5, 0.0) == 0


def test_normal_quantile_is_two_sided():
    assert drift._normal_quantile(0.05) == pytest.approx(1.95996, rel=1e-4)


def test_merge_bins_joins_light_bins_and_a_light_tail():
    edges, groups = drift._merge_bins([0, 1, 2, 3, 4, 5], [50, 1, 1, 47, 1], min_fraction=0.05)
    assert groups == [[0], [1, 2, 3, 4]]  # 1 + 1 + 47 reaches 5%; the last light bin joins it
    assert edges == [0, 1, 5]
    assert drift._merge_bins([0, 1, 2], [0, 0], 0.5) == ([0, 2], [[0, 1]])


def test_float_columns_are_compared_in_float32():
    edge = 0.1  # not exact in float32: the training extreme must round like the served value
    assert drift._reference("float", edge) == float(np.float32(edge))
    assert drift._seen("float", [edge])[0] == drift._reference("float", edge)
    assert drift._reference("int", 3) == 3.0 and drift._reference("float", None) is None


def test_histogram_distribution_adds_under_and_overflow_bins():
    train = {"histogram": {"edges": [0.0, 1.0, 2.0], "counts": [60, 40], "underflow": 3, "overflow": 2}}
    dist = drift._histogram_distribution(train, np.array([-1.0, 0.5, 1.5, 1.5, 9.0]))
    assert dist["train_counts"] == [3, 60, 40, 2]
    assert dist["serving_counts"] == [1, 1, 2, 1]
    assert dist["train_rows"] == 105 and len(dist["labels"]) == 4
    assert drift._histogram_distribution({"histogram": {"edges": [0.0], "counts": []}}, np.zeros(3)) is None


def test_category_distribution_counts_unknown_values_as_other():
    train = {"top_values": [{"value": "a", "count": 7}, {"value": "b", "count": 3}], "count": 10, "distinct": 2}
    dist = drift._category_distribution(train, np.array(["a", "c", "c", "b"]))
    assert dist["labels"] == ["a", "b", "(other)"]
    assert dist["serving_counts"] == [1, 1, 2] and dist["train_counts"] == [7, 3, 0]
    assert dist["train_complete"] is True


def _numeric_train(rng):
    sample = rng.normal(0.0, 1.0, 20_000)
    counts, edges = np.histogram(sample, bins=20)
    return {"count": len(sample), "mean": float(sample.mean()), "std": float(sample.std()),
            "min": float(sample.min()), "max": float(sample.max()),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}


def test_compare_column_status_from_the_sample():
    rng = np.random.default_rng(7)
    train = _numeric_train(rng)
    same = compare_column(SPEC, "x", train, rng.normal(0.0, 1.0, 2000), THRESHOLDS, 1e-4)
    assert same["status"] == STATUS_OK and same["flags"] == []
    shifted = compare_column(SPEC, "x", train, rng.normal(1.0, 1.0, 2000), THRESHOLDS, 1e-4)
    assert shifted["status"] == STATUS_DRIFT and {"mean_shift", "psi"} <= set(shifted["flags"])
    assert compare_column(SPEC, "x", train, np.zeros(5), THRESHOLDS, 1e-4)["status"] == STATUS_NOT_ENOUGH_DATA
    assert compare_column(SPEC, "x", None, np.zeros(500), THRESHOLDS, 1e-4)["status"] == STATUS_NO_DATA


def test_json_safe_turns_numpy_and_non_finite_numbers_into_json():
    assert json_safe({"a": [np.float32(1.5), np.int64(2), math.inf], "b": (math.nan,)}) == \
        {"a": [1.5, 2, None], "b": [None]}
