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
    ART_MODEL,
    ART_STATISTICS,
    ART_TEST_DATA,
    ART_TRAIN_DATA,
    ART_TRANSFORM,
    DEFAULT_BLESSING_MARGIN,
    DEFAULT_HPARAMS,
    PARAM_BATCH_SIZE,
    PARAM_EPOCHS,
    PARAM_HIDDEN_UNITS,
    PARAM_LEARNING_RATE,
    PARAM_NBUCKETS,
)

PIPELINE_NAME = "mlengine-training"

class TrainingOutputs(NamedTuple):
    rows_read: int
    rows_rejected: int
    blessed: bool
    model: Model
    train_metrics: Metrics
    eval_metrics: Metrics
    study: Artifact


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Raw CSV to a served taxi-fare model: ingest, tune, transform, distributed train, evaluate, deploy.",
)
def training_pipeline(
    data_uri: str,
    spec_uri: str = "",
    split_seed: int = 0,
    nbuckets: int = DEFAULT_HPARAMS[PARAM_NBUCKETS],
    hidden_units: str = DEFAULT_HPARAMS[PARAM_HIDDEN_UNITS],
    learning_rate: float = DEFAULT_HPARAMS[PARAM_LEARNING_RATE],
    batch_size: int = DEFAULT_HPARAMS[PARAM_BATCH_SIZE],
    epochs: int = DEFAULT_HPARAMS[PARAM_EPOCHS],
    trials: int = 0,
    parallel_trials: int = 1,
    tune_algorithm: str = "tpe",
    tune_epochs: int = 2,
    workers: int = 1,
    ps: int = 0,
    strategy: str = "auto",
    mode: str = "local",
    blessing_margin: float = DEFAULT_BLESSING_MARGIN,
    model_name: str = "taxi-fare",
    canary_traffic_percent: int = 10,
    keep_serving: bool = False,
) -> TrainingOutputs:
    ingest_task = ingest(data_uri=data_uri, spec_uri=spec_uri, split_seed=split_seed)
    ingest_task.set_display_name("ingest raw CSV")

    tune_task = tune(
        train_data=ingest_task.outputs[ART_TRAIN_DATA],
        eval_data=ingest_task.outputs[ART_EVAL_DATA],
        statistics=ingest_task.outputs[ART_STATISTICS],
        trials=trials,
        parallel=parallel_trials,
        algorithm=tune_algorithm,
        epochs=tune_epochs,
        nbuckets=nbuckets,
        hidden_units=hidden_units,
        learning_rate=learning_rate,
        batch_size=batch_size,
        mode=mode,
    )
    tune_task.set_display_name("tune hyperparameters (Katib)")

    transform_task = transform(
        train_data=ingest_task.outputs[ART_TRAIN_DATA],
        statistics=ingest_task.outputs[ART_STATISTICS],
        nbuckets=tune_task.outputs[PARAM_NBUCKETS],
    )
    transform_task.set_display_name("analyze: buckets, scaling, vocabularies")

    train_task = train(
        train_data=ingest_task.outputs[ART_TRAIN_DATA],
        eval_data=ingest_task.outputs[ART_EVAL_DATA],
        transform_fn=transform_task.outputs[ART_TRANSFORM],
        hidden_units=tune_task.outputs[PARAM_HIDDEN_UNITS],
        learning_rate=tune_task.outputs[PARAM_LEARNING_RATE],
        batch_size=tune_task.outputs[PARAM_BATCH_SIZE],
        epochs=epochs,
        workers=workers,
        ps=ps,
        strategy=strategy,
        mode=mode,
    )
    train_task.set_display_name("train wide-and-deep (TFJob)")

    evaluate_task = evaluate(
        model=train_task.outputs[ART_MODEL],
        test_data=ingest_task.outputs[ART_TEST_DATA],
        margin=blessing_margin,
    )
    evaluate_task.set_display_name("evaluate vs benchmark")

    # kfp.local resolves a condition on a task's single "Output" (not on named NamedTuple fields)
    def deploy_step(blessed: bool, display_name: str) -> None:
        task = deploy(model=train_task.outputs[ART_MODEL], blessed=blessed, mode=mode, model_name=model_name,
                      canary_traffic_percent=canary_traffic_percent, keep_serving=keep_serving)
        task.set_display_name(display_name)
        task.set_caching_options(enable_caching=False)  # a rollout acts on the world: never replayed

    # this run's verdict also settles a canary in flight: blessed promotes it, unblessed rolls it back
    with dsl.If(evaluate_task.outputs["Output"] == True, name="model-is-blessed"):  # noqa: E712 (a DSL expression)
        deploy_step(True, "deploy (KServe canary)")
    with dsl.Else(name="model-not-blessed"):
        deploy_step(False, "roll back a canary in flight")

    return TrainingOutputs(
        rows_read=ingest_task.outputs["rows_read"],
        rows_rejected=ingest_task.outputs["rows_rejected"],
        blessed=evaluate_task.outputs["Output"],
        model=train_task.outputs[ART_MODEL],
        train_metrics=train_task.outputs["metrics"],
        eval_metrics=evaluate_task.outputs["metrics"],
        study=tune_task.outputs["study"],
    )

