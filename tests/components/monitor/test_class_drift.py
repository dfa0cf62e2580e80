"""A classifier's predicted classes in the serving log against the training label's class counts.

The training statistics come from ingest's own accumulator over generated rows; the serving log
is written by the serving log writer with each row's predicted class, as the predictor writes it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlengine.components.ingest.statistics import StatisticsAccumulator, build_statistics
from mlengine.components.monitor.drift import STATUS_DRIFT, STATUS_NO_DATA, STATUS_OK, compare_classes
from mlengine.components.monitor.executor import (
    DEFAULT_THRESHOLDS,
    compare,
    metrics_summary,
    run,
    serving_class_counts,
    training_class_counts,
)
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.components.shared.serving_log import ServingInputLog
from mlengine.constants import SPEC_FILE, STATISTICS_FILE
from tests.classification_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC

SPEC = spec_from_dict(IRIS_LIKE_SPEC)
CLASSES = list(SPEC.classes)
TRAIN_SHARES = [0.5, 0.3, 0.2]
TRAIN_ROWS = 4000
SERVING_ROWS = 1500


def rows(count: int, shares: list[float], seed: int) -> dict[str, np.ndarray]:
    """Raw columns (features and the label) where the label follows ``shares``."""
    rng = np.random.default_rng(seed)
    return {"petal_length": rng.uniform(0, 10, count).astype(np.float32),
            "colour": rng.choice(["red", "blue"], count).astype(object),
            "species": rng.choice(CLASSES, count, p=shares).astype(object)}


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    """statistics.json (train scope) and feature_spec.yaml as ingest writes them."""
    folder = tmp_path_factory.mktemp("class-stats")
    columns = rows(TRAIN_ROWS, TRAIN_SHARES, seed=1)
    accumulator = StatisticsAccumulator(SPEC)
    missing = {name: np.zeros(TRAIN_ROWS, bool) for name in columns}
    accumulator.update(columns, missing, np.random.default_rng(2).integers(0, 2**63, TRAIN_ROWS, dtype=np.uint64))
    doc = build_statistics(SPEC, {"train": accumulator}, {})
    (folder / STATISTICS_FILE).write_text(json.dumps(doc))
    SPEC.save(folder / SPEC_FILE)
    return folder


def write_log(folder, shares: list[float], seed: int) -> None:
    """A serving log whose predicted classes follow ``shares`` (the features do not drift)."""
    columns = rows(SERVING_ROWS, TRAIN_SHARES, seed=seed)
    predicted = np.random.default_rng(seed + 1).choice(CLASSES, SERVING_ROWS, p=shares).tolist()
    with ServingInputLog(folder) as log:
        features = {"petal_length": columns["petal_length"], "colour": columns["colour"]}
        assert log.log_columns(features, SERVING_ROWS,
                               predictions={"label": predicted, "probability": [0.9] * SERVING_ROWS}) == SERVING_ROWS


def test_training_class_counts_come_from_the_label_statistics(stats_dir):
    doc = json.loads((stats_dir / STATISTICS_FILE).read_text())
    counts = training_class_counts(doc, SPEC)
    assert set(counts) == set(CLASSES) and sum(counts.values()) == TRAIN_ROWS
    assert counts["setosa"] > counts["versicolor"] > counts["virginica"]
    # explicit class counts win over the label column's top values, in any of the agreed places
    explicit = {"setosa": 1, "versicolor": 2, "virginica": 3}
    for placed in ({**doc, "label": {"name": "species", "class_counts": explicit}},
                   {**doc, "train": {**doc["train"], "label": {"class_counts": explicit}}}):
        assert training_class_counts(placed, SPEC) == explicit
    assert training_class_counts({"train": {"rows": 5, "columns": {}}}, SPEC) is None


def test_an_int_label_without_top_values_is_counted_from_its_one_integer_bins():
    spec = spec_from_dict(BINARY_SPEC)
    accumulator = StatisticsAccumulator(spec)
    rng = np.random.default_rng(4)
    columns = {"petal_length": rng.uniform(0, 10, 3000).astype(np.float32),
               "colour": rng.choice(["red", "blue"], 3000).astype(object),
               "sold": rng.choice([0, 1], 3000, p=[0.7, 0.3]).astype(np.int64)}
    accumulator.update(columns, {name: np.zeros(3000, bool) for name in columns},
                       rng.integers(0, 2**63, 3000, dtype=np.uint64))
    doc = build_statistics(spec, {"train": accumulator}, {})
    label = doc["train"]["columns"]["sold"]
    counts = training_class_counts(doc, spec)
    if "top_values" not in label:  # an int label is numeric in ingest's statistics: its histogram counts
        assert label["histogram"]["integer"]
    assert counts == {0: int((columns["sold"] == 0).sum()), 1: int((columns["sold"] == 1).sum())}


def test_class_distance_fires_on_a_shift_and_not_without_one():
    train = {"setosa": 5000, "versicolor": 3000, "virginica": 2000}
    alpha = DEFAULT_THRESHOLDS["significance"] / 9
    same = compare_classes(train, {"setosa": 760, "versicolor": 440, "virginica": 300}, CLASSES,
                           DEFAULT_THRESHOLDS, alpha)
    assert same["status"] == STATUS_OK and same["flags"] == [] and same["psi"] < 0.01
    shifted = compare_classes(train, {"setosa": 200, "versicolor": 300, "virginica": 1000}, CLASSES,
                              DEFAULT_THRESHOLDS, alpha)
    assert shifted["status"] == STATUS_DRIFT and "psi" in shifted["flags"] and shifted["psi"] > shifted["psi_limit"]
    assert shifted["js_distance"] > same["js_distance"]
    # int classes match JSON's string keys; an unknown class goes to "(other)"
    ints = compare_classes({"0": 600, "1": 400}, {0: 300, 1: 200, 7: 1}, [0, 1], DEFAULT_THRESHOLDS, alpha)
    assert ints["distribution"]["labels"] == ["0", "1", "(other)"]
    assert ints["distribution"]["serving_counts"] == [300, 200, 1]
    assert compare_classes(None, {"setosa": 5}, CLASSES, DEFAULT_THRESHOLDS, alpha)["status"] == STATUS_NO_DATA


@pytest.mark.parametrize(("shares", "drift"), [(TRAIN_SHARES, False), ([0.1, 0.2, 0.7], True)],
                         ids=["unshifted", "shifted"])
def test_monitor_reports_the_predicted_class_distribution(stats_dir, tmp_path, shares, drift):
    write_log(tmp_path / "log", shares, seed=40)
    result = run(stats_dir, tmp_path / "log", tmp_path / "out")
    classes = result.drift["predictions"]
    assert classes["serving_count"] == SERVING_ROWS and classes["training_count"] == TRAIN_ROWS
    assert classes["distribution"]["labels"] == CLASSES
    assert (classes["status"] == STATUS_DRIFT) is drift
    assert result.drift_detected is drift and result.columns_drifted == []  # the features did not move
    assert ("predicted classes" in result.message) is drift
    assert result.metrics["predicted_classes_drift"] == int(drift)
    html = (tmp_path / "out" / "drift_report.html").read_text()
    assert "Predicted classes vs training labels" in html and html.count("<img") == 3  # 2 columns + classes
    markdown = (tmp_path / "out" / "drift_report.md").read_text()
    assert "| setosa |" in markdown
    saved = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert saved["predictions"]["status"] == classes["status"]


def test_regression_results_have_no_class_section(stats_dir):
    spec = spec_from_dict({**IRIS_LIKE_SPEC, "label": {"name": "species", "type": "float"}})
    doc = json.loads((stats_dir / STATISTICS_FILE).read_text())
    columns = rows(200, TRAIN_SHARES, seed=5)
    result = compare(doc, {"petal_length": columns["petal_length"], "colour": columns["colour"]}, spec)
    assert "predictions" not in result and "predicted_classes_drift" not in metrics_summary(result)


def test_serving_class_counts_skip_lines_without_a_class():
    predictions = [{"label": "a", "probability": 0.9}, None, {"label": "a"}, {"label": 1}, {"label": True}, {}]
    assert serving_class_counts(predictions) == {"a": 2, 1: 1}
    assert spec_from_dict(BINARY_SPEC).classes == (0, 1)
