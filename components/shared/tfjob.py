"""Render a ``kubeflow.org/v1`` TFJob: the cluster shape of a training run (and of a Katib trial).

The TFJob has the same topology as the local cluster (``distributed.Topology``): a Chief (the
coordinator under parameter_server), PS replicas and Worker replicas. The Training Operator
injects TF_CONFIG into every pod and task.py reads its role from it, so the pods run exactly the
program the local processes run. Data and model locations are ``s3://`` URIs on the cluster's
MinIO (task.py stages them through a scratch emptyDir); the MinIO credentials come from the
Secret ``constants.K8S_S3_SECRET`` through ``secretKeyRef``, never as literals.
"""

from __future__ import annotations

import re
from typing import Any

from mlengine.constants import (
    ENV_LEGACY_KERAS,
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_KEY,
    ENV_S3_SECURE,
    K8S_NAMESPACE,
    K8S_S3_SECRET,
    K8S_SERVICE_ACCOUNT,
    PART_OF_LABEL,
    TRAINER_IMAGE,
)
from mlengine.errors import MlengineError

TFJOB_GROUP = "kubeflow.org"
TFJOB_VERSION = "v1"
TFJOB_PLURAL = "tfjobs"
TFJOB_KIND = "TFJob"
CONTAINER_NAME = "tensorflow"  # the Training Operator finds the TF container (and its port) by this name
REPLICA_TYPES = {"chief": "Chief", "ps": "PS", "worker": "Worker"}
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")
TASK_COMMAND = ["python", "-m", "mlengine.components.train.task"]
SCRATCH_VOLUME = "scratch"
SCRATCH_MOUNT = "/scratch"
SHARED_VOLUME = "shared"
SHARED_MOUNT = "/shared"
DEFAULT_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
# the Secret's keys are the variable names; the endpoint and TLS switch may be absent from it
SECRET_ENV = ((ENV_S3_ENDPOINT, False), (ENV_S3_ACCESS_KEY, False), (ENV_S3_SECRET_KEY, False), (ENV_S3_SECURE, True))
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                       r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
MAX_NAME_LENGTH = 40  # pod names add "-worker-NN" and must stay within 63 characters
TF_PORT = 2222  # the Training Operator's default port, named tfjob-port


def tfjob_address(job: str, task_type: str, index: int, port: int = TF_PORT) -> str:
    """A replica's ``host:port`` in the TF_CONFIG the Training Operator writes: its Service ``<job>-<type>-<i>``."""
    return f"{job}-{task_type}-{index}:{port}"


def tfjob_tf_config(job: str, counts: dict[str, int], task_type: str, index: int, port: int = TF_PORT) -> dict:
    """The TF_CONFIG the Training Operator gives the replica ``task_type``/``index`` of TFJob ``job``."""
    from mlengine.components.shared.distributed import cluster_addresses, tf_config

    cluster = cluster_addresses(counts, lambda kind, i: tfjob_address(job, kind, i, port))
    return tf_config(cluster, task_type, index)


