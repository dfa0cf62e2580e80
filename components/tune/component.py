"""KFP wrapper of hyperparameter tuning (components/tune/executor.py)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def tune(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    statistics: Input[Artifact],
    fixed_hyperparameters: dict,
    trials: int,
    parallel: int,
    algorithm: str,
    epochs: int,
    mode: str,
    hyperparameters: Output[Artifact],
    study: Output[Artifact],
    tuning_report: Output[HTML],
    tuning_table: Output[Markdown],
    module: Output[Artifact],
    shared_claim: str = "",
    training_operator: str = "auto",
    model_module: str = "",
):
    """Search the hyperparameters that are not fixed: nbuckets (preprocessing), layers, learning rate, batch size,
    and a model module's own.

    Args:
        train_data: the ingested training split (Parquet parts).
        eval_data: the ingested eval split; each trial's objective is its eval RMSE.
        statistics: ingest's statistics artifact; the feature spec is read from it.
        fixed_hyperparameters: hyperparameters you set, e.g. {"nbuckets": 8}; they are not searched
            and every trial uses them. Keys: nbuckets, hidden_units, learning_rate, batch_size, and
            the names a model module declares in its HYPERPARAMETERS.
        trials: trial budget; 0 skips tuning and passes the fixed values (and defaults) through.
        parallel: trials run at once.
        algorithm: tpe, random, grid, multivariate-tpe or bayesianoptimization (Katib's names).
        epochs: maximum training epochs per trial (early stopping and the pruner end poor trials sooner).
        mode: local (optuna trials as processes in this step) or cluster (a Katib Experiment).
        hyperparameters: the chosen HyperParameters (hyperparameters.json) for transform and train.
        study: the trials (trials.json) and, locally, the optuna study database.
        tuning_report: plots of RMSE per trial and per nbuckets.
        tuning_table: one row per trial, with fixed and searched parameters named.
        module: the model module artifact: your file as read once here, checked, and its manifest
            (model_module.json); train and every trial load it from here.
        shared_claim: cluster mode: the ReadWriteMany PVC parameter-server trial TFJobs share
            (the cluster pipeline creates one per run); "" for none.
        training_operator: cluster mode: auto (the cluster's API discovery: TrainJob when Kubeflow Trainer v2
            is served, else TFJob), trainjob or tfjob.
        model_module: your model module: a Python file (path, or s3:// URI on a cluster) whose
            build_model(features, hp) is the network's body; "" for the built-in wide-and-deep network.
    """
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.tune.executor import run

    setup_logging()
    result = run(train_data.path, eval_data.path, statistics.path, study.path, fixed=fixed_hyperparameters,
                 trials=trials, parallel=parallel, algorithm=algorithm, epochs=epochs, mode=mode,
                 output_uri=study.uri.rstrip("/") + "/trials", shared_claim=shared_claim,
                 hyperparameters_path=hyperparameters.path, markdown_path=tuning_table.path,
                 html_path=tuning_report.path, training_operator=training_operator, model_module=model_module,
                 module_dir=module.path)
    hyperparameters.metadata.update({**result.hyperparameters.to_dict(), "fixed": sorted(result.fixed),
                                     "searched": result.searched, "module": result.module_values})
    module.metadata.update({"file": result.model_module, "hyperparameters": result.module_values})
    study.metadata.update({"trials": trials, "algorithm": algorithm, "best": result.hyperparameters.to_dict(),
                           "fixed": result.fixed, "searched": result.searched})
