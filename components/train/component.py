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
    shared_claim: str = "",
) -> NamedTuple("TrainOutputs", eval_rmse=float, examples_per_second=float):
    """Train the wide-and-deep regressor on raw features (the transform runs inside the model).

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
        mode: local (processes in this step, with the TF_CONFIG a TFJob injects) or cluster (a TFJob).
        model: the exported model directory: serving/ (SavedModel over raw features), transform.json,
            feature_spec.yaml, history.json.
        metrics: eval RMSE and training throughput.
        loss_curves: training and eval loss per epoch.
        shared_claim: cluster mode: the ReadWriteMany PVC the parameter-server TFJob pods share
            (the cluster pipeline creates one per run); "" for none.
    """
    import json
    from collections import namedtuple
    from pathlib import Path

    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics
    from mlengine.components.train.executor import default_trial_of, guard_against_default, run
    from mlengine.components.train.report import loss_curves_html
    from mlengine.components.train.trainer import TrainConfig
    from mlengine.constants import HISTORY_FILE, TRIALS_FILE

    setup_logging()
    if shared_claim:  # read by the TFJob launcher (components/train/cluster.py)
        import os

        from mlengine.components.shared.tfjob import ENV_SHARED_CLAIM

        os.environ[ENV_SHARED_CLAIM] = shared_claim
    hparams = HyperParameters.load(hyperparameters.path)
    config = TrainConfig(
        train_dir=train_data.path, eval_dir=eval_data.path, transform_dir=transform_fn.path, model_dir=model.path,
        hidden_units=hparams.hidden_units, learning_rate=hparams.learning_rate, batch_size=hparams.batch_size,
        epochs=epochs,
    )
    result = run(config, workers=workers, ps=ps, strategy=strategy, mode=mode, model_uri=model.uri)
    default = default_trial_of(Path(study.path) / TRIALS_FILE)
    if mode == "local" and workers <= 1 and ps == 0:
        guard = guard_against_default(config, result, hparams.to_dict(), default)
        result = guard.pop("result", result)
    else:  # on a cluster the model already lives in object storage: compare and report only
        guard = {"kept": "tuned", "reason": "cluster run: no retraining of the default configuration",
                 "default_trial_rmse": default and default["rmse"], "final_rmse": result.get("eval_rmse")}
    (Path(model.path) / "model_choice.json").write_text(json.dumps(guard, indent=1), encoding="utf-8")
    history = json.loads((Path(model.path) / HISTORY_FILE).read_text(encoding="utf-8"))
    Path(loss_curves.path).write_text(loss_curves_html(history), encoding="utf-8")
    log_metrics(metrics, {"eval_rmse": float(result["eval_rmse"]),
                          "examples_per_second": float(result["examples_per_second"]),
                          "best_epoch": int(result.get("best_epoch") or 0),
                          "epochs_run": int(result.get("epochs_run") or 0)})
    model.metadata["model_choice"] = guard["reason"]
    model.metadata.update({"framework": "tensorflow", "signature": "serving_default (raw features)",
                           **hparams.to_dict(), "epochs": epochs, "workers": workers, "ps": ps, "strategy": strategy})
    outputs = namedtuple("TrainOutputs", ["eval_rmse", "examples_per_second"])
    return outputs(float(result["eval_rmse"]), float(result["examples_per_second"]))