# --- rendering ----------------------------------------------------------------------------------
def quantity(value: Any, where: str = "resources") -> str:
    """A Kubernetes resource quantity as the string the API wants: 0.5 -> "500m", 2 -> "2", "1Gi" as is."""
    if isinstance(value, bool):
        raise MlengineError(f"{where}: expected a quantity like '500m' or '1Gi', got {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else f"{round(value * 1000)}m"
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MlengineError(f"{where}: expected a quantity like '500m' or '1Gi', got {value!r}")
    if not _QUANTITY.match(text):
        raise MlengineError(f"{where}: {value!r} is not a Kubernetes quantity (e.g. '500m', '2', '1Gi')")
    return text


def _requirements(raw: dict, where: str) -> dict:
    """``{"requests": {...}, "limits": {...}}`` (or a flat ``{"cpu": .., "memory": ..}`` = requests)."""
    if not isinstance(raw, dict):
        raise MlengineError(f"{where}: expected a mapping, got {raw!r}")
    sections = raw if set(raw) <= {"requests", "limits"} else {"requests": raw}
    out = {}
    for section, amounts in sections.items():
        if not isinstance(amounts, dict):
            raise MlengineError(f"{where}.{section}: expected a mapping of resource name -> quantity")
        out[section] = {name: quantity(amount, f"{where}.{section}.{name}") for name, amount in amounts.items()}
    return out


def replica_resources(resources: dict | None) -> dict[str, dict]:
    """Resources per replica type: one spec for all, or ``{"Chief": .., "PS": .., "Worker": ..}``."""
    if resources is None:
        resources = DEFAULT_RESOURCES
    if resources and set(resources) <= set(REPLICA_TYPES.values()):
        default = _requirements(DEFAULT_RESOURCES, "resources")
        return {kind: _requirements(resources[kind], f"resources.{kind}") if kind in resources else default
                for kind in REPLICA_TYPES.values()}
    shared = _requirements(resources, "resources")
    return dict.fromkeys(REPLICA_TYPES.values(), shared)


def check_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
        raise MlengineError(f"TFJob name {name!r}: use at most {MAX_NAME_LENGTH} lower-case letters, digits and '-', "
                            "starting with a letter")
    return name


def container_env() -> list[dict]:
    """The env of every training container: legacy Keras, unbuffered output, the MinIO Secret by reference."""
    env = [{"name": ENV_LEGACY_KERAS, "value": "1"}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
    for key, optional in SECRET_ENV:
        ref = {"name": K8S_S3_SECRET, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def render_tfjob(name: str, train_args: list[str], topology, *, namespace: str = K8S_NAMESPACE,
                 image: str = TRAINER_IMAGE, resources: dict | None = None,
                 service_account: str = K8S_SERVICE_ACCOUNT, backoff_limit: int = 3,
                 clean_pod_policy: str = "Running", restart_policy: str = "OnFailure",
                 active_deadline_seconds: int | None = None, labels: dict[str, str] | None = None,
                 shared_claim: str | None = None) -> dict:
    """A ``kubeflow.org/v1`` TFJob running task.py with ``train_args`` on every replica of ``topology``.

    ``train_args`` are task.py's flags (``--train-dir s3://.. --model-dir s3://.. --epochs 4``...,
    see ``training_args``). ``topology`` is a ``distributed.Topology``; it is validated here.
    ``shared_claim`` mounts a ReadWriteMany PersistentVolumeClaim at /shared in every pod and points
    TMPDIR there: under parameter_server the workers read the TFRecord copy of the input that the
    chief writes under its temporary directory, so they must see the same files.
    """
    topology.validate()
    check_name(name)
    if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
        raise MlengineError(f"image {image!r}: pin a version tag (never :latest)")
    if restart_policy not in RESTART_POLICIES:
        raise MlengineError(f"restart_policy: expected one of {RESTART_POLICIES}, got {restart_policy!r}")
    if clean_pod_policy not in CLEAN_POD_POLICIES:
        raise MlengineError(f"clean_pod_policy: expected one of {CLEAN_POD_POLICIES}, got {clean_pod_policy!r}")
    if isinstance(backoff_limit, bool) or not isinstance(backoff_limit, int) or backoff_limit < 0:
        raise MlengineError(f"backoff_limit must be a non-negative integer, got {backoff_limit!r}")
    if not all(isinstance(a, str) for a in train_args):
        raise MlengineError("train_args: every argument must be a string")
    if topology.resolved_strategy == "parameter_server" and not shared_claim:
        raise MlengineError("parameter_server TFJob: the workers read the input the chief prepares, so every pod "
                            "needs a shared ReadWriteMany volume: pass shared_claim")
    per_replica = replica_resources(resources)
    # under parameter_server the ps tasks write the checkpoint shards into the chief's model folder
    # (found by `mlengine rehearse`): with a shared claim the scratch folders live on it
    scratch = f"{SHARED_MOUNT}/scratch" if shared_claim else SCRATCH_MOUNT
    args = [*train_args, "--strategy", topology.resolved_strategy, "--scratch-dir", scratch]
    job_labels = {**PART_OF_LABEL, "app.kubernetes.io/name": "mlengine", "app.kubernetes.io/component": "trainer",
                  **(labels or {})}
    replica_specs = {}
    for task_type, count in topology.task_counts().items():
        kind = REPLICA_TYPES[task_type]
        container = {
            "name": CONTAINER_NAME,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": list(TASK_COMMAND),
            "args": list(args),
            "env": container_env() + ([{"name": "TMPDIR", "value": f"{SHARED_MOUNT}/tmp"}] if shared_claim else []),
            "ports": [{"name": "tfjob-port", "containerPort": TF_PORT, "protocol": "TCP"}],
            "resources": per_replica[kind],
            "volumeMounts": [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT}]
            + ([{"name": SHARED_VOLUME, "mountPath": SHARED_MOUNT}] if shared_claim else []),
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]}},
        }
        replica_specs[kind] = {
            "replicas": count,
            "restartPolicy": restart_policy,
            "template": {
                "metadata": {"labels": dict(job_labels),
                             "annotations": {"sidecar.istio.io/inject": "false"}},  # gRPC between replicas
                "spec": {
                    "serviceAccountName": service_account,
                    "containers": [container],
                    "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": {}}]
                    + ([{"name": SHARED_VOLUME, "persistentVolumeClaim": {"claimName": shared_claim}}]
                       if shared_claim else []),
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                },
            },
        }
    run_policy: dict[str, Any] = {"cleanPodPolicy": clean_pod_policy, "backoffLimit": backoff_limit}
    if active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = int(active_deadline_seconds)
    return {
        "apiVersion": f"{TFJOB_GROUP}/{TFJOB_VERSION}",
        "kind": TFJOB_KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {"runPolicy": run_policy, "tfReplicaSpecs": replica_specs},
    }
