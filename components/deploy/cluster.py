"""The cluster path: a KServe ``InferenceService`` for the model, canary rollouts, waiting for Ready.

The default predictor (``runtime="ours"``) is the project's server image through the ServingRuntime
``mlengine-server`` (``render_serving_runtime``): the same ``kserve.Model`` as ``mlengine serve``,
so cluster requests get its input validation, micro-batching and serving log; ``storageUri`` is the
model directory. ``runtime="tfserving"`` keeps KServe's TensorFlow Serving runtime
(``modelFormat: tensorflow``): the exported SavedModel does its own preprocessing, and clients send
the same v1 body (``{"instances": [{...}]}``), but none of the above happens. TF Serving expects
numbered version directories under ``storageUri``
(``<storageUri>/1/saved_model.pb``): ``stage_for_tf_serving`` lays a model directory out that way.
The runtime ``mlengine-tensorflow-serving`` (manifests/base/serving-runtime.yaml) pins the TF
Serving image; pass ``runtime=None`` to let KServe pick its cluster-wide TF Serving runtime.

Serving log: with ``runtime="ours"`` and an ``s3://`` storage URI the predictor logs its validated
inputs to ``s3://<bucket>/<top prefix>/serving-log/<name>/`` of the same (pipeline) bucket
(``serving_log_uri_for``; ``MLENGINE_SERVING_LOG_URI`` in the container, the S3 endpoint and
credentials through ``secretKeyRef`` of the MinIO Secret, never literal); the monitoring pipeline
reads that prefix. TF Serving writes no such log.

Deployment modes (KServe's names since 0.16): ``Knative`` (the default here): ``minReplicas: 0``
scales to zero, ``scaleMetric`` and ``scaleTarget`` set the Knative autoscaler (``concurrency`` 8 per
pod by default), and ``canaryTrafficPercent`` splits traffic between the previous rolled-out
revision and the new one. ``Standard``: plain Deployments, no Knative; HPA or KEDA
(``serving.kserve.io/autoscalerClass``) on CPU keep at least one replica, and a canary is a second
predictor in ``spec.canary[]`` with its ``trafficPercent`` (KServe 0.20+).

Canary rollouts change no application code: the InferenceService keeps one name and URL.
Annotations remember which model is stable and which is the canary, so a later run can
promote the canary (drop the split) or roll back (restore the stable storageUri).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlengine.constants import K8S_NAMESPACE, K8S_SERVING_SERVICE_ACCOUNT, PART_OF_LABEL, SERVING_MODEL_SUBDIR
from mlengine.errors import MlengineError

if TYPE_CHECKING:
    from mlengine.components.deploy.rollout import RolloutDecision

ISVC_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
ISVC_API_VERSION = f"{ISVC_GROUP}/{ISVC_VERSION}"
MODEL_FORMAT = "tensorflow"
SERVING_RUNTIME = "mlengine-tensorflow-serving"  # manifests/base/serving-runtime.yaml
# the default predictor: the server image (the same kserve.Model as `mlengine serve`: input validation,
# micro-batching, the serving log); "tfserving" keeps KServe's TF Serving runtime
OUR_RUNTIME = "mlengine-server"  # rendered by render_serving_runtime (its image follows the registry)
OUR_MODEL_FORMAT = "mlengine"
RUNTIMES = {"ours": (OUR_RUNTIME, OUR_MODEL_FORMAT), "tfserving": (SERVING_RUNTIME, MODEL_FORMAT)}
log = logging.getLogger(__name__)
DEFAULT_RUNTIME = "ours"
PREDICTOR_CONTAINER = "kserve-container"
SERVING_LABELS = {**PART_OF_LABEL, "app.kubernetes.io/component": "serving"}
READINESS_PATH = "/v2/health/ready"
ANNOTATION_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# KServe's mode names since 0.16: Knative (scale to zero, canaryTrafficPercent) is the default here; Standard
# (plain Deployments, HPA or KEDA autoscaling, spec.canary[] since 0.20) needs no Knative but cannot scale from zero
DEPLOYMENT_MODES = ("Knative", "Standard")
DEPLOYMENT_MODE = "Knative"
LEGACY_DEPLOYMENT_MODES = {"Serverless": "Knative", "RawDeployment": "Standard"}  # deprecated spellings
ANNOTATION_AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
AUTOSCALER_CLASSES = ("hpa", "keda")  # Standard mode's autoscalers
STANDARD_SCALE_METRICS = ("cpu", "memory")  # what an HPA scales on (KEDA: the same resource triggers here)
TF_SERVING_IMAGE = "tensorflow/serving:2.20.0"  # the TF Serving release nearest the training TF 2.21
TF_SERVING_VERSION_DIR = "1"
# TF Serving's gRPC port (9000 in manifests/base/serving-runtime.yaml) also serves its ModelService,
# which reloads the model config: the predictor pods get this label and the NetworkPolicy selecting
# it lets in only the REST port and Knative's queue-proxy ports
TF_SERVING_POD_LABEL = ("app.kubernetes.io/name", SERVING_RUNTIME)
TF_SERVING_NETWORK_POLICY = f"{SERVING_RUNTIME}-ingress"
TF_SERVING_INGRESS_PORTS = (
    (8080, "the REST API (the container port; RawDeployment services reach it directly)"),
    (8012, "queue-proxy: requests from the activator / ingress"),
    (8022, "queue-proxy: admin (drain)"),
    (9090, "queue-proxy: autoscaler metrics"),
    (9091, "queue-proxy: user metrics"),
)
SCALE_METRICS = ("concurrency", "rps", "cpu", "memory")
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://")
DEFAULT_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
SERVING_LOG_SUBDIR = "serving-log"
SERVING_LOG_FLUSH_SECONDS = 60  # the predictor uploads its buffered log lines at least this often
FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")
FAILED_CONDITION_REASONS = ("RevisionFailed", "ProgressDeadlineExceeded")
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$")  # DNS-1035; KServe adds suffixes, keep <= 45
QUANTITY_PATTERN = re.compile(  # the CRD's pattern for resource quantities
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


def render_inference_service(name: str, storage_uri: str, *, namespace: str = K8S_NAMESPACE,
                             canary_traffic_percent: int | None = None, min_replicas: int = 0,
                             max_replicas: int = 3, scale_metric: str = "concurrency", scale_target: int = 8,
                             service_account: str = K8S_SERVING_SERVICE_ACCOUNT,
                             runtime: str | None = DEFAULT_RUNTIME, model_format: str | None = None,
                             resources: dict | None = None, annotations: dict[str, str] | None = None,
                             serving_log_uri: str | None = "auto",
                             serving_log_flush_seconds: int = SERVING_LOG_FLUSH_SECONDS,
                             deployment_mode: str = DEPLOYMENT_MODE, autoscaler_class: str = "hpa") -> dict:
    """A ``serving.kserve.io/v1beta1`` InferenceService for the model at ``storage_uri``.

    ``runtime`` "ours" (default): the ServingRuntime of the server image (``render_serving_runtime``),
    ``storage_uri`` a model directory; "tfserving": TF Serving, ``storage_uri`` laid out by
    ``stage_for_tf_serving``; any other name is a ServingRuntime of yours, None lets KServe pick.
    ``serving_log_uri`` (runtime "ours" only): "auto" = ``serving_log_uri_for(storage_uri, name)``
    for an s3:// model, an ``s3://`` prefix of yours, or None for no serving log.
    ``deployment_mode``: Knative (default; scale to zero, ``canaryTrafficPercent``) or Standard (no
    Knative: at least one replica, ``autoscaler_class`` hpa or keda on cpu/memory, and a canary is a
    ``spec.canary[]`` entry, see ``standard_canary``); the deprecated Serverless / RawDeployment
    spellings are accepted and written in the current names.
    """
    check_name(name)
    check_storage_uri(storage_uri)
    deployment_mode = check_deployment_mode(deployment_mode)
    standard = deployment_mode == "Standard"
    if standard:
        if autoscaler_class not in AUTOSCALER_CLASSES:
            raise MlengineError(f"autoscaler_class {autoscaler_class!r}: expected one of "
                                f"{', '.join(AUTOSCALER_CLASSES)}")
        # scale-from-zero on request needs Knative's activator: Standard keeps one replica up
        min_replicas = max(1, min_replicas)
        if scale_metric not in STANDARD_SCALE_METRICS:
            scale_metric, scale_target = "cpu", 80  # percent of the CPU request

    if not isinstance(min_replicas, int) or min_replicas < 0:
        raise MlengineError(f"min_replicas {min_replicas!r}: must be an integer >= 0 (0 scales to zero)")
    if not isinstance(max_replicas, int) or max_replicas < max(1, min_replicas):
        raise MlengineError(f"max_replicas {max_replicas!r}: must be an integer >= max(1, min_replicas)")
    if scale_metric not in SCALE_METRICS:
        raise MlengineError(f"scale_metric {scale_metric!r}: expected one of {', '.join(SCALE_METRICS)}")
    if not isinstance(scale_target, int) or scale_target < 1:
        raise MlengineError(f"scale_target {scale_target!r}: must be a positive integer")
    runtime, default_format = RUNTIMES.get(runtime, (runtime, MODEL_FORMAT))
    model: dict[str, Any] = {
        "modelFormat": {"name": model_format or default_format},
        "storageUri": storage_uri,
        "protocolVersion": "v1",
        "resources": normalize_resources(DEFAULT_RESOURCES if resources is None else resources),
    }
    if runtime:
        model["runtime"] = runtime
    if serving_log_uri == "auto":
        serving_log_uri = serving_log_uri_for(storage_uri, name) if runtime == OUR_RUNTIME else None
    if serving_log_uri:
        if runtime != OUR_RUNTIME:
            raise MlengineError(f"serving_log_uri: only the {OUR_RUNTIME} runtime writes a serving log")
        model["env"] = serving_log_env(serving_log_uri, serving_log_flush_seconds)
    predictor: dict[str, Any] = {
        "serviceAccountName": service_account,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "scaleMetric": scale_metric,
        "scaleTarget": scale_target,
        "model": model,
    }
    if canary_traffic_percent is not None and not standard:
        predictor["canaryTrafficPercent"] = check_percent(canary_traffic_percent)
    if runtime == SERVING_RUNTIME:  # the pods render_tf_serving_network_policy selects
        predictor["labels"] = dict([TF_SERVING_POD_LABEL])
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(SERVING_LABELS),
                                "annotations": {ANNOTATION_DEPLOYMENT_MODE: deployment_mode}}
    if standard:
        metadata["annotations"][ANNOTATION_AUTOSCALER_CLASS] = autoscaler_class
    if annotations:
        metadata["annotations"].update({str(k): str(v) for k, v in annotations.items()})
    return {"apiVersion": ISVC_API_VERSION, "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}


def check_deployment_mode(mode: str) -> str:
    """Knative or Standard (the deprecated Serverless / RawDeployment read as those)."""
    mode = LEGACY_DEPLOYMENT_MODES.get(mode, mode)
    if mode not in DEPLOYMENT_MODES:
        raise MlengineError(f"deployment_mode {mode!r}: expected Knative (scale to zero, the default) or Standard "
                            "(plain Deployments with HPA/KEDA)")
    return mode


def deployment_mode_of(isvc: dict | None) -> str:
    """The mode an existing InferenceService runs in (its annotation; KServe's own default is Standard)."""
    annotations = ((isvc or {}).get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(ANNOTATION_DEPLOYMENT_MODE) or "Standard"
    return LEGACY_DEPLOYMENT_MODES.get(mode, mode)


def standard_canary(predictor: dict, storage_uri: str, percent: int) -> list[dict]:
    """Standard mode's canary: ``spec.canary[]`` holds a whole predictor serving ``storage_uri`` with
    ``percent`` of the traffic, next to ``spec.predictor`` (the stable model, the rest)."""
    import copy

    canary = copy.deepcopy(predictor)
    canary.pop("canaryTrafficPercent", None)
    canary.setdefault("model", {})["storageUri"] = check_storage_uri(storage_uri)
    canary["model"].setdefault("name", PREDICTOR_CONTAINER)  # the CRD requires it here (a container's name)
    return [{"predictor": canary, "trafficPercent": check_percent(percent)}]


def render_tf_serving_network_policy(*, namespace: str = K8S_NAMESPACE) -> dict:
    """The ``networking.k8s.io/v1`` NetworkPolicy of the TF Serving predictor pods (manifests/base).

    It admits the ports of ``TF_SERVING_INGRESS_PORTS`` only, so TF Serving's gRPC port, whose
    ModelService can reload the served models, is closed to other pods; the container's own
    traffic from the queue-proxy comes over localhost, which a NetworkPolicy does not filter.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": TF_SERVING_NETWORK_POLICY, "namespace": namespace, "labels": dict(SERVING_LABELS)},
        "spec": {
            "podSelector": {"matchLabels": dict([TF_SERVING_POD_LABEL])},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": port} for port, _ in TF_SERVING_INGRESS_PORTS]}],
        },
    }


def serving_log_uri_for(storage_uri: str, name: str) -> str | None:
    """Where the InferenceService ``name`` logs its inputs: ``s3://<bucket>/<top prefix>/serving-log/<name>/``.

    ``s3://mlpipeline/mlengine/models/v2`` -> ``s3://mlpipeline/mlengine/serving-log/<name>/``; None for
    a model outside S3 (no bucket to write to).
    """
    from mlengine.components.shared.staging import normalize_uri
    from mlengine.components.shared.storage import split_s3_uri

    uri = normalize_uri(storage_uri)
    if not uri.startswith("s3://"):
        return None
    bucket, key = split_s3_uri(uri)
    top = key.strip("/").split("/")[0] if key.strip("/").count("/") >= 1 else ""
    return f"s3://{bucket}/{top + '/' if top else ''}{SERVING_LOG_SUBDIR}/{name}/"


def serving_log_env(serving_log_uri: str, flush_seconds: int = SERVING_LOG_FLUSH_SECONDS) -> list[dict]:
    """The predictor's env for an s3:// serving log: the URI, the upload interval, S3 via secretKeyRef."""
    from mlengine.components.shared.serving_log import ENV_SERVING_LOG_FLUSH_SECONDS, ENV_SERVING_LOG_URI
    from mlengine.components.shared.staging import normalize_uri
    from mlengine.components.shared.tfjob import SECRET_ENV
    from mlengine.constants import K8S_S3_SECRET

    uri = normalize_uri(serving_log_uri)
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise MlengineError(f"serving_log_uri {serving_log_uri!r}: expected s3://bucket/prefix/")
    if not isinstance(flush_seconds, int) or isinstance(flush_seconds, bool) or flush_seconds < 1:
        raise MlengineError(f"serving_log_flush_seconds {flush_seconds!r}: expected a positive integer")
    env = [{"name": ENV_SERVING_LOG_URI, "value": uri.rstrip("/") + "/"},
           {"name": ENV_SERVING_LOG_FLUSH_SECONDS, "value": str(flush_seconds)}]
    for key, optional in SECRET_ENV:
        ref: dict[str, Any] = {"name": K8S_S3_SECRET, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def render_serving_runtime(*, namespace: str = K8S_NAMESPACE, image: str | None = None,
                           resources: dict | None = None) -> dict:
    """The ``ServingRuntime`` of ``runtime=ours``: the server image with KServe's conventions.

    Model at /mnt/models (the storage initializer's target, the image's ``--model``), ``--model_name``
    from the InferenceService's name (KServe fills ``{{.Name}}``), ``--http_port`` 8080 and readiness
    on the v2 ready endpoint.
    """
    from mlengine.constants import IMAGE_SERVER_PORT, image_for

    container = {
        "name": PREDICTOR_CONTAINER,
        "image": image or image_for("server"),
        "args": ["--model_name={{.Name}}", f"--http_port={IMAGE_SERVER_PORT}"],
        "ports": [{"containerPort": IMAGE_SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": READINESS_PATH, "port": IMAGE_SERVER_PORT},
                           "periodSeconds": 5, "failureThreshold": 60},
        "resources": normalize_resources(DEFAULT_RESOURCES if resources is None else resources),
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {"apiVersion": f"{ISVC_GROUP}/v1alpha1", "kind": "ServingRuntime",
            "metadata": {"name": OUR_RUNTIME, "namespace": namespace,
                         "labels": dict(PART_OF_LABEL)},
            "spec": {"supportedModelFormats": [{"name": OUR_MODEL_FORMAT, "version": "1", "autoSelect": True}],
                     "protocolVersions": ["v1", "v2"], "containers": [container]}}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise MlengineError(f"InferenceService name {name!r}: use lowercase letters, digits and '-', "
                            f"starting with a letter, at most 45 characters")
    return name


def check_storage_uri(uri: str) -> str:
    if not isinstance(uri, str) or not uri.startswith(STORAGE_SCHEMES) or len(uri) <= len(uri.split("://")[0]) + 3:
        raise MlengineError(f"storage URI {uri!r}: expected one of {', '.join(STORAGE_SCHEMES)} followed by a path")
    return uri


def check_percent(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise MlengineError(f"canary traffic percent {value!r}: expected an integer 0..100")
    return value


def normalize_resources(resources: dict) -> dict:
    """Resources with every quantity a string (``cpu: 0.5`` -> ``"0.5"``), checked like Kubernetes does."""
    out: dict[str, dict[str, str]] = {}
    for section, values in resources.items():
        if section not in ("requests", "limits") or not isinstance(values, dict):
            raise MlengineError(f"resources.{section}: expected 'requests' or 'limits' with a mapping")
        out[section] = {}
        for key, value in values.items():
            text = str(value) if not isinstance(value, bool) else ""
            if not QUANTITY_PATTERN.match(text):
                raise MlengineError(f"resources.{section}.{key}: {value!r} is not a Kubernetes quantity")
            out[section][str(key)] = text
    return out


def stage_for_tf_serving(model_dir: str | Path, out_dir: str | Path, version: str = TF_SERVING_VERSION_DIR) -> Path:
    """Copy ``model_dir/serving`` to ``out_dir/<version>/`` (what TF Serving loads); return out_dir.

    Upload ``out_dir`` to MinIO and use its ``s3://`` URI as the storage URI.
    """
    source = Path(model_dir) / SERVING_MODEL_SUBDIR
    if not (source / "saved_model.pb").is_file():
        raise MlengineError(f"{model_dir}: no SavedModel at {SERVING_MODEL_SUBDIR}/saved_model.pb to stage")
    if not str(version).isdigit():
        raise MlengineError(f"TF Serving version directory {version!r}: must be a number")
    target = Path(out_dir) / str(version)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return Path(out_dir)


def inference_service_done(min_generation: int | None = None) -> Callable[[dict], tuple[bool, bool, str]]:
    """The ``done`` function for ``CustomResource.wait``: Ready=True for the current generation, or failed."""

    def done(obj: dict) -> tuple[bool, bool, str]:
        status = obj.get("status") or {}
        generation = (obj.get("metadata") or {}).get("generation")
        wanted = max(int(min_generation or 0), int(generation or 0))
        observed = status.get("observedGeneration")
        model_status = status.get("modelStatus") or {}
        transition = model_status.get("transitionStatus")
        if transition in FAILED_TRANSITIONS:
            failure = model_status.get("lastFailureInfo") or {}
            detail = ": ".join(str(part) for part in (failure.get("reason"), failure.get("message")) if part)
            return True, False, f"model {transition}" + (f" ({detail})" if detail else "")
        conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
        for condition in conditions:
            if condition.get("status") == "False" and condition.get("reason") in FAILED_CONDITION_REASONS:
                return True, False, _describe(condition)
        if wanted and (observed is None or int(observed) < wanted):
            return False, False, f"waiting for the controller to observe generation {wanted}"
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None:
            return False, False, "no Ready condition yet"
        if ready.get("status") == "True":
            return True, True, "Ready"
        not_ready = [c for c in conditions if c.get("status") != "True"]
        return False, False, "; ".join(_describe(c) for c in not_ready) or _describe(ready)

    return done


def _describe(condition: dict) -> str:
    text = f"{condition.get('type')}={condition.get('status')}"
    reason, message = condition.get("reason"), condition.get("message")
    if reason or message:
        text += " (" + ": ".join(str(p) for p in (reason, message) if p) + ")"
    return text


def apply_inference_service(decision: RolloutDecision, *, api=None, timeout: float = 600.0,
                            poll_interval: float = 5.0, name_file: str | None = None) -> dict:
    """Carry out the decision's steps (create or merge-patch, then wait for Ready after each).

    Returns ``{"name", "namespace", "action", "url", "ready", "traffic"}``; a failing condition
    (model failed to load, revision failed) or the timeout raises MlengineError with its reason.
    """
    from mlengine.components.shared.k8s import CustomResource

    resource = CustomResource(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, decision.namespace, api=api)
    obj = None
    for step in decision.steps:
        log.info("deploy %s: %s: %s", decision.name, step.action, step.description)
        if step.is_create:
            obj = resource.create_or_attach(step.body, name_file=name_file)
        else:
            obj = resource.patch(decision.name, step.body)
        generation = (obj.get("metadata") or {}).get("generation")
        obj = resource.wait(decision.name, inference_service_done(generation), timeout=timeout,
                            poll_interval=poll_interval, label=f"deploy {decision.name}")
    if obj is None:
        obj = resource.get(decision.name)
    status = (obj or {}).get("status") or {}
    ready = inference_service_done()(obj)[1] if obj else False
    return {"name": decision.name, "namespace": decision.namespace, "action": decision.action,
            "url": status.get("url"), "ready": ready, "traffic": decision.traffic}


def deploy_to_cluster(new_storage_uri: str, *, name: str, blessed: bool, canary_percent: int = 10,
                      previous_canary_ok: bool | None = None, namespace: str = K8S_NAMESPACE, api=None,
                      timeout: float = 600.0, poll_interval: float = 5.0, name_file: str | None = None,
                      **render_options: Any) -> tuple[RolloutDecision, dict]:
    """Read the current InferenceService, plan the rollout, apply it; return ``(decision, result)``."""
    from mlengine.components.shared.k8s import CustomResource

    resource = CustomResource(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, namespace, api=api)
    existing = resource.get(name)
    from mlengine.components.deploy.rollout import plan_rollout

    decision = plan_rollout(existing, new_storage_uri, blessed, canary_percent, previous_canary_ok,
                            name=name, namespace=namespace, **render_options)
    result = apply_inference_service(decision, api=api, timeout=timeout, poll_interval=poll_interval,
                                     name_file=name_file)
    return decision, result
