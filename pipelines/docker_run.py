"""`mlengine run --runner docker`: the compiled training pipeline, every step in the image its YAML names.

This is the closest a single machine gets to a Kubeflow run: the YAML a user uploads (loaded back
with ``kfp.components.load_component_from_file``, not the Python function) runs under
``kfp.local.DockerRunner``, each step in its own container of the image the YAML names, with the
pipeline root bind-mounted at the same path. The containers run as a non-root UID in group 0
(as OpenShift runs pods) against a group-writable pipeline root, like an emptyDir on a cluster.

kfp.local's own container loop is replaced by :func:`_run_step_container` for the length of the
run, because kfp's version (kfp 2.17) runs containers with ``auto_remove`` and reports a step as
succeeded when its container is already gone at ``wait()``, pulls missing images, and cannot add
mounts. Ours keeps the exit code, names the missing image with the command that builds it, shows
a failing step's log, mounts the input data read-only, and removes every container it started,
on success, failure and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlengine.constants import (
    CONTAINER_LABEL,
    CONTAINER_PASSTHROUGH_ENV,
    IMAGE_DEFAULT_UID,
    IMAGES_BUILD_COMMAND,
    SOURCE_FINGERPRINT_LABEL,
)
from mlengine.errors import MlengineError

FAILED_LOG_LINES = 40  # how much of a failing step's log reaches the console (all of it is in pipeline.log)
_DEFAULT_SOCKET = "/var/run/docker.sock"
log = logging.getLogger(__name__)


def docker_client():
    """A client of the Docker engine, or a one-line MlengineError saying why there is none."""
    try:
        import docker
    except ImportError:
        raise MlengineError("--runner docker needs the `docker` Python package (pip install docker)") from None
    host = os.environ.get("DOCKER_HOST", f"unix://{_DEFAULT_SOCKET}")
    socket = host[len("unix://"):] if host.startswith("unix://") else None
    if socket and not os.path.exists(socket):
        raise MlengineError(f"no Docker engine: {socket} does not exist (install Docker, then start it, "
                            f"e.g. images/dockerd.sh start)")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise MlengineError(f"the Docker engine at {host} is not running or refuses this user ({reason}); "
                            f"start it, e.g. images/dockerd.sh start") from None
    return client


def pipeline_images(pipeline_yaml: str | Path) -> list[str]:
    """Every container image the compiled pipeline's executors name, in order, without repeats."""
    import yaml

    images: list[str] = []
    with open(pipeline_yaml, encoding="utf-8") as handle:
        for document in yaml.safe_load_all(handle):
            executors = ((document or {}).get("deploymentSpec") or {}).get("executors") or {}
            for executor in executors.values():
                image = (executor.get("container") or {}).get("image")
                if image and image not in images:
                    images.append(image)
    return images


