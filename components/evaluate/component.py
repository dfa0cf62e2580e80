"""KFP wrapper of the evaluation logic (components/evaluate/logic.py)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    test_data: Input[Dataset],
    margin: float,
    metrics: Output[Metrics],
    eval_report: Output[Markdown],
) -> bool:
    """RMSE/MAE of the model and of the rule-based benchmark on the test split; blessed if it wins by `margin`.

    The single bool output is the deploy gate (`dsl.If`); the figures go into the Metrics artifact.

    Args:
        model: the trained model directory; its transform carries the benchmark line.
        test_data: the ingested test split (never seen by training or tuning).
        margin: how much the model's RMSE must beat the benchmark's by (0.05 = 5%).
        metrics: RMSE and MAE of the model and of the benchmark, the blessing, the row count.
        eval_report: the comparison and the verdict in words.
    """
    import sys
    from pathlib import Path

    from mlengine.components.evaluate.executor import evaluate as evaluate_model
    from mlengine.components.evaluate.executor import render_evaluation_markdown
    from mlengine.components.shared.reports import log_metrics

    result = evaluate_model(model.path, test_data.path, margin=margin,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    values = {key: float(result[key]) for key in ("rmse", "mae", "benchmark_rmse", "benchmark_mae")}
    log_metrics(metrics, {**values, "blessed": int(bool(result["blessed"])), "test_rows": int(result["rows"])})
    Path(eval_report.path).write_text(render_evaluation_markdown(result), encoding="utf-8")
    return bool(result["blessed"])
