"""Fixtures of the container tests: the Docker engine, the images `make images` built, small runs.

These tests build nothing: they use the images `make images` left in the local engine and fail,
naming that command, when an image is missing (`make test-containers` runs them; plain `make
test` leaves them out with ``-m "not containers"``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlengine.constants import CONTAINER_LABEL, IMAGE_ROLES, IMAGES_BUILD_COMMAND, image_for

RUN_TIMEOUT = 900  # seconds one `mlengine run` in a test may take before it counts as hung
# small data, 2 epochs, no tuning: one training process, so both runners train the same model (and
# one good enough to be blessed, so the deploy step starts its server inside its container)
SMALL_ROWS = 20_000
SMALL_RUN_ARGS = ["--trials", "0", "--epochs", "2", "--batch-size", "64", "--learning-rate", "0.01"]


@pytest.fixture(scope="session")
def docker_client():
    """A client of the local engine; the test fails (not skips) when none answers."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as err:
        pytest.fail(f"no Docker engine answers ({err}): start one (images/dockerd.sh start), "
                    f"then `{IMAGES_BUILD_COMMAND}`", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(docker_client):
    """{role: image} for every role; fails naming `make images` when one is not built."""
    import docker

    images = {}
    for role in IMAGE_ROLES:
        name = image_for(role)
        try:
            docker_client.images.get(name)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {name} is not built: run `{IMAGES_BUILD_COMMAND}` first", pytrace=False)
        images[role] = name
    return images


def mlengine(*args: str, timeout: float = RUN_TIMEOUT, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the `mlengine` command line of this interpreter; output captured as text."""
    result = subprocess.run([sys.executable, "-m", "mlengine.cli", *args], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"mlengine {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}", pytrace=False)
    return result


def run_containers(client, run_label_only: bool = False) -> list:
    """Containers of `mlengine run --runner docker` (label), or all containers."""
    filters = {"label": CONTAINER_LABEL} if run_label_only else {}
    return client.containers.list(all=True, filters=filters)


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    """Generated taxi rows outside any pipeline root (the runner must make them visible to the steps)."""
    path = tmp_path_factory.mktemp("container-data") / f"taxi-{SMALL_ROWS}.csv"
    mlengine("generate", "--rows", str(SMALL_ROWS), "--seed", "5", "--out", str(path))
    return path


@pytest.fixture(scope="session")
def docker_run(tmp_path_factory, small_csv, built_images, docker_client) -> dict:
    """One `mlengine run --runner docker` on the small data: its summary, output folder and stdout."""
    before = {c.id for c in run_containers(docker_client)}
    out = tmp_path_factory.mktemp("docker-run")
    result = mlengine("run", "--runner", "docker", "--data", str(small_csv), "--out", str(out), *SMALL_RUN_ARGS)
    after = {c.id for c in run_containers(docker_client)}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {"summary": summary, "out": out, "stdout": result.stdout, "stderr": result.stderr,
            "new_containers": after - before}


@pytest.fixture(scope="session")
def subprocess_run(tmp_path_factory, small_csv) -> dict:
    """The same run under the default runner (kfp.local's SubprocessRunner, no containers)."""
    out = tmp_path_factory.mktemp("subprocess-run")
    result = mlengine("run", "--data", str(small_csv), "--out", str(out), *SMALL_RUN_ARGS)
    return {"summary": json.loads((out / "summary.json").read_text(encoding="utf-8")), "out": out,
            "stdout": result.stdout}
