"""summary.json and the closing table of `mlengine run` for a classifier: its test figures, not RMSE."""

from __future__ import annotations

from mlengine.pipelines.local_run import _classification_summary, format_summary_table

EVALUATION = {"task": "binary", "classes": ["<=50K", ">50K"], "log_loss": 0.3031, "accuracy": 0.8574,
              "roc_auc": 0.9101, "pr_auc": 0.77, "per_class": [], "confusion_matrix": [[2400, 150], [320, 400]],
              "benchmark_kind": "one-feature logistic regression", "benchmark_log_loss": 0.4763,
              "benchmark_accuracy": 0.77, "baseline_log_loss": None, "slices": {}, "reasons": ["blessed"]}


def test_a_classifiers_figures_reach_the_summary_and_its_table():
    figures = _classification_summary(EVALUATION)
    assert figures["task"] == "binary" and figures["roc_auc"] == 0.9101 and "slices" not in figures
    assert _classification_summary({"rmse": 1.0}) == {}  # a regressor's summary gains nothing
    summary = {"rows_read": 32561, "rows_rejected": 0, "rmse": None, "benchmark_rmse": None, "noise_floor_rmse": None,
               "blessed": True, "blessing_reasons": ["log loss 0.3031 is 36.4% better ...: passes"],
               "model_dir": "out/model", "pipeline_yaml": "out/p.yaml", "seconds": 99.0, **figures}
    table = format_summary_table(summary)
    assert "model log loss (test)" in table and "0.3031" in table and "0.8574 / 0.9101" in table
    assert "benchmark log loss (one-feature logistic regression)" in table and "0.4763" in table
    assert "RMSE" not in table
