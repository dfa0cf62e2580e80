"""The images `make images` built: tags, labels, user, entrypoints, and what must not be inside."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlengine.constants import IMAGE_DEFAULT_UID, IMAGE_ROLES, IMAGES_BUILD_COMMAND, SOURCE_FINGERPRINT_LABEL, image_for
from mlengine.version import __version__

pytestmark = pytest.mark.containers

ENTRYPOINTS = {
    "pipeline": ["python", "-m", "mlengine.cli"],
    "trainer": ["python", "-m", "mlengine.components.train.task"],
    "server": ["python", "-m", "mlengine.cli", "serve", "--host", "0.0.0.0", "--port", "8080", "--model",
               "/mnt/models"],
}
ARBITRARY_UID = 1000680000

# Walks the image's filesystem (run inside it as root, to see every folder) and prints JSON:
# what a final image must not hold, the PEM certificates it holds (with the package that installed
# each file unchanged, from pip's RECORD or dpkg's md5sums), and files equal to the host's CA bundle.
SCANNER = r"""
import base64, csv, glob, hashlib, json, os, re, sys
bundle_size, bundle_sha = int(sys.argv[1]), sys.argv[2]
found = {"git": [], "tests": [], "pip_cache": [], "wheels": [], "compilers": [], "host_bundle": [], "pem": {},
         "owner": {}}
digests = {}  # certificate file: its sha256 as pip's RECORD writes it, its md5 as dpkg's md5sums
records = {}  # path: (package, "sha256=..." as pip's RECORD writes it, or "md5:..." from dpkg)
for md5sums in glob.glob("/var/lib/dpkg/info/*.md5sums"):
    package = os.path.basename(md5sums)[:-len(".md5sums")]
    for line in open(md5sums, encoding="utf-8", errors="replace"):
        digest, _, name = line.strip().partition("  ")
        records["/" + name] = ("dpkg:" + package, "md5:" + digest)
pem = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for d in dirs:
        path = os.path.join(top, d)
        if d == ".git":
            found["git"].append(path)
        # our tests (a tests folder in our package, or the repository's tests/ copied anywhere)
        if (d in ("tests", "test") and "/site-packages/mlengine/" in path + "/") or path.endswith("/tests/containers"):
            found["tests"].append(path)
        if path.endswith("/.cache/pip") or path.endswith("/wheelhouse"):
            found["pip_cache"].append(path)
    if top.endswith(".dist-info") and "RECORD" in files:
        site = os.path.dirname(top)
        for row in csv.reader(open(os.path.join(top, "RECORD"), encoding="utf-8", errors="replace")):
            name, digest = (row + ["", ""])[:2]
            if digest:
                records[os.path.normpath(os.path.join(site, name))] = ("pip:" + os.path.basename(top), digest)
    for f in files:
        path = os.path.join(top, f)
        # (Debian's python3-venv ships pip/setuptools wheels for ensurepip: part of the base, not a wheelhouse)
        if f.endswith(".whl") and not top.startswith("/usr/share/python-wheels"):
            found["wheels"].append(path)
        if (f.startswith("test_") or f == "conftest.py") and "/site-packages/mlengine/" in path:
            found["tests"].append(path)
        if re.fullmatch(r"(gcc|g\+\+|cc|c\+\+|clang|x86_64-linux-gnu-gcc.*)", f) and top.endswith("bin"):
            found["compilers"].append(path)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        size = os.path.getsize(path)
        if size == bundle_size and hashlib.sha256(open(path, "rb").read()).hexdigest() == bundle_sha:
            found["host_bundle"].append(path)
        if f.endswith((".pem", ".crt")) and size < 5_000_000:
            data = open(path, "rb").read()
            found["pem"][path] = [m.decode() for m in pem.findall(data)]
            sha256 = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
            digests[path] = (sha256, "md5:" + hashlib.md5(data).hexdigest())
# after the walk: a package's RECORD may be read after the files it lists
for path, digest_pair in digests.items():
    package, digest = records.get(path, (None, ""))
    found["owner"][path] = package if digest in digest_pair else None
