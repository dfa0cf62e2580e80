"""KFP wrapper of the evaluation logic (components/evaluate/logic.py)."""

from typing import NamedTuple

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
) -> NamedTuple("EvaluateOutputs", blessed=bool, rmse=float, benchmark_rmse=float):
    """RMSE/MAE of the model and of the distance-only benchmark on the test split; blessed if it wins by `margin`."""
    import sys
    from collections import namedtuple
    from pathlib import Path

    from mlengine.components.evaluate.logic import evaluate as evaluate_model
    from mlengine.components.evaluate.logic import render_evaluation_markdown

    result = evaluate_model(model.path, test_data.path, margin=margin,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    for key in ("rmse", "mae", "benchmark_rmse", "benchmark_mae"):
        metrics.log_metric(key, float(result[key]))
    metrics.log_metric("blessed", int(bool(result["blessed"])))
    Path(eval_report.path).write_text(render_evaluation_markdown(result), encoding="utf-8")
    outputs = namedtuple("EvaluateOutputs", ["blessed", "rmse", "benchmark_rmse"])
    return outputs(bool(result["blessed"]), float(result["rmse"]), float(result["benchmark_rmse"]))