def source_fingerprint(package_dirs: dict[str, str | Path]) -> str:
    """A hash of the package's Python sources and data files, the same for a source tree and its install.

    ``package_dirs`` maps ``mlengine``, ``components`` and ``pipelines`` to their folders (a source
    tree's top-level folders, or an install where the last two sit inside the first).
    """
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(package_dirs):
        top = Path(package_dirs[name])
        for path in sorted(top.rglob("*")):
            relative = path.relative_to(top)
            if (not path.is_file() or "__pycache__" in relative.parts or path.suffix not in (".py", ".yaml", ".json")
                    or (name == "mlengine" and relative.parts[0] in ("components", "pipelines"))):
                continue
            digest.update(f"{name}/{relative.as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def installed_fingerprint() -> str:
    """:func:`source_fingerprint` of the package this process imports (the code that compiles the YAML)."""
    import mlengine
    import mlengine.components
    import mlengine.pipelines

    return source_fingerprint({"mlengine": Path(mlengine.__file__).parent,
                               "components": Path(next(iter(mlengine.components.__path__))),
                               "pipelines": Path(next(iter(mlengine.pipelines.__path__)))})


def warn_if_stale(client, images: list[str]) -> None:
    """One warning line when an image holds other package sources than this process runs."""
    here = installed_fingerprint()
    for image in images:
        labels = client.images.get(image).labels or {}
        built = labels.get(SOURCE_FINGERPRINT_LABEL)
        if built and built != here:
            log.warning(f"run: warning: {image} was built from other sources than this checkout "
                        f"({built} vs {here}): the steps run the image's code; rebuild with `{IMAGES_BUILD_COMMAND}`")


def check_images(client, images: list[str]) -> None:
    """One line naming the first image that is not built here, and the command that builds it."""
    import docker

    for image in images:
        if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
            raise MlengineError(f"image {image}: a pipeline step must name a versioned tag, never :latest")
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise MlengineError(f"image {image} is not built on this machine: run `{IMAGES_BUILD_COMMAND}`") from None


def container_uid() -> int:
    """The caller's own UID when it is not root (its files stay its own), else the image's user; group is 0."""
    uid = os.getuid()
    return uid if uid != 0 else IMAGE_DEFAULT_UID


def make_group_writable_root(root: Path) -> None:
    """Create the pipeline root group-writable (setgid), as a cluster's emptyDir is for group 0.

    A missing bind-mount source would be created by dockerd as root with mode 755, which a non-root
    step cannot write into; created here first, every UID of group 0 can.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o2775)


def _mount_source(path: str) -> str:
    """The folder to mount for a local input: a file's folder, a folder itself, a glob's folder before its wildcard."""
    if glob.has_magic(path):
        return os.path.dirname(path[: min(path.index(c) for c in "*?[" if c in path)])
    return path if os.path.isdir(path) else os.path.dirname(path)


def _input_files(path: str) -> list[str]:
    if glob.has_magic(path):
        return sorted(glob.glob(path))
    if os.path.isdir(path):
        return sorted(str(p) for p in Path(path).rglob("*") if p.is_file())
    return [path] if os.path.isfile(path) else []


def _readable_by(uid: int, folder: str, files: list[str]) -> bool:
    """Whether ``uid`` (group 0) can list ``folder`` and read ``files`` through a bind mount of ``folder``."""

    def allowed(path: str, need: int) -> bool:
        info = os.stat(path)
        if info.st_uid == uid:
            return info.st_mode & (need << 6) == need << 6
        if info.st_gid == 0:
            return info.st_mode & (need << 3) == need << 3
        return info.st_mode & need == need

    return allowed(folder, 0o5) and all(allowed(f, 0o4) for f in files)


def stage_inputs(arguments: dict[str, Any], staging_dir: Path, uid: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Make local inputs visible inside the steps: ({argument: URI the steps get}, extra volumes).

    A local input is bind-mounted read-only at its own path when the container's user can read it
    there; otherwise (a private folder such as a 0700 temporary directory) its files are copied
    into ``staging_dir`` inside the pipeline root, group-readable, and the step gets that URI.
    ``s3://`` and other remote URIs are left alone.
    """
    remapped: dict[str, str] = {}
    volumes: dict[str, Any] = {}
    for key in ("data_uri", "spec_uri"):
        uri = arguments.get(key)
        if not isinstance(uri, str) or not uri or "://" in uri:
            continue
        path = os.path.abspath(uri)
        folder, files = _mount_source(path), _input_files(path)
        if not folder or folder == "/" or not os.path.isdir(folder):
            continue
        if _readable_by(uid, folder, files):
            volumes[folder] = {"bind": folder, "mode": "ro"}
            continue
        import shutil

        target = staging_dir / key
        for file in files:
            copy = target / os.path.relpath(file, folder)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, copy)  # a new file: the umask's group-readable mode, not the source's
        remapped[key] = str(target / os.path.relpath(path, folder))
    return remapped, volumes


def absolute_inputs(arguments: dict[str, Any]) -> dict[str, Any]:
    """Local data and spec paths made absolute: a step's working directory is the image's HOME."""
    fixed = dict(arguments)
    for key in ("data_uri", "spec_uri"):
        value = fixed.get(key)
        if isinstance(value, str) and value and "://" not in value:
            fixed[key] = os.path.abspath(value)
    return fixed


def _passthrough_environment() -> dict[str, str]:
    # object-store settings the steps read, from the caller's environment at run time only:
    # never baked into an image or the YAML
    return {name: os.environ[name] for name in CONTAINER_PASSTHROUGH_ENV if os.environ.get(name)}


def _step_name(command: list[str]) -> str:
    """The component function a kfp lightweight step runs (``--function_to_execute NAME``)."""
    for flag, value in itertools.pairwise(command):
        if flag == "--function_to_execute":
            return value
    return "step"


