"""Render, without applying, every Kubernetes resource a cluster run creates (for review / GitOps).

The same renderers the components call at run time, for both training targets: the training
step's TrainJob (Kubeflow Trainer v2) with the project's TrainingRuntime and ClusterTrainingRuntime
it runs on, and its TFJob (Training Operator v1); the tuning step's Katib Experiment with TrainJob
trials and the one with TFJob trials; the deploy step's InferenceService, first as a full rollout
and then as the canary split a new model version gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlengine.constants import DEFAULT_EPOCHS, K8S_NAMESPACE, PARAM_HIDDEN_UNITS, image_for


def render_cluster_manifests(
    *,
    data_root: str,
    model_uri: str,
    previous_model_uri: str,
    name: str = "taxi-fare",
    namespace: str = K8S_NAMESPACE,
    workers: int = 2,
    ps: int = 1,
    shared_claim: str = "mlengine-shared",
    canary_traffic_percent: int = 10,
    trials: int = 12,
    space_path: str | None = None,
    image: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    server_image: str | None = None,
    tune_epochs: int | None = None,
    serving_log_flush_seconds: int | None = None,
    deployment_mode: str | None = None,
    model_module=None,
    model_module_uri: str = "",
) -> dict[str, dict[str, Any]]:
    """{file name: manifest} for one pipeline run on a cluster, with data under ``data_root`` (s3://...).

    ``image`` is the trainer image of the TFJob and the trials (default: ``image_for("trainer")``).
    ``model_module`` (a loaded model module, components/shared/model_module.py) with
    ``model_module_uri`` (its artifact folder in object storage, where the tune step stages it):
    the jobs train the module's body with its default hyperparameters, and the trials search them.
    """
    from mlengine.components.deploy.cluster import render_inference_service, render_serving_runtime
    from mlengine.components.shared.distributed import Topology
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.shared.tfjob import render_tfjob
    from mlengine.components.shared.trainjob import render_training_runtime, render_trainjob
    from mlengine.components.train.cluster import TASK_MODULE, training_args
    from mlengine.components.train.trainer import TrainConfig
    from mlengine.components.tune.cluster import render_experiment
    from mlengine.components.tune.space_loader import load_search_space

    root = data_root.rstrip("/")
    topology = Topology(workers=workers, ps=ps)
    topology.validate()
    defaults = HyperParameters()
    module_values = model_module.defaults() if model_module is not None else {}
    config = TrainConfig(
        train_dir=f"{root}/train", eval_dir=f"{root}/eval", transform_dir=f"{root}/transform", model_dir=model_uri,
        hidden_units=defaults.hidden_units, learning_rate=defaults.learning_rate, batch_size=defaults.batch_size,
        epochs=epochs, model_module=model_module_uri if model_module is not None else "", model_hp=module_values,
    )
    image = image or image_for("trainer")
    tfjob = render_tfjob(f"{name}-train", training_args(config), topology, namespace=namespace, image=image,
                         shared_claim=shared_claim if ps > 0 else None)
    claim = shared_claim if ps > 0 else None
    trainjob = render_trainjob(f"{name}-train", [TASK_MODULE, *training_args(config)], topology,
                               namespace=namespace, shared_claim=claim)
    space = load_search_space(space_path)
    space = space.with_overrides(max_trials=trials)
    module_trials: dict[str, Any] = {}
    if model_module is not None:  # as the tune step: the module's own join, hidden_units is not searched
        space = space.with_module({n: p.space_entry() for n, p in model_module.parameters.items()})
        space = space.without([PARAM_HIDDEN_UNITS])
        module_trials = {"model_module_uri": model_module_uri, "fixed_params": {**defaults.to_dict(), **module_values}}
    experiments = {kind: render_experiment(
        f"{name}-tune", space, namespace=namespace, train_uri=f"{root}/train", eval_uri=f"{root}/eval",
        spec_uri=f"{root}/statistics", output_uri=f"{root}/tuning", shared_claim=shared_claim, image=image,
        trial_kind=kind, **({"epochs": tune_epochs} if tune_epochs else {}), **module_trials,
    ) for kind in ("TFJob", "TrainJob")}
    # the runtimes the TrainJobs name: the training topology's and the trials' (one worker)
    runtimes = {}
    for shape in (topology, Topology(workers=1, ps=0)):
        for scoped in (False, True):
            runtime = render_training_runtime(shape, namespace=namespace, image=image, cluster_scoped=scoped)
            prefix = "clustertrainingruntime" if scoped else "trainingruntime"
            runtimes[f"{prefix}-{runtime['metadata']['name']}.yaml"] = runtime
    flush = {"serving_log_flush_seconds": serving_log_flush_seconds} if serving_log_flush_seconds else {}
    if deployment_mode:
        flush["deployment_mode"] = deployment_mode
    stable = render_inference_service(name, previous_model_uri, namespace=namespace, **flush)
    canary = render_inference_service(name, model_uri, namespace=namespace,
                                      canary_traffic_percent=canary_traffic_percent, **flush)
    return {
        "tfjob.yaml": tfjob,
        "trainjob.yaml": trainjob,
        **runtimes,
        "katib-experiment.yaml": experiments["TFJob"],
        "katib-experiment-trainjob.yaml": experiments["TrainJob"],
        "inferenceservice.yaml": stable,
        "inferenceservice-canary.yaml": canary,
        "servingruntime.yaml": render_serving_runtime(namespace=namespace,
                                                      image=server_image or image_for("server")),
    }


def write_manifests(out_dir: str | Path, manifests: dict[str, dict[str, Any]]) -> list[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, manifest in manifests.items():
        path = out / file_name
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        written.append(str(path))
    return written


def base_runtimes(namespace: str = K8S_NAMESPACE) -> dict[str, dict[str, Any]]:
    """{path under the repository: runtime} of the Trainer v2 runtimes the repository ships: in
    ``manifests/base`` the namespaced ``TrainingRuntime`` s (one parameter server; all-reduce, which the
    Katib trials use), in ``manifests/cluster-runtimes`` their ``ClusterTrainingRuntime`` variants."""
    from mlengine.components.shared.distributed import Topology
    from mlengine.components.shared.trainjob import render_training_runtime

    out = {}
    for topology in (Topology(workers=2, ps=1), Topology(workers=1, ps=0)):
        runtime = render_training_runtime(topology, namespace=namespace)
        out[f"manifests/base/trainingruntime-{runtime['metadata']['name']}.yaml"] = runtime
        runtime = render_training_runtime(topology, cluster_scoped=True)
        out[f"manifests/cluster-runtimes/clustertrainingruntime-{runtime['metadata']['name']}.yaml"] = runtime
    return out


def write_base_runtimes(root: str | Path = ".") -> list[str]:
    """Rewrite the shipped runtime files from ``base_runtimes`` (after a change of the runtime or the version)."""
    written = []
    for relative, manifest in base_runtimes().items():
        path = Path(root) / relative
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        written.append(str(path))
    return written
