"""KFP wrapper of the evaluation logic (components/evaluate/executor.py)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    test_data: Input[Dataset],
    margin: float,
    baseline_model_uri: str,
    baseline_tolerance: float,
    model_name: str,
    mode: str,
    metrics: Output[Metrics],
    eval_report: Output[Markdown],
    eval_html: Output[HTML],
    evaluation: Output[Artifact],
) -> bool:
    """Test-split RMSE/MAE of the model vs the rule-based benchmark and vs the model in service; the blessing.

    Blessed = beats the benchmark by `margin` AND is at most `baseline_tolerance` worse than the
    served model (when one exists). The verdict is always written with its reasons. The single
    bool output is the deploy gate (`dsl.If`).

    Args:
        model: the trained model directory; its transform carries the benchmark line.
        test_data: the ingested test split (never seen by training or tuning).
        margin: how much the model's RMSE must beat the benchmark's by (0.05 = 5%).
        baseline_model_uri: the model in service to compare with (a model directory or an
            s3:// storage URI); empty: none locally, the InferenceService's storageUri on a cluster.
        baseline_tolerance: how much worse than the served model the candidate may be (0.01 = 1%).
        model_name: the InferenceService whose storageUri is the baseline on a cluster.
        mode: local or cluster (where the baseline is looked up).
        metrics: RMSE and MAE of the model, the benchmark and the baseline, the blessing, the row count.
        eval_report: the comparison, the verdict with its reasons, the sliced metrics.
        eval_html: the same with a predicted-vs-actual and a residual plot.
        evaluation: evaluation.json: every figure, the reasons and the slices.
    """
    from mlengine.components.evaluate.executor import run
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics

    setup_logging()
    result = run(model_dir=model.path, test_dir=test_data.path, margin=margin, baseline_model_uri=baseline_model_uri,
                 baseline_tolerance=baseline_tolerance, model_name=model_name, mode=mode,
                 report_md=eval_report.path, report_html=eval_html.path, evaluation_json=evaluation.path)
    log_metrics(metrics, result.metrics)
    return result.blessed
