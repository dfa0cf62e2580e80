"""Evaluation of a classifier on the test split: the figures, the benchmark, the baseline, the slices.

The test split streams batch by batch through the SavedModel's ``serving_default`` (its
``probabilities`` output, vocabulary order), as serving computes it. The benchmark (the class
prior, or a one-feature logistic regression: ``class_benchmark.py``) and the served model are
scored on the same rows; the blessing compares log loss, the figure every classifier's
probabilities answer for: the model must beat the benchmark's by ``margin`` and be at most
``tolerance`` worse than the served model's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mlengine.components.evaluate.class_benchmark import benchmark_probabilities, fit_class_benchmark
from mlengine.components.evaluate.class_metrics import SLICE_BINS, ClassScores, class_ids, summary
from mlengine.components.evaluate.executor import blessing, load_baseline
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.parquet import iter_record_batches, list_parquet_files
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.constants import SPEC_FILE
from mlengine.errors import MlengineError

log = logging.getLogger(__name__)
MAX_SLICE_VALUES = 50  # values of one categorical shown (the most frequent)


def load_class_baseline(baseline_dir: str | None, spec) -> tuple[object | None, str]:
    """The served classifier, or (None, why it cannot be compared) in plain words."""
    runner, why = load_baseline(baseline_dir, spec)
    if runner is not None and (runner.spec.task != spec.task or list(runner.spec.classes) != list(spec.classes)):
        served = list(runner.spec.classes) or runner.spec.task
        return None, f"the served model predicts other classes ({served}): not comparable"
    return runner, why


class _Slice:
    """The model's (and the baseline's) figures for each value of one categorical column."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.model: dict = {}
        self.baseline: dict = {}

    def update(self, keys: np.ndarray, probabilities: np.ndarray, ids: np.ndarray, baseline=None) -> None:
        keys = np.asarray(keys)
        for key in np.unique(keys):
            rows = keys == key
            name = key.item() if hasattr(key, "item") else key
            scores = self.model.setdefault(name, ClassScores(self.num_classes, SLICE_BINS))
            scores.update(probabilities[rows], ids[rows])
            if baseline is not None:  # one bin: only the log loss is read
                self.baseline.setdefault(name, ClassScores(self.num_classes, 1)).update(baseline[rows], ids[rows])

    def rows(self, classes: list) -> list[dict]:
        ranked = sorted(self.model.items(), key=lambda item: -item[1].rows)[:MAX_SLICE_VALUES]
        out = []
        for key, scores in ranked:
            row = {"value": key, **summary(scores, classes)}
            if key in self.baseline:
                row["baseline_log_loss"] = self.baseline[key].log_loss
            out.append(row)
        return out


