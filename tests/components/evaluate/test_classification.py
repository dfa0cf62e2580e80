"""Evaluation of classifiers: the metrics against scikit-learn, the benchmark, the blessing, the executor,
the reports and the Kubeflow ClassificationMetrics artifact."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from mlengine.components.evaluate.class_benchmark import benchmark_probabilities, fit_class_benchmark
from mlengine.components.evaluate.class_metrics import ClassScores, class_ids
from mlengine.components.evaluate.executor import blessing, run, score
from mlengine.components.evaluate.report import render_evaluation_html, render_evaluation_markdown, summary_of
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.errors import DataError, MlengineError
from tests.classification_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC, class_probabilities, write_fake_classifier

COLOURS = np.array(["red", "blue", "green"], dtype=object)


def _random_case(rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities that carry some signal about them (not extreme, no exact ties)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    logits = rng.normal(size=(rows, classes)) + 1.5 * np.eye(classes)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities


def _accumulate(labels, probabilities, batch: int = 97) -> ClassScores:
    scores = ClassScores(probabilities.shape[1])
    for start in range(0, len(labels), batch):  # streamed in uneven batches, as the executor does
        scores.update(probabilities[start:start + batch], labels[start:start + batch])
    return scores


# --- metrics against scikit-learn --------------------------------------------------------------------
@pytest.mark.parametrize("classes", [2, 4])
def test_metrics_match_scikit_learn(classes):
    labels, probabilities = _random_case(3000, classes, seed=classes)
    scores = _accumulate(labels, probabilities)
    names = [f"c{k}" for k in range(classes)]
    assert scores.rows == 3000
    assert scores.log_loss == pytest.approx(skm.log_loss(labels, probabilities), rel=1e-9)
    predicted = probabilities.argmax(axis=1)
    assert scores.accuracy == pytest.approx(skm.accuracy_score(labels, predicted))
    assert scores.confusion.tolist() == skm.confusion_matrix(labels, predicted, labels=range(classes)).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, predicted, labels=range(classes),
                                                                         zero_division=0)
    for k, row in enumerate(scores.per_class(names)):
        assert row["class"] == names[k] and row["support"] == support[k]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision[k], recall[k], f1[k]))
    if classes == 2:
        assert scores.roc_auc == pytest.approx(skm.roc_auc_score(labels, probabilities[:, 1]), abs=1e-5)
        assert scores.average_precision(1) == pytest.approx(
            skm.average_precision_score(labels, probabilities[:, 1]), abs=1e-4)
    else:
        assert scores.roc_auc == pytest.approx(skm.roc_auc_score(labels, probabilities, multi_class="ovr",
                                                                 average="macro"), abs=1e-5)
    for k in range(classes):
        assert scores.class_auc(k) == pytest.approx(skm.roc_auc_score(labels == k, probabilities[:, k]), abs=1e-5)


def test_tied_scores_count_half_as_scikit_learn_does():
    labels = np.array([0, 1, 0, 1, 1, 0])
    positive = np.array([0.2, 0.2, 0.7, 0.7, 0.9, 0.1])
    probabilities = np.stack([1 - positive, positive], axis=1)
    scores = _accumulate(labels, probabilities, batch=4)
    assert scores.roc_auc == pytest.approx(skm.roc_auc_score(labels, positive))
    assert scores.average_precision(1) == pytest.approx(skm.average_precision_score(labels, positive))


def test_curves_run_from_corner_to_corner_and_calibration_counts_every_row():
    labels, probabilities = _random_case(2000, 2, seed=11)
    scores = _accumulate(labels, probabilities)
    roc = scores.roc_curve(1)
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and roc["fpr"][-1] == roc["tpr"][-1] == pytest.approx(1.0)
    assert len(roc["fpr"]) == len(roc["thresholds"]) <= 200 and roc["thresholds"] == sorted(roc["thresholds"])[::-1]
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    # the trapezoid under the kept points is close to the AUC
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(scores.roc_auc, abs=0.01)
    pr = scores.pr_curve(1)
    assert pr["recall"][-1] == pytest.approx(1.0) and pr["precision"][-1] == pytest.approx(labels.mean())
    calibration = scores.calibration(1)
    assert sum(calibration["rows"]) == 2000
    positive = probabilities[:, 1]
    first = positive < 0.1  # the first reliability bin, computed directly
    assert calibration["observed"][0] == pytest.approx(labels[first].mean())
    assert calibration["predicted"][0] == pytest.approx(positive[first].mean(), abs=1e-4)
    # one class only: no ROC curve, no AUC (nothing to rank)
    single = _accumulate(np.ones(50, dtype=int), probabilities[:50])
    assert single.roc_auc is None and single.roc_curve(1)["fpr"] == []


def test_class_ids_map_the_vocabulary_and_name_a_stranger():
    assert class_ids(np.array(["b", "a", "b"], dtype=object), ("a", "b")).tolist() == [1, 0, 1]
    assert class_ids(np.array([1, 0, 1]), (0, 1)).tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"value 'c' is not in the label vocabulary \['a', 'b'\]"):
        class_ids(np.array(["a", "c"], dtype=object), ("a", "b"), where="test")


# --- the benchmark ---------------------------------------------------------------------------------------
def _flowers(rows: int, seed: int, centres=(1.0, 3.0, 5.0), spread=1.2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    species = rng.choice(3, size=rows, p=[0.5, 0.3, 0.2])
    petal = np.asarray(centres)[species] + rng.normal(scale=spread, size=rows)
    return {"petal_length": petal, "colour": COLOURS[rng.integers(0, 3, rows)],
            "species": np.array(IRIS_LIKE_SPEC["label"]["vocabulary"], dtype=object)[species]}


def _write_split(directory, columns: dict[str, np.ndarray], parts: int = 2) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(columns.values())))
    for part, chunk in enumerate(np.array_split(np.arange(rows), parts)):
        table = pa.table({name: pa.array(values[chunk].tolist()) for name, values in columns.items()})
        pq.write_table(table, directory / f"part-{part:05d}.parquet")
    return str(directory)


def test_class_prior_benchmark_is_the_training_share(tmp_path):
    columns = _flowers(1000, seed=1)
    train = _write_split(tmp_path / "train", columns, parts=3)
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    bench = fit_class_benchmark(train, spec, batch_rows=128)
    shares = [float(np.mean(columns["species"] == name)) for name in spec.classes]
    assert bench["kind"] == "class prior" and bench["feature"] is None and bench["rows"] == 1000
    assert bench["prior"] == pytest.approx(shares)
    assert benchmark_probabilities(bench, spec, {}, 4).tolist() == [pytest.approx(shares)] * 4


@pytest.mark.parametrize("raw", [IRIS_LIKE_SPEC, BINARY_SPEC], ids=["multiclass", "binary"])
def test_one_feature_logistic_benchmark_matches_scikit_learn(tmp_path, raw):
    spec = spec_from_dict({**raw, "benchmark_feature": "petal_length"})
    columns = _flowers(3000, seed=2)
    if spec.task == "binary":  # sold = 1 for the two larger species
        columns["sold"] = (columns.pop("species") != "setosa").astype(np.int64)
    train = _write_split(tmp_path / "train", columns, parts=3)
    bench = fit_class_benchmark(train, spec, batch_rows=500)
    assert bench["kind"] == "one-feature logistic regression" and bench["feature"] == "petal_length"
    label = columns[spec.label.name]
    reference = LogisticRegression(C=1e12, max_iter=1000, tol=1e-10).fit(columns["petal_length"][:, None], label)
    test = _flowers(200, seed=3)
    expected = reference.predict_proba(test["petal_length"][:, None])
    got = benchmark_probabilities(bench, spec, test, 200)
    assert got.shape == (200, spec.num_classes)
    np.testing.assert_allclose(got, expected, atol=1e-3)


# --- the blessing's words ---------------------------------------------------------------------------------
def test_log_loss_blessing_reasons():
    verdict = blessing(0.30, 0.95, 0.05, None, 0.01, metric="log loss")
    assert verdict["reasons"][0] == ("log loss 0.3 is 68.4% better than the benchmark's 0.95 "
                                     "(needed: at least 5% better, log loss <= 0.9025): passes")
    assert verdict["reasons"][1] == "no baseline comparison: no model is in service yet" and verdict["blessed"]
    worse = blessing(0.33, 0.95, 0.05, 0.30, 0.01, metric="log loss")
    assert worse["reasons"][1] == ("log loss 0.33 is 10.0% worse than the served model's 0.3 "
                                   "(allowed: at most 1% worse): fails")
    assert worse["blessed"] is False and worse["reasons"][-1] == "not blessed"
    assert blessing(0.93, 0.95, 0.05, None, 0.01, metric="log loss")["reasons"][0].endswith(": fails")


# --- the executor on a fake classifier --------------------------------------------------------------------
@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    model_dir = write_fake_classifier(root / "model", centres=[1.0, 3.0, 5.0])
    train = _write_split(root / "train", _flowers(2000, seed=4))
    test_columns = _flowers(600, seed=5)
    test = _write_split(root / "test", test_columns)
    return root, model_dir, train, test, test_columns


def _expected(test_columns, centres=(1.0, 3.0, 5.0)):
    labels = class_ids(test_columns["species"], tuple(IRIS_LIKE_SPEC["label"]["vocabulary"]))
    probabilities = class_probabilities(test_columns["petal_length"], list(centres)).astype(np.float64)
    return labels, probabilities / probabilities.sum(axis=1, keepdims=True)


def test_executor_scores_a_classifier_like_scikit_learn(flowers):
    _, model_dir, train, test, test_columns = flowers
    result = score(str(model_dir), test, train_dir=train, batch_size=64)
    labels, probabilities = _expected(test_columns)
    assert result["task"] == "multiclass" and result["rows"] == 600
    assert result["classes"] == ["setosa", "versicolor", "virginica"]
    assert result["log_loss"] == pytest.approx(skm.log_loss(labels, probabilities), rel=1e-5)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, probabilities.argmax(axis=1)))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probabilities, multi_class="ovr"), abs=1e-4)
    assert result["pr_auc"] is None  # binary only
    assert result["confusion_matrix"] == skm.confusion_matrix(labels, probabilities.argmax(axis=1)).tolist()
    # the benchmark is the training prior, scored on the test rows
    train_species = pq.read_table(train).column("species").to_numpy(zero_copy_only=False)
    prior = np.array([np.mean(train_species == c) for c in result["classes"]])
    assert result["benchmark_kind"] == "class prior"
    assert result["benchmark_log_loss"] == pytest.approx(skm.log_loss(labels, np.tile(prior, (600, 1))), rel=1e-9)
    assert result["blessed"] is True and result["log_loss"] < result["benchmark_log_loss"]
    assert result["reasons"][0].startswith("log loss ") and result["reasons"][0].endswith(": passes")
    # per slice: each colour's rows scored alone
    by_colour = {row["value"]: row for row in result["slices"]["colour"]}
    assert sorted(by_colour) == ["blue", "green", "red"]
    for colour, row in by_colour.items():
        rows = test_columns["colour"] == colour
        assert row["rows"] == int(rows.sum())
        assert row["log_loss"] == pytest.approx(skm.log_loss(labels[rows], probabilities[rows], labels=[0, 1, 2]),
                                                rel=1e-5)
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(labels[rows], probabilities[rows].argmax(axis=1)))
    assert "plot_sample" not in summary_of(result) and json.dumps(summary_of(result))


def test_a_classifier_needs_its_training_split(flowers):
    _, model_dir, _, test, _ = flowers
    with pytest.raises(MlengineError, match="training split"):
        score(str(model_dir), test)


def test_baseline_rules_for_a_classifier(flowers, tmp_path):
    _, model_dir, train, test, test_columns = flowers
    same = score(str(model_dir), test, train_dir=train, baseline_dir=str(model_dir), tolerance=0.0)
    assert same["baseline_log_loss"] == pytest.approx(same["log_loss"]) and same["blessed"] is True
    # a served model calibrated to the data (spread 1.2: scale 2 * 1.2 ** 2) is better and blocks the blessing
    better = write_fake_classifier(tmp_path / "better", centres=[1.0, 3.0, 5.0], scale=2.88)
    versus = score(str(model_dir), test, train_dir=train, baseline_dir=str(better), tolerance=0.01)
    labels, _ = _expected(test_columns)
    from mlengine.components.shared.savedmodel import load_model_dir

    served = load_model_dir(str(better))(test_columns).astype(np.float64)
    expected = -np.mean(np.log(np.clip(served[np.arange(len(labels)), labels], 1e-15, 1.0)))
    assert versus["baseline_log_loss"] == pytest.approx(expected, rel=1e-9)
    assert versus["baseline_log_loss"] < versus["log_loss"]
    assert versus["blessed"] is False and versus["beats_benchmark"] is True
    assert versus["reasons"][1].startswith("log loss ") and versus["reasons"][1].endswith("worse): fails")
    assert all("baseline_log_loss" in row for row in versus["slices"]["colour"])
    # a served model of other classes cannot be compared: the rule passes and says why
    other = write_fake_classifier(tmp_path / "other", BINARY_SPEC)
    apart = score(str(model_dir), test, train_dir=train, baseline_dir=str(other))
    assert apart["baseline_log_loss"] is None
    assert apart["reasons"][1] == ("no baseline comparison: the served model predicts other classes ([0, 1]): "
                                   "not comparable")


def test_run_writes_the_reports_and_the_ui_metrics(flowers, tmp_path):
    _, model_dir, train, test, _ = flowers
    result = run(model_dir=str(model_dir), test_dir=test, train_dir=train, margin=0.05, baseline_model_uri="",
                 baseline_tolerance=0.01, model_name="", mode="local", report_md=tmp_path / "eval.md",
                 report_html=tmp_path / "eval.html", evaluation_json=tmp_path / "evaluation.json")
    assert result.blessed is True
    assert set(result.metrics) == {"log_loss", "accuracy", "roc_auc", "benchmark_log_loss", "benchmark_accuracy",
                                   "blessed", "test_rows"}
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["log_loss"] == pytest.approx(result.metrics["log_loss"]) and saved["task"] == "multiclass"
    ui = result.classification
    assert ui["categories"] == ["setosa", "versicolor", "virginica"] and ui["matrix"] == saved["confusion_matrix"]
    assert len(ui["fpr"]) == len(ui["tpr"]) == len(ui["thresholds"]) > 2
    page = (tmp_path / "eval.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    for alt in ("ROC curve", "precision-recall curve", "reliability (calibration) plot", "confusion matrix"):
        assert f'alt="{alt}"' in page
    markdown = (tmp_path / "eval.md").read_text()
    assert "**BLESSED**" in markdown and "the class prior" in markdown and "## Confusion matrix" in markdown
    assert "| true setosa |" in markdown and "## By colour" in markdown

    # the KFP artifact: the confusion matrix and the ROC curve land in the metadata the UI reads
    from kfp.dsl import ClassificationMetrics, Metrics

    from mlengine.components.shared.reports import log_classification_metrics

    artifact = ClassificationMetrics(name="classification_metrics", uri=str(tmp_path / "cm"))
    artifact.path = str(tmp_path / "cm")
    log_classification_metrics(artifact, ui)
    assert artifact.metadata["confusionMatrix"]["annotationSpecs"] == [{"displayName": c} for c in ui["categories"]]
    assert [row["row"] for row in artifact.metadata["confusionMatrix"]["rows"]] == ui["matrix"]
    assert len(artifact.metadata["confidenceMetrics"]) == len(ui["fpr"])
    assert json.loads((tmp_path / "cm").read_text()) == json.loads(json.dumps(artifact.metadata, sort_keys=True))
    empty = Metrics(name="m", uri=str(tmp_path / "regression-cm"))
    empty.path = str(tmp_path / "regression-cm")
    log_classification_metrics(empty, None)  # a regressor: nothing logged, the file exists
    assert json.loads((tmp_path / "regression-cm").read_text()) == {}


def test_binary_report_has_pr_auc_and_every_plot(tmp_path):
    model_dir = write_fake_classifier(tmp_path / "model", BINARY_SPEC, centres=[1.0, 4.0])
    rng = np.random.default_rng(8)
    sold = rng.integers(0, 2, 400)
    columns = {"petal_length": np.where(sold == 1, 4.0, 1.0) + rng.normal(scale=1.5, size=400),
               "colour": COLOURS[rng.integers(0, 3, 400)], "sold": sold}
    train = _write_split(tmp_path / "train", columns)
    test = _write_split(tmp_path / "test", {k: v[:200] for k, v in columns.items()})
    result = score(str(model_dir), test, train_dir=train)
    probabilities = class_probabilities(columns["petal_length"][:200], [1.0, 4.0]).astype(np.float64)
    assert result["task"] == "binary"
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(sold[:200], probabilities[:, 1]), abs=1e-4)
    assert result["pr_auc"] == pytest.approx(skm.average_precision_score(sold[:200], probabilities[:, 1]), abs=1e-3)
    page = render_evaluation_html(result)
    assert page.count("data:image/png;base64,") == 4 and "PR AUC" in page
    assert "PR AUC" in render_evaluation_markdown(result)
    # a test split of one class: no ROC, PR or calibration to draw against the rest; said, not drawn empty
    one = _write_split(tmp_path / "one", {k: v[sold == 1][:50] for k, v in columns.items()})
    lonely = score(str(model_dir), one, train_dir=train)
    assert lonely["roc_auc"] is None
    page = render_evaluation_html(lonely)
    assert "No ROC curve" in page and page.count("data:image/png;base64,") == 3  # PR, calibration, confusion


@pytest.mark.parametrize("feature", ["petal_length", "petal_area"])
def test_the_benchmark_reads_only_what_its_feature_needs_in_a_spec_with_derived_features(tmp_path, feature):
    """A raw benchmark feature beside derived ones (their inputs unread), or a derived one itself."""
    raw = {**IRIS_LIKE_SPEC, "benchmark_feature": feature,
           "columns": [*IRIS_LIKE_SPEC["columns"], {"name": "petal_width", "type": "float", "range": [0, 10]},
                       {"name": "sepal_length", "type": "float", "range": [0, 10]}],
           "derived": [{"name": "petal_area", "op": "product", "inputs": ["petal_length", "petal_width"]},
                       {"name": "log_sepal", "op": "log1p", "inputs": ["sepal_length"]}],
           "features": {"numeric": ["petal_length", "petal_area", "log_sepal"], "categorical": ["colour"]}}
    spec = spec_from_dict(raw)
    columns = _flowers(2000, seed=9)
    rng = np.random.default_rng(10)
    columns["petal_width"] = rng.uniform(0.5, 1.5, 2000)
    columns["sepal_length"] = rng.uniform(4, 8, 2000)
    train = _write_split(tmp_path / "train", columns)
    bench = fit_class_benchmark(train, spec)
    x = columns["petal_length"] * (columns["petal_width"] if feature == "petal_area" else 1.0)
    reference = LogisticRegression(C=1e12, max_iter=1000, tol=1e-10).fit(x[:, None], columns["species"])
    got = benchmark_probabilities(bench, spec, columns, 2000)
    np.testing.assert_allclose(got, reference.predict_proba(x[:, None]), atol=1e-3)