print(json.dumps(found))
"""


def _host_ca_bundle() -> Path:
    """The CA bundle the build machine's pip trusts (`pip config list`: cert), else the system one."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".cert"):
            return Path(value.strip().strip("'\""))
    return Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def scans(built_images, docker_client) -> dict[str, dict]:
    import hashlib

    bundle = _host_ca_bundle()
    data = bundle.read_bytes() if bundle.is_file() else b""
    results = {}
    for role, image in built_images.items():
        output = docker_client.containers.run(
            image, entrypoint=["python", "-c", SCANNER], command=[str(len(data)), hashlib.sha256(data).hexdigest()],
            user="0:0", remove=True, stdout=True, stderr=False)
        results[role] = json.loads(output)
    return results


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_tag_labels_user_and_entrypoint(role, built_images, docker_client):
    image = docker_client.images.get(built_images[role])
    assert image_for(role) in image.tags
    assert all(not tag.endswith(":latest") for tag in image.tags)
    config = image.attrs["Config"]
    labels = config["Labels"] or {}
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"]
    from mlengine.pipelines.docker_run import installed_fingerprint

    assert labels[SOURCE_FINGERPRINT_LABEL] == installed_fingerprint(), \
        f"{image_for(role)} holds other sources than this checkout: run `{IMAGES_BUILD_COMMAND}`"
    assert config["User"] == f"{IMAGE_DEFAULT_UID}:0"
    assert config["Entrypoint"] == ENTRYPOINTS[role]
    assert not any(name.split("=", 1)[0].startswith(("AWS_", "PIP_", "REQUESTS_CA", "SSL_CERT"))
                   for name in config["Env"])


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_history_has_no_wheelhouse_certificate_or_secret(role, built_images, docker_client):
    history = docker_client.api.history(built_images[role])
    commands = "\n".join(layer.get("CreatedBy", "") for layer in history)
    source = docker_client.images.get(built_images[role]).labels["org.opencontainers.image.source"]
    assert source == "unknown" or re.match(r"^(https?|ssh|git)://[^@/]+/|^[^/:@]+@[^/:]+:", source), source
    assert not source.endswith(".git"), source
    # the source URL is a label, not a copied repository: it is checked above, not by the words below
    commands = commands.replace(source, "<source>")
    for word in ("wheelhouse", "cert", "secret", "PIP_", "pip config", ".git"):
        assert word not in commands, word


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_no_git_tests_pip_cache_wheels_or_compilers(role, scans):
    scan = scans[role]
    for kind in ("git", "tests", "pip_cache", "wheels", "compilers"):
        assert scan[kind] == [], kind


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_no_ca_bundle_from_the_build_machine(role, scans):
    scan = scans[role]
    assert scan["host_bundle"] == []  # no file is byte for byte the host's bundle

    def certificates(path: str) -> set[str]:
        return {re.sub(r"\s+", "", body) for body in scan["pem"][path]}

    # Every certificate in the image lies in a file a package installed unchanged (pip's RECORD,
    # dpkg's md5sums), or in Debian's bundle made from those files. A build machine's own CA (a
    # proxy's, a company's) is in neither. (A comparison with the host's bundle instead failed on a
    # host whose ca-certificates release differed from the image's.)
    packaged = set().union(*(certificates(path) for path, owner in scan["owner"].items() if owner))
    unexplained = {path: len(extra) for path, owner in scan["owner"].items()
                   if not owner and (extra := certificates(path) - packaged)}
    assert unexplained == {}, f"certificates no package installed: {unexplained}"
    # the scan read certificates and matched files to their packages
    assert certificates("/etc/ssl/certs/ca-certificates.crt") <= packaged
    assert len(packaged) > 100
    assert any(owner and owner.startswith("dpkg:ca-certificates") for owner in scan["owner"].values())


def test_any_uid_in_group_0_imports_the_installed_package_from_the_workdir(built_images, docker_client):
    script = ("import mlengine, mlengine.components.train.task, mlengine.pipelines, os, pathlib, sys; "
              "pathlib.Path(os.environ['HOME'], 'probe').write_text('ok'); "
              "print(mlengine.__file__, os.getcwd(), os.getuid(), os.getgid())")
    output = docker_client.containers.run(built_images["pipeline"], entrypoint=["python", "-c", script],
                                          user=f"{ARBITRARY_UID}:0", remove=True).decode().split()
    module_file, workdir, uid, gid = output
    assert module_file.startswith("/opt/mlengine/lib/python3.11/site-packages/mlengine/")
    assert not module_file.startswith(workdir)
    assert (int(uid), int(gid)) == (ARBITRARY_UID, 0)


def test_pipeline_entrypoint_is_the_mlengine_cli(built_images, docker_client):
    output = docker_client.containers.run(built_images["pipeline"], command=["--version"], remove=True).decode()
    assert output.strip() == f"mlengine {__version__}"


def test_trainer_image_runs_the_training_program_of_a_tfjob_replica(docker_run, built_images, docker_client,
                                                                    tmp_path):
    """The trainer image's entrypoint trains from the pipeline's splits, as one TFJob replica would."""
    model_dir = Path(docker_run["summary"]["model_dir"])
    root = docker_run["out"] / "pipeline-root"
    config = json.loads((model_dir / "train_config.json").read_text(encoding="utf-8"))
    output = tmp_path / "output"
    output.mkdir()
    output.chmod(0o2775)  # group 0 writable, as the image expects of every path it writes
    from mlengine.components.train.trainer import TrainConfig

    # the training program's own flags only (the artifact's copy may carry lineage fields too)
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    config = {key: value for key, value in config.items() if key in fields}
    config.update(model_dir="/output/model", epochs=1)
    (output / "train_config.json").write_text(json.dumps(config), encoding="utf-8")
    container = docker_client.containers.run(
        built_images["trainer"], command=["--config", "/output/train_config.json", "--strategy", "none",
                                          "--result-file", "/output/result.json"],
        user=f"{ARBITRARY_UID}:0", detach=True,
        volumes={str(root): {"bind": str(root), "mode": "ro"}, str(output): {"bind": "/output", "mode": "rw"}})
    try:
        code = container.wait(timeout=600)["StatusCode"]
        logs = container.logs().decode("utf-8", errors="replace")
    finally:
        container.remove(force=True)
    assert code == 0, logs[-3000:]
    assert (output / "model" / "serving" / "saved_model.pb").is_file()
    result = json.loads((output / "result.json").read_text(encoding="utf-8"))
    assert result  # the chief's result JSON, what the TFJob launcher reads back
