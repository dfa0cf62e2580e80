"""Kubeflow Trainer v2 (``trainer.kubeflow.org/v1alpha1``): the project's runtime, TrainJobs against it, and
TF_CONFIG from JobSet's pod names.

Trainer v2 has no TensorFlow runtime and no parameter-server role, and its PlainML policy writes no
``TF_CONFIG``. The project brings its own ``TrainingRuntime`` (``ClusterTrainingRuntime`` for
administrators): a JobSet whose replicatedJobs are the TFJob's roles -- ``chief`` (1 pod), ``ps`` and
``worker`` (the one labelled ``trainer.kubeflow.org/trainjob-ancestor-step: trainer``, so a TrainJob's
``numNodes`` sizes it) -- each an Indexed Job. A pod's stable host name is
``<jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<jobset>`` (JobSet's headless Service), and its labels
name its replicatedJob and job index, so every pod builds the same cluster the Training Operator would
hand it (``tf_config_from_jobset_env``, through ``distributed.cluster_addresses`` like the TFJob path).

The success policy ends the JobSet when the chief finishes (parameter servers and parameter-server
workers never exit); an all-reduce runtime (MultiWorkerMirroredStrategy, no parameter servers) ends
when every worker has. Failures restart like the TFJob's ``OnFailure`` replicas: the kubelet restarts a
failed container up to the Job's ``backoffLimit``, then JobSet recreates the whole set up to
``failurePolicy.maxRestarts`` (a parameter-server cluster only recovers as a whole).

The TrainJob carries what differs per run in env (the program and its flags, the cluster shape), through
``spec.trainer.env`` for the ancestor's ``node`` container and ``runtimePatches`` for the chief and ps.
Every resource is passed through the typed models of ``kubeflow-trainer-api``: a field the model does
not know fails here, naming it, instead of being dropped by the API server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from mlengine.components.shared.distributed import TFConfigError, cluster_addresses, tf_config
from mlengine.components.shared.tfjob import (
    SCRATCH_MOUNT,
    SCRATCH_VOLUME,
    SHARED_MOUNT,
    SHARED_VOLUME,
    TF_PORT,
    check_name,
    container_env,
    replica_resources,
)
from mlengine.constants import (
    ENV_TASK_ARGS,
    ENV_TF_REPLICAS,
    K8S_NAMESPACE,
    K8S_SERVICE_ACCOUNT,
    PART_OF_LABEL,
    TRAINER_IMAGE,
    TRAINING_OPERATORS,
)
from mlengine.errors import MlengineError

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
TRAINJOB_KIND = "TrainJob"
RUNTIME_KINDS = ("TrainingRuntime", "ClusterTrainingRuntime")
TFJOB_GROUP_VERSION = "kubeflow.org/v1"
TRAINJOB_GROUP_VERSION = f"{TRAINER_GROUP}/{TRAINER_VERSION}"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# the pod's own coordinates, from the downward API
ENV_JOBSET_NAME = "MLENGINE_JOBSET_NAME"
ENV_REPLICATED_JOB = "MLENGINE_REPLICATED_JOB"
ENV_JOB_INDEX = "MLENGINE_JOB_INDEX"
ENV_POD_INDEX = "MLENGINE_POD_INDEX"
ENV_K8S_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # what Kubernetes itself sets in an Indexed Job's pods
TRAINER_CONTAINER = "node"  # Trainer v2 applies a TrainJob's spec.trainer to this container of the ancestor job
ROLE_CONTAINER = "tensorflow"
ENTRY_COMMAND = ["python", "-m", "mlengine.components.shared.trainjob"]
PATCH_MANAGER = "mlengine.io/launcher"
RUNTIME_PREFIX = "mlengine-tensorflow"
ROLES = ("chief", "ps", "worker")
RESTART_POLICIES = ("OnFailure", "Never")  # a Job's pods cannot have Always


# --- TF_CONFIG from JobSet ----------------------------------------------------------------------
def jobset_shape(topology) -> dict[str, list[int]]:
    """replicatedJob -> [jobs, pods per job] for a ``distributed.Topology``: one Indexed Job per role."""
    return {role: [1, count] for role, count in topology.task_counts().items()}


def jobset_address(jobset: str, replicated_job: str, job_index: int, pod_index: int, port: int = TF_PORT) -> str:
    """A pod's ``host:port`` under JobSet's DNS: ``<jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<jobset>``."""
    return f"{jobset}-{replicated_job}-{job_index}-{pod_index}.{jobset}:{port}"


def jobset_tf_config(jobset: str, shape: dict[str, list[int]], replicated_job: str, job_index: int,
                     pod_index: int, port: int = TF_PORT) -> dict:
    """The TF_CONFIG of the pod ``replicated_job``/``job_index``/``pod_index`` of JobSet ``jobset``.

    A task's index counts the pods of its replicatedJob in order: ``job_index * pods + pod_index``.
    """
    counts = {role: jobs * pods for role, (jobs, pods) in shape.items()}

    def address(role: str, index: int) -> str:
        pods = shape[role][1]
        return jobset_address(jobset, role, index // pods, index % pods, port)

    if replicated_job not in shape:
        raise TFConfigError(f"replicatedJob {replicated_job!r} is none of the cluster's roles ({', '.join(shape)})")
    pods = shape[replicated_job][1]
    return tf_config(cluster_addresses(counts, address), replicated_job, job_index * pods + pod_index)


def tf_config_from_jobset_env(environ: dict[str, str] | None = None) -> dict | None:
    """TF_CONFIG from a TrainJob pod's environment (JobSet's labels through the downward API); None elsewhere."""
    environ = os.environ if environ is None else environ
    jobset = environ.get(ENV_JOBSET_NAME)
    if not jobset:
        return None
    where = f"{ENV_TF_REPLICAS} / JobSet labels"
    try:
        shape = json.loads(environ.get(ENV_TF_REPLICAS) or "")
        if not isinstance(shape, dict) or not all(
                isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) and n > 0 for n in v)
                for v in shape.values()):
            raise ValueError("expected {replicatedJob: [jobs, pods]}")
        job_index = int(environ.get(ENV_JOB_INDEX) or 0)
        pod_index = int(environ.get(ENV_POD_INDEX) or environ.get(ENV_K8S_COMPLETION_INDEX) or 0)
    except ValueError as err:
        raise TFConfigError(f"{where}: cannot build TF_CONFIG for a pod of JobSet {jobset} ({err})") from None
    return jobset_tf_config(jobset, shape, environ.get(ENV_REPLICATED_JOB, ""), job_index, pod_index)


def pod_identity_env() -> list[dict]:
    """The pod's JobSet coordinates as env, from its labels and annotation (the downward API)."""
    def field(path: str) -> dict:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [{"name": ENV_JOBSET_NAME, **field(f"metadata.labels['{JOBSET_NAME_LABEL}']")},
            {"name": ENV_REPLICATED_JOB, **field(f"metadata.labels['{REPLICATED_JOB_LABEL}']")},
            {"name": ENV_JOB_INDEX, **field(f"metadata.labels['{JOB_INDEX_LABEL}']")},
            {"name": ENV_POD_INDEX, **field(f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']")}]


# --- the typed models ------------------------------------------------------------------------------
def typed(model: str, manifest: dict, what: str) -> dict:
    """``manifest`` through the ``kubeflow_trainer_api`` / ``kubeflow_katib_api`` model ``model``; raises on a
    field the model does not know (the API server would drop it silently) or a value of the wrong type."""
    import importlib

    import pydantic

    package = "kubeflow_katib_api" if model.startswith("V1beta1") else "kubeflow_trainer_api"
    cls = getattr(importlib.import_module(f"{package}.models"), model)
    try:
        rebuilt = cls.from_dict(manifest).to_dict()
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        raise MlengineError(f"{what}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    dropped = _dropped(manifest, rebuilt)
    if dropped:
        raise MlengineError(f"{what}: unknown field {dropped} (not in the {model} model)")
    return rebuilt


def _dropped(given: Any, kept: Any, path: str = "") -> str | None:
    """The first path present in ``given`` but missing from ``kept`` (a field the model ignored)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                return f"{path}.{key}".lstrip(".")
            found = _dropped(value, kept[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(given, list) and isinstance(kept, list):
        for index, (a, b) in enumerate(zip(given, kept, strict=False)):
            found = _dropped(a, b, f"{path}[{index}]")
            if found:
                return found
    return None


# --- the runtime ---------------------------------------------------------------------------------
def runtime_name(topology) -> str:
    """The runtime a topology needs: parameter servers are fixed in a runtime, the worker count is numNodes."""
    topology.validate()
    if topology.resolved_strategy == "parameter_server":
        return f"{RUNTIME_PREFIX}-ps{topology.ps}"
    return f"{RUNTIME_PREFIX}-allreduce"


def container_name(role: str) -> str:
    return TRAINER_CONTAINER if role == "worker" else ROLE_CONTAINER


def render_training_runtime(topology, *, namespace: str = K8S_NAMESPACE, image: str = TRAINER_IMAGE,
                            cluster_scoped: bool = False, resources: dict | None = None,
                            service_account: str = K8S_SERVICE_ACCOUNT, backoff_limit: int = 3,
                            restart_policy: str = "OnFailure") -> dict:
    """The ``TrainingRuntime`` (or ``ClusterTrainingRuntime``) for ``topology``'s roles.

    Its name is ``runtime_name(topology)``; the worker count is only the default (a TrainJob's
    ``numNodes`` sets it), the chief and the parameter servers are fixed.
    """
    if restart_policy not in RESTART_POLICIES:
        raise MlengineError(f"restart_policy: expected one of {RESTART_POLICIES} (a Job's pods), "
                            f"got {restart_policy!r}")
    if isinstance(backoff_limit, bool) or not isinstance(backoff_limit, int) or backoff_limit < 0:
        raise MlengineError(f"backoff_limit must be a non-negative integer, got {backoff_limit!r}")
    name = runtime_name(topology)
    parameter_servers = topology.resolved_strategy == "parameter_server"
    per_role = replica_resources(resources)
    kinds = {"chief": "Chief", "ps": "PS", "worker": "Worker"}
    labels = {**PART_OF_LABEL, "app.kubernetes.io/name": "mlengine", "app.kubernetes.io/component": "trainer"}
    replicated = []
    for role, count in topology.task_counts().items():
        container = {
            "name": container_name(role), "image": image, "imagePullPolicy": "IfNotPresent",
            "command": list(ENTRY_COMMAND),
            "env": container_env() + pod_identity_env(),
            "ports": [{"name": "tf-port", "containerPort": TF_PORT, "protocol": "TCP"}],
            "resources": per_role[kinds[role]],
            "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT}],
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]}},
        }
        job: dict[str, Any] = {"spec": {
            "parallelism": count, "completions": count, "completionMode": "Indexed", "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {"restartPolicy": restart_policy, "serviceAccountName": service_account,
                         "containers": [container], "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": {}}],
                         "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000}},
            }}}
        if role == "worker":  # the TrainJob's trainer (numNodes, env) applies to this one
            job["metadata"] = {"labels": {ANCESTOR_LABEL: "trainer"}}
        replicated.append({"name": role, "replicas": 1, "template": job})
    jobset_spec = {
        # every pod resolves every other before they are ready: TensorFlow's servers dial at start
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
        "successPolicy": {"operator": "All", "targetReplicatedJobs": ["chief" if parameter_servers else "worker"]},
        "failurePolicy": {"maxRestarts": backoff_limit},
        "replicatedJobs": replicated,
    }
    kind = RUNTIME_KINDS[1] if cluster_scoped else RUNTIME_KINDS[0]
    metadata = {"name": name, "labels": {**labels, "trainer.kubeflow.org/framework": "tensorflow"}}
    if not cluster_scoped:
        metadata["namespace"] = namespace
    manifest = {"apiVersion": TRAINJOB_GROUP_VERSION, "kind": kind, "metadata": metadata,
                "spec": {"mlPolicy": {"numNodes": topology.workers}, "template": {"spec": jobset_spec}}}
    model = "TrainerV1alpha1ClusterTrainingRuntime" if cluster_scoped else "TrainerV1alpha1TrainingRuntime"
    return typed(model, manifest, f"{kind} {name}")


# --- a TrainJob ----------------------------------------------------------------------------------
def render_trainjob(name: str, program: list[str], topology, *, namespace: str = K8S_NAMESPACE,
                    cluster_runtime: bool = False, shared_claim: str | None = None,
                    labels: dict[str, str] | None = None, for_trial: bool = False) -> dict:
    """A TrainJob running ``program`` (a module, then its flags) on every pod of ``topology``'s runtime.

    ``shared_claim`` mounts a ReadWriteMany claim at /shared in every pod (parameter servers need it,
    as in the TFJob). ``for_trial``: a Katib trial template (no name or namespace: Katib sets them).
    """
    topology.validate()
    if not for_trial:
        check_name(name)
    if topology.resolved_strategy == "parameter_server" and not shared_claim:
        raise MlengineError("parameter_server TrainJob: the workers read the input the chief prepares, so every "
                            "pod needs a shared ReadWriteMany volume: pass shared_claim")
    scratch = f"{SHARED_MOUNT}/scratch" if shared_claim else SCRATCH_MOUNT
    argv = [*program, "--strategy", topology.resolved_strategy, "--scratch-dir", scratch]
    env = [{"name": ENV_TASK_ARGS, "value": json.dumps(argv)},
           {"name": ENV_TF_REPLICAS, "value": json.dumps(jobset_shape(topology))}]
    if shared_claim:
        env.append({"name": "TMPDIR", "value": f"{SHARED_MOUNT}/tmp"})
    patches = []
    for role in topology.task_counts():
        container: dict[str, Any] = {"name": container_name(role)}
        if role != "worker":  # the ancestor's node container takes env only through spec.trainer
            container["env"] = env
        pod: dict[str, Any] = {}
        if shared_claim:
            container["volumeMounts"] = [{"name": SHARED_VOLUME, "mountPath": SHARED_MOUNT}]
            pod["volumes"] = [{"name": SHARED_VOLUME, "persistentVolumeClaim": {"claimName": shared_claim}}]
        if len(container) > 1:
            pod["containers"] = [container]
        if pod:
            patches.append({"name": role, "template": {"spec": {"template": {"spec": pod}}}})
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": RUNTIME_KINDS[1] if cluster_runtime else RUNTIME_KINDS[0],
                       "name": runtime_name(topology)},
        "trainer": {"numNodes": topology.workers, "env": env},
    }
    if patches:
        spec["runtimePatches"] = [{"manager": PATCH_MANAGER, "trainingRuntimeSpec": {
            "template": {"spec": {"replicatedJobs": patches}}}}]
    metadata: dict[str, Any] = {"labels": {**PART_OF_LABEL, "app.kubernetes.io/component": "trainer",
                                           **(labels or {})}}
    if not for_trial:
        metadata.update(name=name, namespace=namespace)
    manifest = {"apiVersion": TRAINJOB_GROUP_VERSION, "kind": TRAINJOB_KIND, "metadata": metadata, "spec": spec}
    return typed("TrainerV1alpha1TrainJob", manifest, f"TrainJob {name}")


def trainjob_done(obj: dict) -> tuple[bool, bool, str]:
    """``(finished, succeeded, reason)`` from a TrainJob's conditions (Complete / Failed) and its jobs' status."""
    from mlengine.components.shared.k8s import find_condition

    for condition_type, succeeded in (("Failed", False), ("Complete", True)):
        condition = find_condition(obj, condition_type)
        if condition is not None and condition.get("status") == "True":
            message = " ".join(str(condition.get("message") or condition.get("reason") or condition_type).split())
            return True, succeeded, f"{condition_type}: {message}{_jobs_summary(obj)}"
    latest = next((c for c in reversed(((obj or {}).get("status") or {}).get("conditions") or [])
                   if c.get("status") == "True"), None)
    if latest is None:
        return False, False, f"Pending: no status from Kubeflow Trainer yet{_jobs_summary(obj)}"
    return False, False, f"{latest.get('type')}: {latest.get('message') or latest.get('reason') or ''}".rstrip(": ") \
        + _jobs_summary(obj)


def _jobs_summary(obj: dict) -> str:
    parts = []
    for job in ((obj or {}).get("status") or {}).get("jobsStatus") or []:
        counts = ", ".join(f"{key}={job[key]}" for key in ("active", "ready", "succeeded", "failed") if job.get(key))
        parts.append(f"{job.get('name')}: {counts or 'none'}")
    return f" ({'; '.join(parts)})" if parts else ""


# --- which operator ------------------------------------------------------------------------------
def served_group_versions(api=None) -> set[str]:
    """The group/versions the API server serves (API discovery, ``GET /apis``), through ``api``'s client."""
    from kubernetes import client

    from mlengine.components.shared.k8s import _connection_errors, api_error_message, load_custom_objects_api

    api = api if api is not None else load_custom_objects_api()
    try:
        groups = client.ApisApi(api.api_client).get_api_versions()
    except client.exceptions.ApiException as err:
        raise MlengineError(f"API discovery (GET /apis) failed: {api_error_message(err)}") from None
    except _connection_errors() as err:  # refused, DNS, TLS, retries exhausted
        raise MlengineError(f"API discovery (GET /apis) failed: cannot reach the API server ({err})") from None
    return {version.group_version for group in groups.groups or [] for version in group.versions or []}


def choose_training_operator(requested: str, served: Callable[[], set[str]]) -> tuple[str, str]:
    """``(operator, why)``: ``trainjob`` or ``tfjob``. ``auto`` asks ``served()`` (TrainJob preferred)."""
    if requested not in TRAINING_OPERATORS:
        raise MlengineError(f"training_operator {requested!r}: expected one of {', '.join(TRAINING_OPERATORS)}")
    if requested != "auto":
        return requested, f"training_operator={requested} was asked for"
    groups = served()
    if TRAINJOB_GROUP_VERSION in groups:
        return "trainjob", f"the cluster serves {TRAINJOB_GROUP_VERSION} (Kubeflow Trainer v2): TrainJob"
    if TFJOB_GROUP_VERSION in groups:
        return "tfjob", (f"the cluster serves {TFJOB_GROUP_VERSION} (Training Operator v1) but not "
                         f"{TRAINJOB_GROUP_VERSION}: TFJob")
    raise MlengineError(f"training_operator=auto: the cluster serves neither {TRAINJOB_GROUP_VERSION} (Kubeflow "
                        f"Trainer v2, TrainJob) nor {TFJOB_GROUP_VERSION} (Training Operator v1, TFJob): install one")


# --- the pods' entrypoint ------------------------------------------------------------------------
def main(environ: dict[str, str] | None = None) -> None:
    """A TrainJob pod: TF_CONFIG from JobSet's labels (unless set), then the program ``MLENGINE_TASK_ARGS`` names."""
    import runpy
    import sys

    environ = os.environ if environ is None else environ
    try:
        argv = json.loads(environ.get(ENV_TASK_ARGS) or "")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ValueError("expected a JSON list: the module, then its arguments")
        if not environ.get("TF_CONFIG"):
            built = tf_config_from_jobset_env(environ)
            if built is not None:  # the program's TensorFlow reads it from the process environment
                os.environ["TF_CONFIG"] = json.dumps(built)
    except (ValueError, MlengineError) as err:
        print(f"mlengine trainjob entrypoint: {ENV_TASK_ARGS}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
