"""The training pipeline DAG: ingest -> tune -> transform -> train -> evaluate -> (blessed) deploy.

`mlengine compile` writes it as the YAML a user uploads in the Kubeflow UI; `mlengine run`
runs the same DAG under kfp.local. `mode` picks where the heavy steps run: "local" (processes on
this machine) or "cluster" (TFJob, Katib Experiment and InferenceService resources).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Model

from mlengine.components.deploy.component import deploy
from mlengine.components.evaluate.component import evaluate
from mlengine.components.ingest.component import ingest
from mlengine.components.train.component import train
from mlengine.components.transform.component import transform
from mlengine.components.tune.component import tune
from mlengine.constants import (
    ART_EVAL_DATA,
    ART_HYPERPARAMETERS,
    ART_METRICS,
    ART_MODEL,
    ART_MODEL_MODULE,
    ART_STATISTICS,
    ART_TEST_DATA,
    ART_TRAIN_DATA,
    ART_TRANSFORM,
    ART_TUNING_STUDY,
    DEFAULT_BASELINE_TOLERANCE,
    DEFAULT_BLESSING_MARGIN,
    DEFAULT_EPOCHS,
    DEFAULT_TRAINING_OPERATOR,
    DEFAULT_TUNE_EPOCHS,
)
from mlengine.pipelines import platform

PIPELINE_NAME = "mlengine-training"

class TrainingOutputs(NamedTuple):
    rows_read: int
    rows_rejected: int
    blessed: bool
    model: Model
    train_metrics: Metrics
    eval_metrics: Metrics
    study: Artifact
    hyperparameters: Artifact
    evaluation: Artifact
    statistics: Artifact


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Raw CSV to a served taxi-fare model: ingest, tune, transform, distributed train, evaluate, deploy.",
)
def training_pipeline(
    data_uri: str,
    spec_uri: str = "",
    split_seed: int = 0,
    hyperparameters: dict = {},  # noqa: B006 (a KFP pipeline parameter default, never mutated)
    epochs: int = DEFAULT_EPOCHS,
    trials: int = 0,
    parallel_trials: int = 1,
    tune_algorithm: str = "tpe",
    tune_epochs: int = DEFAULT_TUNE_EPOCHS,
    workers: int = 1,
    ps: int = 0,
    strategy: str = "auto",
    mode: str = "local",
    training_operator: str = DEFAULT_TRAINING_OPERATOR,
    blessing_margin: float = DEFAULT_BLESSING_MARGIN,
    baseline_model_uri: str = "",
    baseline_tolerance: float = DEFAULT_BASELINE_TOLERANCE,
    model_name: str = "",
    canary_traffic_percent: int = 10,
    deployment_mode: str = "Knative",
    keep_serving: bool = False,
    runner: str = "local",
    beam_options: str = "",
    model_module: str = "",
    ingest_workers: int = 0,
    task: str = "",
) -> TrainingOutputs:
    """Raw CSV to a served model: ingest, tune, transform, train, evaluate, deploy when blessed.

    Args:
        data_uri: CSV file, folder of CSV shards, glob, or s3:// URI (MinIO) of the raw data.
        spec_uri: feature spec YAML; empty for the built-in taxi spec.
        split_seed: seed of the hash split into train/eval/test (80/10/10).
        hyperparameters: the hyperparameters you fix, e.g. {"nbuckets": 8, "learning_rate": 0.003};
            they are not tuned. Keys: nbuckets, hidden_units, learning_rate, batch_size, and the
            names your model module declares.
        epochs: the final model's maximum training epochs (it stops early once the eval RMSE stalls
            and keeps the best epoch's weights).
        trials: tuning trials before the final training; 0 trains with the fixed values and defaults.
        parallel_trials: trials run at once.
        tune_algorithm: tpe, random, grid, multivariate-tpe or bayesianoptimization.
        tune_epochs: maximum training epochs of each trial (early stopping and the pruner end poor ones sooner).
        workers: training workers (local processes or TFJob Worker replicas).
        ps: parameter servers (more than 0: ParameterServerStrategy with a chief).
        strategy: auto, parameter_server, all_reduce or none.
        mode: local (heavy steps as processes in the step) or cluster (TFJob, Katib Experiment,
            InferenceService).
        training_operator: on a cluster, what runs the training job and the Katib trials: auto (API
            discovery: a Kubeflow Trainer v2 TrainJob when trainer.kubeflow.org/v1alpha1 is served, else a
            TFJob), trainjob or tfjob.
        blessing_margin: how much the model must beat the benchmark's RMSE by (0.05 = 5%).
        baseline_model_uri: the model in service to compare with; empty: locally none (mlengine run
            passes the model its last run in the same output folder deployed), on a cluster the
            InferenceService's current storageUri.
        baseline_tolerance: how much worse than the served model a new model may be and still be
            blessed (0.01 = 1%).
        model_name: the served model's name (the InferenceService name on a cluster); empty: from
            the feature spec's name.
        canary_traffic_percent: traffic share of a new model version while it is a canary.
        deployment_mode: on a cluster, KServe's Knative (scale to zero, canaryTrafficPercent) or Standard
            (no Knative: HPA autoscaling, the canary in spec.canary[]).
        keep_serving: locally, leave the model server running after the run.
        runner: the engine of ingest and the analyze pass: local (the step's process) or beam (the
            same logic as an Apache Beam pipeline; needs the beam extra in the image).
        beam_options: with runner beam, Beam pipeline options separated by spaces (default: Beam's
            in-process runner; e.g. --runner=PortableRunner --job_endpoint=HOST:8099 for Flink).
        model_module: your own model: a Python file (a path here, an s3:// URI on a cluster) whose
            build_model(features, hp) is the network's body and whose HYPERPARAMETERS are tuned with
            the built-in ones; empty for the built-in wide-and-deep network. Tune reads it once,
            checks it on a tiny batch and hands it on as an artifact; the served model does not need it.
        ingest_workers: ingest's worker processes with runner local (0: one per core the step may
            use); the splits, rejects and statistics do not depend on it.
        task: the learning task this run expects: regression, binary or multiclass (empty: whatever
            the spec's label says); ingest refuses a spec whose label says another one.
    """
    # shared_claim: "" on this machine; on a cluster a ReadWriteMany PVC this run creates for the TFJob
    # pods, deleted when the steps end, failed or not (pipelines/platform.py)
    with platform.shared_volume() as shared_claim:
        ingest_task = ingest(data_uri=data_uri, spec_uri=spec_uri, split_seed=split_seed,
                             runner=runner, beam_options=beam_options, workers=ingest_workers,
                             task=task)
        ingest_task.set_display_name("ingest raw CSV")

        tune_task = tune(
            train_data=ingest_task.outputs[ART_TRAIN_DATA],
            eval_data=ingest_task.outputs[ART_EVAL_DATA],
            statistics=ingest_task.outputs[ART_STATISTICS],
            fixed_hyperparameters=hyperparameters,
            trials=trials,
            parallel=parallel_trials,
            algorithm=tune_algorithm,
            epochs=tune_epochs,
            mode=mode,
            shared_claim=shared_claim,
            training_operator=training_operator,
            model_module=model_module,
        )
        tune_task.set_display_name("tune hyperparameters (Katib)")

        transform_task = transform(
            train_data=ingest_task.outputs[ART_TRAIN_DATA],
            statistics=ingest_task.outputs[ART_STATISTICS],
            hyperparameters=tune_task.outputs[ART_HYPERPARAMETERS],
            runner=runner,
            beam_options=beam_options,
        )
        transform_task.set_display_name("analyze: buckets, scaling, vocabularies")

        train_task = train(
            train_data=ingest_task.outputs[ART_TRAIN_DATA],
            eval_data=ingest_task.outputs[ART_EVAL_DATA],
            transform_fn=transform_task.outputs[ART_TRANSFORM],
            hyperparameters=tune_task.outputs[ART_HYPERPARAMETERS],
            study=tune_task.outputs["study"],
            epochs=epochs,
            workers=workers,
            ps=ps,
            strategy=strategy,
            mode=mode,
            shared_claim=shared_claim,
            training_operator=training_operator,
            model_module=tune_task.outputs[ART_MODEL_MODULE],
        )
        train_task.set_display_name("train wide-and-deep (TFJob)")

        evaluate_task = evaluate(
            model=train_task.outputs[ART_MODEL],
            test_data=ingest_task.outputs[ART_TEST_DATA],
            train_data=ingest_task.outputs[ART_TRAIN_DATA],
            margin=blessing_margin,
            baseline_model_uri=baseline_model_uri,
            baseline_tolerance=baseline_tolerance,
            model_name=model_name,
            mode=mode,
        )
        evaluate_task.set_display_name("evaluate vs benchmark and the served model")

        # kfp.local resolves a condition on a task's single "Output" (not on named NamedTuple fields)
        def deploy_step(blessed: bool, display_name: str) -> None:
            task = deploy(model=train_task.outputs[ART_MODEL], blessed=blessed, mode=mode, model_name=model_name,
                          canary_traffic_percent=canary_traffic_percent, keep_serving=keep_serving,
                          deployment_mode=deployment_mode)
            task.set_display_name(display_name)
            task.set_caching_options(enable_caching=False)  # a rollout acts on the world: never replayed

        # this run's verdict also settles a canary in flight: blessed promotes it, unblessed rolls it back
        with dsl.If(evaluate_task.outputs["Output"] == True, name="model-is-blessed"):  # noqa: E712 (a DSL expression)
            deploy_step(True, "deploy (KServe canary)")
        with dsl.Else(name="model-not-blessed"):
            deploy_step(False, "roll back a canary in flight")

    # the target's wiring of every step: image registry; on a cluster the MinIO Secret and the PVC's mounts
    platform.finish(volume_users=(tune_task, train_task))
    return TrainingOutputs(
        rows_read=ingest_task.outputs["rows_read"],
        rows_rejected=ingest_task.outputs["rows_rejected"],
        blessed=evaluate_task.outputs["Output"],
        model=train_task.outputs[ART_MODEL],
        train_metrics=train_task.outputs[ART_METRICS],
        eval_metrics=evaluate_task.outputs[ART_METRICS],
        study=tune_task.outputs[ART_TUNING_STUDY],
        hyperparameters=tune_task.outputs[ART_HYPERPARAMETERS],
        statistics=ingest_task.outputs[ART_STATISTICS],
        evaluation=evaluate_task.outputs["evaluation"],
    )

