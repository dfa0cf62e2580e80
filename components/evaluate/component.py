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
    import json
    import tempfile
    from pathlib import Path

    from mlengine.components.evaluate.executor import evaluate as evaluate_model
    from mlengine.components.evaluate.executor import (
        render_evaluation_html,
        render_evaluation_markdown,
        served_model_dir,
        summary_of,
    )
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics
    from mlengine.constants import SPEC_FILE

    setup_logging()
    scratch = tempfile.mkdtemp(prefix="mlengine-baseline-")
    baseline_dir, source = served_model_dir(baseline_uri=baseline_model_uri, mode=mode, model_name=model_name,
                                            namespace=None, scratch=scratch, spec_file=Path(model.path) / SPEC_FILE)
    result = evaluate_model(model.path, test_data.path, margin=margin, baseline_dir=baseline_dir,
                            baseline_source=source, tolerance=baseline_tolerance)
    values = {key: float(result[key]) for key in ("rmse", "mae", "benchmark_rmse", "benchmark_mae")}
    if result["baseline_rmse"] is not None:
        values["baseline_rmse"] = float(result["baseline_rmse"])
    log_metrics(metrics, {**values, "blessed": int(bool(result["blessed"])), "test_rows": int(result["rows"])})
    Path(eval_report.path).write_text(render_evaluation_markdown(result), encoding="utf-8")
    Path(eval_html.path).write_text(render_evaluation_html(result), encoding="utf-8")
    Path(evaluation.path).write_text(json.dumps(summary_of(result), indent=1, default=str), encoding="utf-8")
    return bool(result["blessed"])