def score_classification(model_dir: str, test_dir: str, train_dir: str | None, *, margin: float,
                         baseline_dir: str | None = None, baseline_source: str = "", tolerance: float,
                         batch_size: int = 4096) -> dict:
    """Figures of the model, the benchmark and the baseline on the test split; the blessing and its reasons."""
    model = load_model_dir(model_dir)
    spec = load_spec(Path(model_dir) / SPEC_FILE)
    if not train_dir:
        raise MlengineError("the benchmark of a classifier is fitted on the training split: no training split given")
    classes = list(spec.classes)
    count = len(classes)
    bench = fit_class_benchmark(train_dir, spec)
    baseline, no_baseline_reason = load_class_baseline(baseline_dir, spec)
    model_scores, bench_scores, baseline_scores = ClassScores(count), ClassScores(count), ClassScores(count)
    categorical = [name for name in spec.categorical if spec.column(name).type in ("string", "int")]
    slices = {name: _Slice(count) for name in categorical}
    names = [*spec.column_names, spec.label.name]
    for index, (path, columns) in enumerate(iter_record_batches(list_parquet_files(test_dir), names,
                                                                batch_rows=batch_size)):
        ids = class_ids(columns[spec.label.name], classes, where=f"{path}: label {spec.label.name!r}")
        probabilities = np.asarray(model(columns), np.float64).reshape(len(ids), count)
        model_scores.update(probabilities, ids)
        bench_scores.update(benchmark_probabilities(bench, spec, columns, len(ids)), ids)
        served = np.asarray(baseline(columns), np.float64).reshape(len(ids), count) if baseline is not None else None
        if served is not None:
            baseline_scores.update(served, ids)
        for name in categorical:
            slices[name].update(columns[name], probabilities, ids, served)
        if index % 50 == 49:
            log.info(f"evaluate: {model_scores.rows:,} rows")
    if model_scores.rows == 0:
        raise MlengineError(f"{test_dir}: the test split has no rows")
    figures = summary(model_scores, classes)
    bench_figures = summary(bench_scores, classes)
    baseline_figures = summary(baseline_scores, classes) if baseline is not None else None
    baseline_log_loss = baseline_figures["log_loss"] if baseline_figures else None
    verdict = blessing(figures["log_loss"], bench_figures["log_loss"], margin, baseline_log_loss, tolerance,
                       no_baseline_reason, metric="log loss")
    log.info(f"evaluate: {model_scores.rows:,} rows, log_loss={figures['log_loss']:.4f}, "
             f"accuracy={figures['accuracy']:.4f}, benchmark_log_loss={bench_figures['log_loss']:.4f}"
             + (f", baseline_log_loss={baseline_log_loss:.4f}" if baseline_log_loss is not None else "")
             + f", blessed={verdict['blessed']}")
    for reason in verdict["reasons"]:
        log.info(f"evaluate: {reason}")
    return {
        "task": spec.task,
        "classes": classes,
        **figures,
        "per_class": model_scores.per_class(classes),
        "confusion_matrix": model_scores.confusion.tolist(),
        "benchmark_log_loss": bench_figures["log_loss"],
        "benchmark_accuracy": bench_figures["accuracy"],
        "benchmark_roc_auc": bench_figures["roc_auc"],
        "benchmark_kind": bench["kind"],
        "benchmark_feature": bench.get("feature"),
        "benchmark": bench,
        "margin": margin,
        "improvement": (1.0 - figures["log_loss"] / bench_figures["log_loss"]
                        if bench_figures["log_loss"] > 0 else None),
        "baseline_log_loss": baseline_log_loss,
        "baseline_accuracy": baseline_figures["accuracy"] if baseline_figures else None,
        "baseline_roc_auc": baseline_figures["roc_auc"] if baseline_figures else None,
        "baseline_model": str(baseline_source or baseline_dir or "") or None,
        "baseline_tolerance": tolerance,
        **verdict,
        "slices": {name: s.rows(classes) for name, s in slices.items()},
        "plot_sample": curves(model_scores, bench_scores, classes),
        "model_dir": str(model_dir),
        "test_dir": str(test_dir),
    }


def curves(model: ClassScores, bench: ClassScores, classes: list) -> dict:
    """What the plots and the Kubeflow UI draw: ROC, precision-recall and reliability curves."""
    shown = [1] if len(classes) == 2 else list(range(len(classes)))  # binary: the second class is "positive"
    return {
        "roc": {str(classes[k]): model.roc_curve(k) for k in shown},
        "benchmark_roc": bench.roc_curve(1) if len(classes) == 2 else None,
        "pr": {str(classes[k]): model.pr_curve(k) for k in shown},
        "positive_share": {str(classes[k]): float(model.positives[k].sum()) / model.rows for k in shown},
        "calibration": {str(classes[k]): model.calibration(k) for k in shown},
        # one ROC curve for the UI: the positive class, or every class's rows pooled (micro average)
        "ui_roc": model.roc_curve(1) if len(classes) == 2 else model.roc_curve(0, pooled=True),
    }


def ui_classification_metrics(result: dict) -> dict:
    """What the KFP ClassificationMetrics artifact carries: the confusion matrix and one ROC curve."""
    roc = result["plot_sample"]["ui_roc"]
    return {"categories": [str(c) for c in result["classes"]], "matrix": result["confusion_matrix"],
            "fpr": roc["fpr"], "tpr": roc["tpr"], "thresholds": roc["thresholds"]}
