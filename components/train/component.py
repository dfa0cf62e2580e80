"""KFP wrapper of training (components/train/executor.py): one process, a local TF_CONFIG cluster, or a TFJob."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    transform_fn: Input[Artifact],
    hyperparameters: Input[Artifact],
    study: Input[Artifact],
    epochs: int,
    workers: int,
    ps: int,
    strategy: str,
    mode: str,
    model: Output[Model],
    metrics: Output[Metrics],
    loss_curves: Output[HTML],
    model_module: Input[Artifact],
    shared_claim: str = "",
    training_operator: str = "auto",
) -> NamedTuple("TrainOutputs", eval_rmse=float, examples_per_second=float):
    """Train the wide-and-deep regressor, or your model module's network, on raw features (the transform runs inside).

    Args:
        train_data: the ingested training split (Parquet parts).
        eval_data: the ingested eval split, evaluated after every epoch.
        transform_fn: the analyze pass's transform.json; it becomes the model's preprocessing layer.
        hyperparameters: the HyperParameters from tune (hidden_units, learning_rate, batch_size used here).
        study: the tuning study (trials.json): a tuned model worse on eval than the default
            configuration's trial is compared with the default configuration trained the same way,
            and the better one is kept.
        epochs: maximum passes over the training split (early stopping keeps the best epoch).
        workers: training workers (local processes, or TFJob Worker replicas).
        ps: parameter servers; more than 0 trains with ParameterServerStrategy (a chief coordinates).
        strategy: auto, parameter_server, all_reduce or none; auto follows workers and ps.
        mode: local (processes in this step, with the TF_CONFIG a TFJob injects) or cluster (a TrainJob or
            a TFJob).
        model: the exported model directory: serving/ (SavedModel over raw features), transform.json,
            feature_spec.yaml, history.json.
        metrics: eval RMSE and training throughput.
        loss_curves: training and eval loss per epoch.
        model_module: tune's model module artifact (your build_model file, checked); without a
            module in it the built-in wide-and-deep network trains.
        shared_claim: cluster mode: the ReadWriteMany PVC the parameter-server TFJob pods share
            (the cluster pipeline creates one per run); "" for none.
        training_operator: cluster mode: auto (the cluster's API discovery: TrainJob when Kubeflow Trainer v2
            is served, else TFJob), trainjob or tfjob.
    """
    from collections import namedtuple
    from pathlib import Path

    from mlengine.components.shared.hyperparameters import HyperParameters, module_values_of
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics
    from mlengine.components.train.executor import run
    from mlengine.constants import TRIALS_FILE

    setup_logging()
    result = run(train_dir=train_data.path, eval_dir=eval_data.path, transform_dir=transform_fn.path,
                 model_dir=model.path, hyperparameters=HyperParameters.load(hyperparameters.path), epochs=epochs,
                 workers=workers, ps=ps, strategy=strategy, mode=mode, model_uri=model.uri,
                 study_file=Path(study.path) / TRIALS_FILE, shared_claim=shared_claim,
                 loss_curves_file=loss_curves.path, training_operator=training_operator, model_module=model_module.path,
                 module_values=module_values_of(hyperparameters.path))
    log_metrics(metrics, result.metrics)
    model.metadata.update(result.model_metadata)
    outputs = namedtuple("TrainOutputs", ["eval_rmse", "examples_per_second"])
    return outputs(result.eval_rmse, result.examples_per_second)
