"""`--runner docker` refuses clearly, in one line, before any container starts (no engine needed)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def _run(tmp_path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    import os

    data = tmp_path / "taxi.csv"
    subprocess.run([sys.executable, "-m", "mlengine.cli", "generate", "--rows", "200", "--out", str(data)],
                   check=True, capture_output=True)
    return subprocess.run([sys.executable, "-m", "mlengine.cli", "run", "--runner", "docker", "--data", str(data),
                           "--out", str(tmp_path / "out"), "--trials", "0", *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env_extra})


def test_no_docker_engine(tmp_path):
    result = _run(tmp_path, {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"mlengine run: error: no Docker engine: {tmp_path}/no-engine.sock does not exist "
        "(install Docker, then start it, e.g. images/dockerd.sh start)")


def test_engine_not_running(tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # a socket file nobody listens on: what a stopped dockerd leaves
    result = _run(tmp_path, {"DOCKER_HOST": f"unix://{path}"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mlengine run: error: the Docker engine at unix://{path} is not running")
    assert "images/dockerd.sh start" in last


def test_keep_serving_is_refused(tmp_path):
    result = _run(tmp_path, {}, "--keep-serving")
    assert result.returncode == 2
    assert "--keep-serving does not apply to --runner docker" in result.stderr.strip().splitlines()[-1]


def test_a_missing_image_names_make_images():
    import docker

    from mlengine.errors import MlengineError
    from mlengine.pipelines.docker_run import check_images

    class Images:
        def get(self, name):
            raise docker.errors.ImageNotFound(name)

    class Client:
        images = Images()

    with pytest.raises(MlengineError) as err:
        check_images(Client(), ["ghcr.io/mlengine/mlengine-pipeline:0.1.0"])
    assert str(err.value) == ("image ghcr.io/mlengine/mlengine-pipeline:0.1.0 is not built on this machine: "
                              "run `make images`")
    with pytest.raises(MlengineError, match="never :latest"):
        check_images(Client(), ["ghcr.io/mlengine/mlengine-pipeline:latest"])


def test_readable_inputs_are_mounted_private_ones_copied(tmp_path):
    import os

    from mlengine.pipelines.docker_run import absolute_inputs, stage_inputs

    public = tmp_path / "public"
    (public / "shards").mkdir(parents=True)
    (public / "shards" / "part-1.csv").write_text("x\n")
    public.chmod(0o755)
    (public / "shards").chmod(0o755)
    (public / "shards" / "part-1.csv").chmod(0o644)
    private = tmp_path / "private"
    private.mkdir()
    (private / "one.csv").write_text("y\n")
    private.chmod(0o700)
    (private / "one.csv").chmod(0o600)
    uid = 4242 if os.getuid() != 4242 else 4243  # not the owner: only "other" (or group 0) bits count
    staging = tmp_path / "root" / "inputs"
    remapped, volumes = stage_inputs({"data_uri": str(public / "shards" / "part-*.csv"),
                                      "spec_uri": str(private / "one.csv")}, staging, uid)
    assert volumes == {str(public / "shards"): {"bind": str(public / "shards"), "mode": "ro"}}
    assert remapped == {"spec_uri": str(staging / "spec_uri" / "one.csv")}
    assert (staging / "spec_uri" / "one.csv").read_text() == "y\n"
    assert stage_inputs({"data_uri": "s3://bucket/data/"}, staging, uid) == ({}, {})
    fixed = absolute_inputs({"data_uri": "data/x.csv", "spec_uri": "s3://b/spec.yaml", "epochs": 1})
    assert fixed["data_uri"].startswith("/") and fixed["spec_uri"] == "s3://b/spec.yaml" and fixed["epochs"] == 1


def test_the_source_fingerprint_is_the_same_for_a_tree_and_its_install_and_moves_with_the_code(tmp_path):
    from mlengine.pipelines.docker_run import source_fingerprint

    tree, installed = tmp_path / "tree", tmp_path / "site-packages" / "mlengine"
    for root, layout in ((tree, {"mlengine": "mlengine", "components": "components", "pipelines": "pipelines"}),
                         (installed, {"mlengine": ".", "components": "components", "pipelines": "pipelines"})):
        for package, folder in layout.items():
            (root / folder / "sub").mkdir(parents=True, exist_ok=True)
            (root / folder / "sub" / f"{package}.py").write_text(f"NAME = {package!r}\n")
            (root / folder / "__pycache__").mkdir(exist_ok=True)
            (root / folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    tree_dirs = {name: tree / name for name in ("mlengine", "components", "pipelines")}
    installed_dirs = {"mlengine": installed, "components": installed / "components",
                      "pipelines": installed / "pipelines"}
    assert source_fingerprint(tree_dirs) == source_fingerprint(installed_dirs)
    (tree / "components" / "sub" / "components.py").write_text("NAME = 'changed'\n")
    assert source_fingerprint(tree_dirs) != source_fingerprint(installed_dirs)
