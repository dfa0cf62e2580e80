"""What a pipeline is compiled FOR: this machine (kfp.local) or a Kubeflow cluster.

The DAGs in training.py and monitoring.py are written once; the target decides the rest at
compile time:

- both targets: every step's image comes from one registry setting (``--image-registry``,
  ``MLENGINE_IMAGE_REGISTRY``, default ``constants.IMAGE_REGISTRY``), and the step carries that
  setting as an environment variable so the TFJobs and Katib trials it renders name the same
  registry;
- ``cluster``: ``mode=cluster`` and cluster-sized defaults; the MinIO credentials reach every step
  through ``kubernetes.use_secret_as_env`` (a Secret name, never a value); the parameter-server
  shared volume is a ReadWriteMany PVC the run creates (``kubernetes.CreatePVC``), mounts in the
  steps that launch TFJobs (``mount_pvc``) and hands them by name; it is named after the run's
  UUID, so the ``DeletePVC`` of an exit handler (``dsl.ExitHandler``: it runs when the run ends,
  failed or not) can name it without depending on a task. All of it lands in the YAML's
  platform spec, which KFP's backend reads.

A pipeline body asks for its target through :func:`shared_volume` (a ``with`` block around the
steps) and :func:`finish`; the decorated module-level pipelines are the local target,
:func:`build` re-creates one for another.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from dataclasses import dataclass
from typing import Any

from mlengine.constants import (
    ENV_IMAGE_REGISTRY,
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_KEY,
    ENV_S3_SECURE,
    K8S_S3_SECRET,
    image_for,
)
from mlengine.errors import MlengineError

TARGETS = ("cluster", "local")
DEFAULT_SHARED_VOLUME_SIZE = "10Gi"
SHARED_VOLUME_ACCESS_MODES = ["ReadWriteMany"]  # the chief writes, every worker of the TFJob reads
# the PVC's name: KFP's driver puts the run's UUID in place of this placeholder, but only when it
# is a parameter's whole value (backend/src/v2/driver/resolve.go), so there is no prefix
SHARED_VOLUME_NAME = "{{$.pipeline_job_uuid}}"
SHARED_VOLUME_MOUNT = "/shared"  # where the launcher steps see it (the TFJob pods mount it there too)
# pipeline defaults a cluster YAML gets in place of the local ones (the DAG's own defaults)
CLUSTER_DEFAULTS: dict[str, Any] = {"mode": "cluster", "workers": 2, "ps": 1}
# the Secret's keys are the variable names (manifests/README.md creates it so)
REQUIRED_SECRET_ENV = (ENV_S3_ENDPOINT, ENV_S3_ACCESS_KEY, ENV_S3_SECRET_KEY)
OPTIONAL_SECRET_ENV = (ENV_S3_SECURE,)
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$")
_KFP_DRIVER_COMPONENTS = ("createpvc", "deletepvc")  # run by KFP's driver, no container of ours


def check_registry(registry: str) -> str:
    """``host[:port]/path`` in lower case, no scheme, no tag: what ``<registry>/mlengine-<role>:<version>`` needs."""
    value = registry.strip().rstrip("/")
    if not _REGISTRY.match(value):
        raise MlengineError(f"--image-registry {registry!r}: expected host[:port]/path in lower case, "
                            "without http:// or a tag (e.g. registry.example.com:5000/ml)")
    return value


@dataclass(frozen=True)
class Target:
    """One compile: where the YAML runs and what the cluster provides.

    Attributes:
        name: "local" (kfp.local, ``mlengine run``) or "cluster" (upload to Kubeflow).
        image_registry: registry of our images; None = $MLENGINE_IMAGE_REGISTRY or the default.
        s3_secret: the Kubernetes Secret holding the MinIO endpoint and credentials (cluster).
        shared_volume_size: size of the run's ReadWriteMany PVC for parameter-server training (cluster).
        storage_class: StorageClass of that PVC; None = the cluster's default.
    """

    name: str = "local"
    image_registry: str | None = None
    s3_secret: str = K8S_S3_SECRET
    shared_volume_size: str = DEFAULT_SHARED_VOLUME_SIZE
    storage_class: str | None = None

    def __post_init__(self) -> None:
        if self.name not in TARGETS:
            raise MlengineError(f"--target {self.name!r}: expected one of {', '.join(TARGETS)}")
        if self.image_registry is not None:
            object.__setattr__(self, "image_registry", check_registry(self.image_registry))
        if not _DNS_NAME.match(self.s3_secret or ""):
            raise MlengineError(f"--s3-secret {self.s3_secret!r}: not a Kubernetes Secret name")
        if not _QUANTITY.match(self.shared_volume_size or ""):
            raise MlengineError(f"--shared-volume-size {self.shared_volume_size!r}: expected a storage quantity "
                                "like 10Gi")
        if self.storage_class is not None and not _DNS_NAME.match(self.storage_class):
            raise MlengineError(f"--storage-class {self.storage_class!r}: not a StorageClass name")

    @property
    def is_cluster(self) -> bool:
        return self.name == "cluster"

    @property
    def registry(self) -> str:
        """The registry the YAML names (the setting resolved now, at compile time)."""
        from mlengine.constants import image_registry

        return image_registry(self.image_registry)

    @property
    def defaults(self) -> dict[str, Any]:
        """Pipeline parameter defaults this target changes."""
        return dict(CLUSTER_DEFAULTS) if self.is_cluster else {}


class _Build:
    """One pipeline body being run for a target; remembers the CreatePVC task of its claim."""

    def __init__(self, target: Target):
        self.target = target
        self.create_task = None  # the volume users run after it


_current: contextvars.ContextVar[_Build | None] = contextvars.ContextVar("mlengine_pipeline_build", default=None)


@contextlib.contextmanager
def building(target: Target):
    """While a pipeline body runs for ``target`` (see :func:`build`)."""
    token = _current.set(_Build(target))
    try:
        yield target
    finally:
        _current.reset(token)


def _build_state() -> _Build:
    state = _current.get()
    # None: a module-level pipeline decorated at import, which is the local target
    return _Build(Target()) if state is None else state


def current() -> Target:
    return _build_state().target


def build(pipeline, target: Target, outputs: bool = True):
    """The pipeline re-created for ``target`` (a new GraphComponent; the module-level one is untouched).

    ``outputs=False`` drops the pipeline-level outputs (the tasks keep theirs).
    """
    from kfp import dsl

    spec = pipeline.component_spec
    func = pipeline.pipeline_func if outputs else _without_outputs(pipeline.pipeline_func)
    with building(target):
        return dsl.pipeline(name=spec.name, description=spec.description)(func)


def _without_outputs(func):
    """``func`` with the same parameters and docstring, returning nothing (kfp reads the signature)."""
    import functools
    import inspect

    @functools.wraps(func)
    def body(*args, **kwargs) -> None:
        func(*args, **kwargs)

    body.__signature__ = inspect.signature(func).replace(return_annotation=None)
    return body


# --- called from inside pipeline bodies --------------------------------------------------------
@contextlib.contextmanager
def shared_volume():
    """A block around the pipeline's steps; yields the claim name parameter-server TFJobs share.

    Locally "" and nothing else. On a cluster the block is an exit handler: the PVC this run
    creates (named after the run's UUID) is deleted when the steps inside end, whether they
    succeeded or failed, so a failed run does not leave its claim behind.
    """
    state = _build_state()
    target = state.target
    if not target.is_cluster:
        yield ""
        return
    from kfp import dsl, kubernetes

    delete = kubernetes.DeletePVC(pvc_name=SHARED_VOLUME_NAME)
    delete.set_display_name("delete the shared volume")
    delete.set_caching_options(enable_caching=False)
    with dsl.ExitHandler(delete, name="steps-using-the-shared-volume"):
        # no storage_class_name: the cluster's default StorageClass
        extra = {"storage_class_name": target.storage_class} if target.storage_class else {}
        pvc = kubernetes.CreatePVC(pvc_name=SHARED_VOLUME_NAME, access_modes=SHARED_VOLUME_ACCESS_MODES,
                                   size=target.shared_volume_size, **extra)
        pvc.set_display_name("shared volume for parameter-server training")
        pvc.set_caching_options(enable_caching=False)  # a cached run would skip creating its own claim
        state.create_task = pvc
        yield SHARED_VOLUME_NAME


def finish(volume_users=()) -> None:
    """Apply the target to every step of the pipeline being built.

    Args:
        volume_users: the tasks that were handed :func:`shared_volume`'s claim; on a cluster they
            mount it and run after it is created (its exit handler deletes it).
    """
    from kfp.dsl import pipeline_context

    state = _build_state()
    target = state.target
    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    steps = [task for task in pipeline.tasks.values()
             if task.container_spec is not None and task.component_spec.name not in _KFP_DRIVER_COMPONENTS]
    registry = target.registry
    for task in steps:
        task.set_container_image(image_for("pipeline", registry))
        task.set_env_variable(ENV_IMAGE_REGISTRY, registry)
    if not target.is_cluster:
        return
    from kfp import kubernetes

    for task in steps:
        kubernetes.use_secret_as_env(task, target.s3_secret, {key: key for key in REQUIRED_SECRET_ENV})
        kubernetes.use_secret_as_env(task, target.s3_secret, {key: key for key in OPTIONAL_SECRET_ENV},
                                     optional=True)
    if volume_users:
        if state.create_task is None:
            raise MlengineError("platform.finish: volume users given but shared_volume() was not called")
        for task in volume_users:
            kubernetes.mount_pvc(task, pvc_name=SHARED_VOLUME_NAME, mount_path=SHARED_VOLUME_MOUNT)
            task.after(state.create_task)


# --- compiling ---------------------------------------------------------------------------------
PIPELINE_FILES = {"training": "training_pipeline", "monitoring": "monitoring_pipeline"}


def pipeline_file(kind: str, target: Target) -> str:
    """``training_pipeline.cluster.yaml`` / ``training_pipeline.local.yaml``: the target is in the name."""
    return f"{PIPELINE_FILES[kind]}.{target.name}.yaml"


def pipelines_for(target: Target) -> dict[str, Any]:
    """{kind: the pipeline re-created for ``target``} for the training and the monitoring pipeline."""
    from mlengine.pipelines import monitoring, training

    # on a cluster the training steps run inside shared_volume()'s exit handler, and KFP takes
    # pipeline outputs only from the top level: the steps' artifacts are the run's outputs there
    return {"training": build(training.training_pipeline, target, outputs=not target.is_cluster),
            "monitoring": build(monitoring.monitoring_pipeline, target)}


def compile_for(target: Target, out_dir) -> dict[str, str]:
    """Write both pipelines compiled for ``target`` into ``out_dir``; returns {pipeline name: path}."""
    from pathlib import Path

    from kfp import compiler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, pipeline in pipelines_for(target).items():
        inputs = pipeline.component_spec.inputs or {}
        defaults = {key: value for key, value in target.defaults.items() if key in inputs}
        path = out / pipeline_file(kind, target)
        compiler.Compiler().compile(pipeline, str(path), pipeline_parameters=defaults or None)
        written[pipeline.component_spec.name] = str(path)
    return written
