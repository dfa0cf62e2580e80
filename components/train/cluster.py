"""Training on Kubeflow: create (or re-attach to) the rendered TrainJob or TFJob, wait for it, fetch the model.

The job name is derived from the model output URI and written first (``name_file``), so a retried
pipeline step re-attaches to its TFJob instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from mlengine.components.shared.k8s import CustomResource, find_condition
from mlengine.components.shared.staging import artifact_uri
from mlengine.components.shared.tfjob import (
    DEFAULT_TIMEOUT_SECONDS,
    TFJOB_GROUP,
    TFJOB_PLURAL,
    TFJOB_VERSION,
    render_tfjob,
)
from mlengine.components.shared.trainjob import (
    TRAINER_GROUP,
    TRAINER_VERSION,
    TRAINJOB_PLURAL,
    choose_training_operator,
    render_trainjob,
    served_group_versions,
    trainjob_done,
)
from mlengine.constants import DEFAULT_TRAINING_OPERATOR, HISTORY_FILE, K8S_NAMESPACE, SPEC_FILE, TRAINER_IMAGE

TASK_MODULE = "mlengine.components.train.task"  # what every pod of a TrainJob runs (a TFJob's command)
log = logging.getLogger(__name__)


def training_args(config) -> list[str]:
    """task.py flags for every TrainConfig field (a TrainConfig or its dict); None values left out."""
    raw = json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)
    args: list[str] = []
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


# --- status ------------------------------------------------------------------------------------
def tfjob_done(obj: dict) -> tuple[bool, bool, str]:
    """``(finished, succeeded, reason)`` from a TFJob's status conditions and replica statuses."""
    status = (obj or {}).get("status") or {}
    failed = find_condition(obj, "Failed")
    if failed is not None and failed.get("status") == "True":
        return True, False, _failure_reason(failed, status)
    succeeded = find_condition(obj, "Succeeded")
    if succeeded is not None and succeeded.get("status") == "True":
        return True, True, f"Succeeded: {succeeded.get('message') or succeeded.get('reason') or 'done'}"
    latest = None
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True":
            latest = condition
    if latest is None:
        return False, False, "Pending: no status from the Training Operator yet"
    text = f"{latest.get('type')}: {latest.get('message') or latest.get('reason') or ''}".strip().rstrip(":")
    replicas = _replica_summary(status)
    return False, False, f"{text} ({replicas})" if replicas else text


def _replica_summary(status: dict) -> str:
    parts = []
    for kind, counts in sorted((status.get("replicaStatuses") or {}).items()):
        numbers = ", ".join(f"{key}={counts[key]}" for key in ("active", "succeeded", "failed") if counts.get(key))
        parts.append(f"{kind}: {numbers or 'none'}")
    return "; ".join(parts)


def _failure_reason(condition: dict, status: dict) -> str:
    reason = condition.get("reason") or "Failed"
    message = condition.get("message") or ""
    failing = [kind for kind, counts in sorted((status.get("replicaStatuses") or {}).items())
               if (counts or {}).get("failed")]
    text = f"{reason}: {message}" if message else reason
    if failing:
        counts = ", ".join(f"{kind} x{status['replicaStatuses'][kind]['failed']}" for kind in failing)
        text += f" (failed replicas: {counts})"
    return " ".join(text.split())


# --- running -------------------------------------------------------------------------------------
def tfjobs(namespace: str = K8S_NAMESPACE, api=None) -> CustomResource:
    return CustomResource(TFJOB_GROUP, TFJOB_VERSION, TFJOB_PLURAL, namespace, api=api)


def run_tfjob(manifest: dict, *, name_file: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS,
              poll_interval: float = 10.0, api=None) -> dict:
    """Create (or re-attach to) the TFJob and wait until it succeeds; returns the finished object.

    Raises ``MlengineError`` naming the failing replicas and the operator's message when the job
    fails, and when it does not finish within ``timeout`` seconds.
    """
    resource = tfjobs(manifest["metadata"].get("namespace", K8S_NAMESPACE), api=api)
    return _submit_and_wait(resource, manifest, tfjob_done, "tfjob", "", name_file=name_file, timeout=timeout,
                            poll_interval=poll_interval)


def _submit_and_wait(resource: CustomResource, manifest: dict, done, kind: str, note: str, *, name_file: str | None,
                     timeout: float, poll_interval: float) -> dict:
    """Create (or re-attach to) a training job resource and wait until ``done`` says it finished."""
    created = resource.create_or_attach(manifest, name_file=name_file)
    name = created["metadata"]["name"]
    log.info("%s %s/%s: submitted%s", kind, resource.namespace, name, note)
    return resource.wait(name, done, timeout=timeout, poll_interval=poll_interval, label=f"{kind} {name}")


