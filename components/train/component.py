"""KFP wrapper of training: one process, a local TF_CONFIG cluster, or a TFJob on Kubeflow."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    transform_fn: Input[Artifact],
    hidden_units: str,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    workers: int,
    ps: int,
    strategy: str,
    mode: str,
    model: Output[Model],
    metrics: Output[Metrics],
    loss_curves: Output[HTML],
) -> NamedTuple("TrainOutputs", eval_rmse=float, examples_per_second=float):
    """Train the wide-and-deep regressor; `mode` local runs the topology as processes, cluster as a TFJob."""
    import json
    import sys
    from collections import namedtuple
    from pathlib import Path

    from mlengine.components.shared.reports import log_metrics
    from mlengine.components.train.launch import launch_training
    from mlengine.components.train.model import parse_hidden_units
    from mlengine.components.train.report import loss_curves_html
    from mlengine.components.train.trainer import TrainConfig
    from mlengine.constants import HISTORY_FILE

    config = TrainConfig(
        train_dir=train_data.path, eval_dir=eval_data.path, transform_dir=transform_fn.path, model_dir=model.path,
        hidden_units=parse_hidden_units(hidden_units), learning_rate=learning_rate, batch_size=batch_size,
        epochs=epochs,
    )
    result = launch_training(config, workers=workers, ps=ps, strategy=strategy, mode=mode,
                             model_uri=model.uri, log=lambda line: print(line, file=sys.stderr, flush=True))
    history = json.loads((Path(model.path) / HISTORY_FILE).read_text(encoding="utf-8"))
    Path(loss_curves.path).write_text(loss_curves_html(history), encoding="utf-8")
    log_metrics(metrics, {"eval_rmse": float(result["eval_rmse"]),
                          "examples_per_second": float(result["examples_per_second"])})
    model.metadata.update({"framework": "tensorflow", "signature": "serving_default (raw features)",
                           "hidden_units": hidden_units, "workers": workers, "ps": ps, "strategy": strategy})
    outputs = namedtuple("TrainOutputs", ["eval_rmse", "examples_per_second"])
    return outputs(float(result["eval_rmse"]), float(result["examples_per_second"]))
