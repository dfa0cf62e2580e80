"""KFP wrapper of the evaluation logic (components/evaluate/executor.py)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    test_data: Input[Dataset],
    train_data: Input[Dataset],
    margin: float,
    baseline_model_uri: str,
    baseline_tolerance: float,
    model_name: str,
    mode: str,
    metrics: Output[Metrics],
    eval_report: Output[Markdown],
    eval_html: Output[HTML],
    evaluation: Output[Artifact],
    classification_metrics: Output[ClassificationMetrics],
) -> bool:
    """Test-split figures of the model vs the rule-based benchmark and vs the model in service; the blessing.

    A regressor is judged on RMSE (benchmark: the transform's one-feature line), a classifier on log
    loss (benchmark: the class prior, or a one-feature logistic regression fitted on the training
    split). Blessed = beats the benchmark by `margin` AND is at most `baseline_tolerance` worse than
    the served model (when one exists). The verdict is always written with its reasons. The single
    bool output is the deploy gate (`dsl.If`).

    Args:
        model: the trained model directory; its transform carries a regressor's benchmark line.
        test_data: the ingested test split (never seen by training or tuning).
        train_data: the training split: a classifier's benchmark is fitted on it (unread for a regressor).
        margin: how much the model's RMSE (log loss) must beat the benchmark's by (0.05 = 5%).
        baseline_model_uri: the model in service to compare with (a model directory or an
            s3:// storage URI); empty: none locally, the InferenceService's storageUri on a cluster.
        baseline_tolerance: how much worse than the served model the candidate may be (0.01 = 1%).
        model_name: the InferenceService whose storageUri is the baseline on a cluster.
        mode: local or cluster (where the baseline is looked up).
        metrics: RMSE and MAE (a classifier: log loss, accuracy, ROC AUC, PR AUC) of the model, the
            benchmark and the baseline, the blessing, the row count.
        eval_report: the comparison, the verdict with its reasons, the sliced metrics.
        eval_html: the same with plots (regression: predicted vs actual, residuals; classification:
            ROC, precision-recall, reliability, confusion matrix).
        evaluation: evaluation.json: every figure, the reasons and the slices.
        classification_metrics: a classifier's confusion matrix and ROC curve, drawn by the Kubeflow
            UI (empty for a regressor).
    """
    from mlengine.components.evaluate.executor import run
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_classification_metrics, log_metrics

    setup_logging()
    result = run(model_dir=model.path, test_dir=test_data.path, train_dir=train_data.path, margin=margin,
                 baseline_model_uri=baseline_model_uri, baseline_tolerance=baseline_tolerance, model_name=model_name,
                 mode=mode, report_md=eval_report.path, report_html=eval_html.path, evaluation_json=evaluation.path)
    log_metrics(metrics, result.metrics)
    log_classification_metrics(classification_metrics, result.classification)
    return result.blessed
