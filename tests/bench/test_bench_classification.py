"""The classification datasets shipped in wheels and the scikit-learn side of bench/bench_classification.py."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn import metrics

from bench.bench_classification import compare, figures, headline, sklearn_references
from mlengine.components.shared.featurespec import load_spec
from mlengine.datasets import ADULT_COLUMNS, dataset_csv, dataset_spec, package_file
from mlengine.errors import MlengineError


def test_adult_is_prepared_once_with_a_header_and_without_the_padding(tmp_path):
    path = dataset_csv("adult", tmp_path)
    assert path == tmp_path / "adult.csv" and package_file("adult").name == "adult.data"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    assert header == [c for c in ADULT_COLUMNS if c != "fnlwgt"]
    assert len(body) == 32561 and all(len(row) == len(header) for row in body)
    assert body[0] == ["39", "State-gov", "Bachelors", "13", "Never-married", "Adm-clerical", "Not-in-family",
                       "White", "Male", "2174", "0", "40", "United-States", "<=50K"]
    assert {row[-1] for row in body} == {"<=50K", ">50K"}
    assert not any(cell != cell.strip() for row in body[:500] for cell in row)
    written = path.stat().st_mtime_ns
    assert dataset_csv("adult", tmp_path) == path and path.stat().st_mtime_ns == written  # not rewritten


def test_the_classification_specs_name_their_task_and_classes():
    penguins, adult = load_spec(dataset_spec("penguins")), load_spec(dataset_spec("adult"))
    assert (penguins.task, penguins.classes) == ("multiclass", ("Adelie", "Chinstrap", "Gentoo"))
    assert (adult.task, adult.classes) == ("binary", ("<=50K", ">50K"))
    for spec in (penguins, adult):
        assert [c.name for c in spec.columns if c.type == "string"], "string categorical columns"
        assert spec.benchmark_feature in spec.numeric
    assert dataset_csv("penguins").name == "penguins.csv"  # used in place, inside the plotnine wheel
    with pytest.raises(MlengineError, match="unknown dataset 'iris'"):
        dataset_csv("iris")


@pytest.fixture(scope="module")
def penguin_splits(tmp_path_factory):
    from mlengine.components.ingest.executor import run

    root = tmp_path_factory.mktemp("penguins")
    out = {split: str(root / split) for split in ("train", "eval", "test")}
    result = run(str(dataset_csv("penguins")), load_spec(dataset_spec("penguins")), out, str(root / "rejects"),
                 str(root / "statistics"))
    assert result.rows_rejected == 2  # the two penguins without measurements
    return root


def test_references_score_the_same_test_split(penguin_splits):
    spec = load_spec(dataset_spec("penguins"))
    references = sklearn_references(penguin_splits / "train", penguin_splits / "test", spec)
    assert set(references) == {"hist_gradient_boosting", "logistic_regression", "class_prior"}
    for name in ("hist_gradient_boosting", "logistic_regression"):  # the species are well separated
        assert references[name]["accuracy"] >= 0.9, name
        assert references[name]["log_loss"] < references["class_prior"]["log_loss"] / 3
    train = pq.read_table(penguin_splits / "train").column("species").to_pylist()
    test = pq.read_table(penguin_splits / "test").column("species").to_pylist()
    shares = [train.count(c) / len(train) for c in spec.classes]
    ids = [spec.classes.index(v) for v in test]
    expected = metrics.log_loss(ids, np.tile(shares, (len(test), 1)), labels=[0, 1, 2])
    assert references["class_prior"]["log_loss"] == pytest.approx(expected)


def test_figures_take_probabilities_in_vocabulary_order():
    classes = ["no", "yes"]
    result = figures(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array(["no", "yes", "yes"]), classes)
    assert result["accuracy"] == pytest.approx(2 / 3) and result["roc_auc"] == pytest.approx(1.0)
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))


def test_compare_checks_the_targets():
    references = {"hist_gradient_boosting": {"roc_auc": 0.926, "accuracy": 0.87, "log_loss": 0.27},
                  "logistic_regression": {"roc_auc": 0.906, "accuracy": 0.86, "log_loss": 0.31},
                  "class_prior": {"roc_auc": 0.5, "accuracy": 0.77, "log_loss": 0.53}}
    assert headline("binary") == "roc_auc" and headline("multiclass") == "accuracy"
    close = compare({"roc_auc": 0.915, "accuracy": 0.86, "log_loss": 0.30}, references, "binary", blessed=False)
    assert close["passed"] and close["better_reference"] == "hist_gradient_boosting"
    assert close["ratio"] == pytest.approx(0.915 / 0.926) and close["difference"] == pytest.approx(-0.011)
    far = compare({"roc_auc": 0.90, "accuracy": 0.85, "log_loss": 0.33}, references, "binary", blessed=True)
    assert not far["passed"] and not far["checks"]["within_tolerance_of_the_better_reference"]
    unblessed = compare({"roc_auc": 0.93, "accuracy": 0.87, "log_loss": 0.26}, references, "multiclass", blessed=False)
    assert unblessed["metric"] == "accuracy" and unblessed["checks"]["blessed"] is False and not unblessed["passed"]
    worse_than_prior = compare({"roc_auc": 0.93, "accuracy": 0.87, "log_loss": 0.6}, references, "binary", True)
    assert not worse_than_prior["checks"]["log_loss_below_the_class_prior"]