def _run_step_container(client, image: str, command: list[str], volumes: dict[str, Any], *,
                        run_id: str, user: str, extra_volumes: dict[str, Any], **run_args) -> int:
    """Run one step as Kubernetes would: ``command`` replaces the image's entrypoint; returns its exit code."""
    import docker

    step = _step_name(command)
    environment = {**_passthrough_environment(), **run_args.pop("environment", {})}
    print(f"Running {step} in {image} as user {user}\n")
    container = client.containers.run(
        image=image, entrypoint=command[:1], command=command[1:], user=user, environment=environment,
        volumes={**extra_volumes, **volumes}, labels={CONTAINER_LABEL: run_id}, detach=True,
        name=f"mlengine-{run_id}-{step}-{uuid.uuid4().hex[:6]}", **run_args)
    try:
        tail: list[str] = []
        for chunk in container.logs(stream=True, follow=True):
            text = chunk.decode("utf-8", errors="replace")
            print(text, end="")
            tail = (tail + text.splitlines())[-FAILED_LOG_LINES:]
        code = int(container.wait()["StatusCode"])
        if code != 0:
            # straight to the console (stdout is filtered into pipeline.log): the user sees why
            print(f"--- step {step} failed in its container (exit {code}); last lines of its log:",
                  *tail, "---", sep="\n", file=sys.stderr, flush=True)
        return code
    finally:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)  # also on Ctrl-C: a removed container stops running


def remove_run_containers(client, run_id: str) -> int:
    """Remove every container (running or not) labelled with ``run_id``; returns how many."""
    import docker

    removed = 0
    for container in client.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={run_id}"}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)
            removed += 1
    return removed


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM (a CI job stopped, `kill`) unwinds like Ctrl-C, so the step's container is removed too."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def docker_pipeline(out: Path, pipeline_yaml: str | Path, arguments: dict[str, Any], *,
                    enable_caching: bool = False) -> Iterator[Callable[..., Any]]:
    """kfp.local set up for the compiled pipeline under DockerRunner; yields the pipeline to call.

    Checks first (one line each, before any container starts): a Docker engine answers, every image
    the YAML names is built. On leaving, kfp.local's container loop is restored and every container
    labelled with this run is removed, whatever happened.
    """
    from kfp import components, local
    from kfp.local import docker_task_handler

    if arguments.get("keep_serving"):
        raise MlengineError("--keep-serving does not apply to --runner docker (the deploy step's container is "
                            "removed); serve the model from the server image instead (see README)")
    client = docker_client()
    original = docker_task_handler.run_docker_container
    run_id = uuid.uuid4().hex[:10]
    old_umask = os.umask(0o002)  # what the host makes for the steps (inputs, kfp.local's folders): group-writable
    try:
        images = pipeline_images(pipeline_yaml)
        check_images(client, images)
        warn_if_stale(client, images)
        root = out / "pipeline-root"
        make_group_writable_root(root)
        uid = container_uid()
        user = f"{uid}:0"
        given = absolute_inputs(arguments)
        # a stable staging folder: a --resume run gets the same URIs, so kfp.local's cache still matches
        remapped, extra_volumes = stage_inputs(given, root / "inputs", uid)

        def run_step(client, image, command, volumes, **run_args):
            return _run_step_container(client, image, command, volumes, run_id=run_id, user=user,
                                       extra_volumes=extra_volumes, **run_args)

        def run_pipeline(**kwargs):
            kwargs = absolute_inputs(kwargs)
            for key, uri in remapped.items():
                if kwargs.get(key) == given.get(key):
                    kwargs[key] = uri
            return pipeline(**kwargs)

        pipeline = components.load_component_from_file(str(pipeline_yaml))
        local.init(runner=local.DockerRunner(), pipeline_root=str(root), enable_caching=enable_caching,
                   cache_root=str(out / "task-cache"))
        docker_task_handler.run_docker_container = run_step
        with _sigterm_as_interrupt():
            yield run_pipeline
    finally:
        os.umask(old_umask)
        docker_task_handler.run_docker_container = original
        remove_run_containers(client, run_id)
        client.close()


if __name__ == "__main__":
    # images/build.sh labels each image with the fingerprint of the tree it was built from
    print(source_fingerprint({name: Path(sys.argv[1]) / name for name in ("mlengine", "components", "pipelines")}))