def tfjob_name_for(model_uri: str, prefix: str = "mlengine-train") -> str:
    """A stable TFJob name per model output: a retried pipeline step re-attaches to the same job."""
    digest = hashlib.sha256(model_uri.encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def run_tfjob_for_config(config, topology, *, model_uri: str | None = None,
                         namespace: str = K8S_NAMESPACE, image: str = TRAINER_IMAGE, resources: dict | None = None,
                         timeout: float = DEFAULT_TIMEOUT_SECONDS, name: str | None = None,
                         name_file: str | None = None, shared_claim: str | None = None, api=None) -> dict:
    """Cluster mode of the train component: TFJob over the config's artifacts, then fetch the model back.

    The inputs and the model output must live in MinIO (KFP's artifact store); after success the
    model directory is downloaded to ``config.model_dir`` so the component can read history.json
    and KFP uploads it as the Model artifact.
    """
    remote, remote_model = _remote_config(config, model_uri)
    job_name = name or tfjob_name_for(remote_model)
    manifest = render_tfjob(job_name, training_args(remote), topology, namespace=namespace, image=image,
                            resources=resources, shared_claim=shared_claim or None)
    started = time.monotonic()
    run_tfjob(manifest, name_file=name_file, timeout=timeout, api=api)
    log.info("tfjob %s: succeeded after %.0f s; fetching the model", job_name, time.monotonic() - started)
    return {**_fetch_model(config, remote_model), "tfjob": job_name, "topology": topology.to_dict()}


# --- Kubeflow Trainer v2 -------------------------------------------------------------------------
def trainjobs(namespace: str = K8S_NAMESPACE, api=None) -> CustomResource:
    return CustomResource(TRAINER_GROUP, TRAINER_VERSION, TRAINJOB_PLURAL, namespace, api=api)


def run_trainjob(manifest: dict, *, name_file: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 poll_interval: float = 10.0, api=None) -> dict:
    """Create (or re-attach to) the TrainJob and wait until it completes; returns the finished object."""
    resource = trainjobs(manifest["metadata"].get("namespace", K8S_NAMESPACE), api=api)
    return _submit_and_wait(resource, manifest, trainjob_done, "trainjob",
                            f" (runtime {manifest['spec']['runtimeRef']['name']})", name_file=name_file,
                            timeout=timeout, poll_interval=poll_interval)


def run_trainjob_for_config(config, topology, *, model_uri: str | None = None,
                            namespace: str = K8S_NAMESPACE, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                            name: str | None = None, name_file: str | None = None, shared_claim: str | None = None,
                            cluster_runtime: bool = False, api=None) -> dict:
    """The TFJob path's twin on Kubeflow Trainer v2: a TrainJob against the project's runtime for ``topology``
    (image, resources and service account are the runtime's), then the model fetched back."""
    remote, remote_model = _remote_config(config, model_uri)
    job_name = name or tfjob_name_for(remote_model)
    manifest = render_trainjob(job_name, [TASK_MODULE, *training_args(remote)], topology, namespace=namespace,
                               cluster_runtime=cluster_runtime, shared_claim=shared_claim or None)
    started = time.monotonic()
    run_trainjob(manifest, name_file=name_file, timeout=timeout, api=api)
    log.info("trainjob %s: completed after %.0f s; fetching the model", job_name, time.monotonic() - started)
    return {**_fetch_model(config, remote_model), "trainjob": job_name, "topology": topology.to_dict()}


def run_for_config(config, topology, *, training_operator: str = DEFAULT_TRAINING_OPERATOR,
                   api=None, **kwargs) -> dict:
    """Cluster mode: a TrainJob or a TFJob, as ``training_operator`` (auto: what the cluster serves) says."""
    operator, why = choose_training_operator(training_operator, lambda: served_group_versions(api))
    log.info("train: training operator %s (%s)", operator, why)
    if operator == "trainjob":
        kwargs.pop("image", None)  # the runtime's
        kwargs.pop("resources", None)
        return run_trainjob_for_config(config, topology, api=api, **kwargs)
    return run_tfjob_for_config(config, topology, api=api, **kwargs)


def _remote_config(config, model_uri: str | None):
    import dataclasses

    remote_model = artifact_uri(model_uri or config.model_dir)
    remote = dataclasses.replace(config, train_dir=artifact_uri(config.train_dir),
                                 eval_dir=artifact_uri(config.eval_dir),
                                 transform_dir=artifact_uri(config.transform_dir), model_dir=remote_model)
    return remote, remote_model


def _fetch_model(config, remote_model: str) -> dict:
    from mlengine.components.shared import staging

    local = Path(config.model_dir)
    local.mkdir(parents=True, exist_ok=True)
    staging.download_prefix(remote_model, local)
    history_file = local / HISTORY_FILE
    history = json.loads(history_file.read_text(encoding="utf-8")) if history_file.is_file() else {}
    rates = [v for v in history.get("examples_per_second", []) if v]
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.train.trainer import eval_figures

    # the chief exported the best epoch's weights: its figures are the best recorded epoch's
    figures = eval_figures(history, load_spec(local / SPEC_FILE)) if (local / SPEC_FILE).is_file() else {}
    return {"history": history, **figures, "epochs_run": len(history.get("epoch", [])),
            "examples_per_second": sum(rates) / len(rates) if rates else None, "model_dir": str(local)}
