"""``mlengine rehearse``: run the rendered cluster resources on the local Docker engine.

The resources are the ones ``mlengine manifests`` renders (``render_cluster_manifests``, one code
path); this module only plays the controllers:

- the cluster's MinIO: moto's S3 server in a container (an image built on the pipeline image with
  moto's wheels, no registry needed), reachable as ``minio:9000`` on the rehearsal network; a
  bucket holding the splits, the transform and (after training) the model, where a cluster run
  puts them;
- the Training Operator: one container per replica of the TFJob, from its pod template (image,
  command, args, env with ``secretKeyRef`` resolved from a Secret-like env file, emptyDir and the
  ReadWriteMany claim as Docker volumes), reachable as ``<job>-<type>-<index>:2222``, ``TF_CONFIG``
  as the operator builds it, restartPolicy and backoffLimit honoured;
- KServe: the storage initializer (``storageUri`` copied into ``/mnt/models``), then the
  predictor container; its v1/v2 answers are compared with ``mlengine serve`` on the same model.

Credentials reach the containers only as environment variables (never a command line, image,
manifest, report or log: logs are scrubbed). Everything created carries the label
``io.mlengine.rehearsal=<id>`` and is removed at the end, on failure and on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared.storage import split_s3_uri
from mlengine.constants import (
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_KEY,
    ENV_TF_CONFIG,
    IMAGE_DEFAULT_UID,
    IMAGE_MODEL_DIR,
    IMAGE_SERVER_PORT,
    IMAGES_BUILD_COMMAND,
    K8S_S3_SECRET,
    REHEARSAL_LABEL,
    REHEARSAL_S3_HOST,
    REHEARSAL_S3_IMAGE,
    REHEARSAL_S3_PORT,
    REHEARSAL_TFJOB_PORT,
    image_for,
)
from mlengine.errors import MlengineError

MOTO_REQUIREMENT = "moto[server]==5.2.5"
# KServe's storage initializer's own download code (the package its storage-initializer image runs)
KSERVE_STORAGE_REQUIREMENT = "kserve-storage==0.21.0"
REHEARSAL_REQUIREMENTS = (MOTO_REQUIREMENT, KSERVE_STORAGE_REQUIREMENT)
S3_SERVER_SCRIPT = Path(__file__).with_name("s3server.py")
S3_SOURCE_LABEL = "io.mlengine.rehearsal-s3-source"
DATA_ROOT = "s3://mlpipeline/mlengine/run"
MODEL_URI = "s3://mlpipeline/mlengine/models/v2"
PREVIOUS_MODEL_URI = "s3://mlpipeline/mlengine/models/v1"
START_TIMEOUT = 60.0  # seconds a container may stay "created" before it counts as never started
JOB_TIMEOUT = 900.0
READY_TIMEOUT = 180.0
SERVING_LOG_FLUSH_SECONDS = 3  # the rendered predictor uploads its log this often here (60 s on a cluster)
LOG_TAIL = 40
RETRYABLE_EXIT_CODES = range(128, 256)  # restartPolicy ExitCode: signals (OOM, eviction) are retried, 1-127 not


class RehearsalError(MlengineError):
    """The one-line reason a rehearsal stopped (bad input, a failing replica...)."""


# --- the env file (a Secret's data) ------------------------------------------------------------------
def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, blank lines skipped), as ``kubectl create secret --from-env-file``."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise RehearsalError(f"--env-file {path}: cannot read it ({err.strerror})") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise RehearsalError(f"--env-file {path}: line {number} is not KEY=value")
        values[key.strip()] = value.strip()
    return values


def resolve_env(env: list[dict], secret: dict[str, str], secret_name: str, where: str) -> dict[str, str]:
    """A container's ``env`` as the kubelet resolves it: literals and ``secretKeyRef`` from ``secret``."""
    out: dict[str, str] = {}
    for item in env or []:
        name = item["name"]
        if "value" in item:
            out[name] = str(item["value"])
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise RehearsalError(f"{where}: env {name}: only value and secretKeyRef are rehearsed")
        if ref.get("name") != secret_name:
            raise RehearsalError(f"{where}: env {name} refers to Secret {ref.get('name')!r}; the rehearsal has "
                                 f"only {secret_name!r} (the env file)")
        if ref["key"] in secret:
            out[name] = secret[ref["key"]]
        elif not ref.get("optional"):
            raise RehearsalError(f"{where}: couldn't find key {ref['key']} in Secret {secret_name} "
                                 "(CreateContainerConfigError)")
    return out


class Scrubber:
    """Replaces every credential value in a text with ``****`` (for logs and reports)."""

    def __init__(self, values):
        self.values = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "****")
        return text


# --- what the rehearsal creates, and its removal ------------------------------------------------------
@dataclass
class Engine:
    """The Docker client and everything this rehearsal created (removed by ``cleanup``)."""

    client: Any
    rehearsal_id: str
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return {REHEARSAL_LABEL: self.rehearsal_id}

    def name(self, base: str) -> str:
        return f"{base}-{self.rehearsal_id}"

    def network(self, base: str) -> str:
        net = self.client.networks.create(self.name(base), driver="bridge", labels=self.labels)
        self.networks.append(net.name)
        return net.name

    def volume(self, base: str) -> str:
        vol = self.client.volumes.create(name=self.name(base), labels=self.labels)
        self.volumes.append(vol.name)
        return vol.name

    def create(self, image: str, *, name: str, network: str, alias: str | None = None,
               entrypoint: list[str] | None = None, command: list[str] | None = None,
               environment: dict[str, str] | None = None, binds: dict[str, str] | None = None,
               user: str | None = None, group_add: list[str] | None = None,
               ports: dict[int, int] | None = None) -> str:
        """Create (not start) a container; the Docker ``environment`` keeps values off every command line."""
        api = self.client.api
        host_config = api.create_host_config(
            binds={source: {"bind": target, "mode": "rw"} for source, target in (binds or {}).items()},
            network_mode=network, group_add=group_add,
            port_bindings={port: ("127.0.0.1", host) for port, host in (ports or {}).items()})
        networking = api.create_networking_config(
            {network: api.create_endpoint_config(aliases=[alias] if alias else None)})
        created = api.create_container(
            image, command=command, entrypoint=entrypoint, environment=environment, name=self.name(name),
            hostname=alias, user=user, labels=self.labels, host_config=host_config, networking_config=networking,
            ports=list(ports or {}))
        self.containers.append(created["Id"])
        return created["Id"]

    def cleanup(self) -> None:
        """Remove this rehearsal's containers, networks and volumes (and only those), whatever state they are in."""
        import docker

        filters = {"label": f"{REHEARSAL_LABEL}={self.rehearsal_id}"}
        try:
            ids = set(self.containers) | {c.id for c in self.client.containers.list(all=True, filters=filters)}
            for cid in ids:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_container(cid, force=True, v=True)
            for net in {*self.networks, *(n.name for n in self.client.networks.list(filters=filters))}:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.networks.get(net).remove()
            for vol in {*self.volumes, *(v.name for v in self.client.volumes.list(filters=filters))}:
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.volumes.get(vol).remove(force=True)
        except docker.errors.DockerException as err:
            print(f"rehearse: cleanup incomplete ({err}); remove objects labelled "
                  f"{REHEARSAL_LABEL}={self.rehearsal_id} by hand", file=sys.stderr)


def require_image(client, image: str, what: str) -> None:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RehearsalError(f"{what}: image {image} is not in the local engine (no registry to pull from): "
                             "run `make images`") from None


def check_port_free(port: int, what: str) -> int:
    """``port`` on 127.0.0.1 when it is free (0: any free one); a busy one ends the rehearsal naming it."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise RehearsalError(f"{what}: port {port} on 127.0.0.1 is already in use") from None
        return sock.getsockname()[1]


# --- the S3 server (MinIO's stand-in) ---------------------------------------------------------------
def ensure_s3_image(client, progress, base: str | None = None, build: bool = True) -> str:
    """Build the rehearsal's tools image from the pipeline image and the wheels of moto's S3 server and
    kserve-storage (pip's registry, no container registry): the S3 stand-in and the storage initializer.

    `make images` builds it (``build=True``); a rehearsal only checks it is there for this pipeline
    image, so nothing is downloaded while it runs.
    """
    import hashlib

    import docker

    base = base or image_for("pipeline")
    require_image(client, base, "S3 server")
    # rebuilt when the server script, moto's version or the pipeline image under it changes
    source = hashlib.sha256(S3_SERVER_SCRIPT.read_bytes() + " ".join(REHEARSAL_REQUIREMENTS).encode()
                            + client.images.get(base).id.encode()).hexdigest()[:16]
    try:
        if client.images.get(REHEARSAL_S3_IMAGE).labels.get(S3_SOURCE_LABEL) == source:
            return REHEARSAL_S3_IMAGE
    except docker.errors.ImageNotFound:
        pass
    if not build:
        raise RehearsalError(f"{REHEARSAL_S3_IMAGE} is not built for {base}: run `{IMAGES_BUILD_COMMAND}`")
    progress(f"building {REHEARSAL_S3_IMAGE} on {base} (moto's S3 server, kserve-storage)")
    with tempfile.TemporaryDirectory(prefix="mlengine-s3-image-") as context:
        wheels = Path(context) / "wheels"
        pip = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d",
                              str(wheels), *REHEARSAL_REQUIREMENTS, "pip"], capture_output=True, text=True)
        if pip.returncode != 0:
            raise RehearsalError(f"S3 server: pip download {' '.join(REHEARSAL_REQUIREMENTS)} failed: "
                                 f"{(pip.stderr.strip().splitlines() or ['?'])[-1]}")
        (Path(context) / "s3server.py").write_bytes(S3_SERVER_SCRIPT.read_bytes())
        (Path(context) / "Dockerfile").write_text(
            f"FROM {base}\nUSER 0\nCOPY wheels /tmp/wheels\n"
            # the image's venv has no pip: run pip from its own wheel
            f"RUN python $(ls /tmp/wheels/pip-*.whl)/pip install --quiet --no-index --find-links /tmp/wheels "
            + " ".join(f"'{requirement}'" for requirement in REHEARSAL_REQUIREMENTS) + " && rm -rf /tmp/wheels\n"
            "COPY s3server.py /opt/rehearsal/s3server.py\n"
            f"USER {IMAGE_DEFAULT_UID}:0\nENTRYPOINT [\"python\", \"/opt/rehearsal/s3server.py\"]\n",
            encoding="utf-8")
        try:
            client.images.build(path=context, tag=REHEARSAL_S3_IMAGE, rm=True, forcerm=True,
                                labels={"org.opencontainers.image.title": "mlengine rehearsal S3",
                                        S3_SOURCE_LABEL: source})
        except docker.errors.BuildError as err:
            raise RehearsalError(f"S3 server: building {REHEARSAL_S3_IMAGE} failed: {err}") from None
    return REHEARSAL_S3_IMAGE


@dataclass
class S3Stage:
    """The running S3 server: its in-network endpoint and a host-side client."""

    host_port: int
    access_key: str
    secret_key: str
    image: str = REHEARSAL_S3_IMAGE  # the tools image the S3 server runs in (the storage initializer's too)

    @property
    def cluster_endpoint(self) -> str:
        return f"{REHEARSAL_S3_HOST}:{REHEARSAL_S3_PORT}"

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.host_port}", region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def s3_error(err, bucket: str, endpoint: str, env_file: str) -> RehearsalError:
    """A botocore error as one line; a 403 names the bucket and the env file's keys."""
    response = getattr(err, "response", None) or {}
    code = (response.get("Error") or {}).get("Code") or type(err).__name__
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if status == 403 or code in ("InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch"):
        return RehearsalError(f"s3://{bucket}: 403 {code} from {endpoint}: check {ENV_S3_ACCESS_KEY} / "
                              f"{ENV_S3_SECRET_KEY} in {env_file}")
    return RehearsalError(f"s3://{bucket}: {code} from {endpoint}")


def start_s3(engine: Engine, network: str, server_secret: dict[str, str], client_secret: dict[str, str],
             port: int, env_file: str, bucket: str, progress, pipeline_image: str | None = None) -> S3Stage:
    """Start the S3 server, wait until it answers, create ``bucket``."""
    import botocore.exceptions

    image = ensure_s3_image(engine.client, progress, pipeline_image, build=False)
    access = server_secret.get(ENV_S3_ACCESS_KEY)
    if not access or not client_secret.get(ENV_S3_ACCESS_KEY) or not client_secret.get(ENV_S3_SECRET_KEY):
        raise RehearsalError(f"{env_file}: {ENV_S3_ACCESS_KEY} and {ENV_S3_SECRET_KEY} must be set")
    cid = engine.create(image, name="minio", network=network, alias=REHEARSAL_S3_HOST,
                        environment={ENV_S3_ACCESS_KEY: access, "S3_PORT": str(REHEARSAL_S3_PORT)},
                        ports={REHEARSAL_S3_PORT: port})
    engine.client.api.start(cid)
    stage = S3Stage(port, client_secret[ENV_S3_ACCESS_KEY], client_secret[ENV_S3_SECRET_KEY], image)
    s3 = stage.client()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        info = engine.client.api.inspect_container(cid)["State"]
        if not info["Running"]:
            logs = engine.client.api.logs(cid, tail=LOG_TAIL).decode("utf-8", "replace")
            raise RehearsalError(f"S3 server exited {info['ExitCode']}: {logs.strip().splitlines()[-1:]}")
        try:
            s3.create_bucket(Bucket=bucket)
            return stage
        except botocore.exceptions.EndpointConnectionError:
            pass
        except botocore.exceptions.ClientError as err:
            if err.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return stage
            raise s3_error(err, bucket, f"the S3 server (127.0.0.1:{port})", env_file) from None
        except botocore.exceptions.ConnectionClosedError:
            pass
        if time.monotonic() > deadline:
            raise RehearsalError(f"S3 server: no answer on 127.0.0.1:{port} after {START_TIMEOUT:.0f} s")
        time.sleep(0.5)


def upload_tree(s3, local: Path, uri: str) -> int:
    bucket, prefix = split_s3_uri(uri)
    count = 0
    for path in sorted(local.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}")
            count += 1
    return count


def list_keys(s3, uri: str) -> list[str]:
    bucket, prefix = split_s3_uri(uri)
    keys, token = [], None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix.rstrip("/") + "/"}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        keys += [item["Key"] for item in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def prepare_data(workdir: Path, rows: int, seed: int = 5) -> Path:
    """Small synthetic taxi splits (Parquet, as ingest writes them) and their transform, under workdir."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.constants import PARQUET_PART_PATTERN, SPLIT_FRACTIONS, SPLITS
    from mlengine.synthetic import generate_columns

    spec = load_spec(None)
    columns = generate_columns(rows, seed)
    types = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    bounds, start = {}, 0
    for split in SPLITS:
        stop = rows if split == SPLITS[-1] else start + int(rows * SPLIT_FRACTIONS[split])
        bounds[split], start = (start, stop), stop
    for split, (begin, end) in bounds.items():
        target = workdir / split
        target.mkdir(parents=True, exist_ok=True)
        table = pa.table({col.name: pa.array(list(columns[col.name][begin:end]) if col.type == "string"
                                             else columns[col.name][begin:end], type=types[col.type])
                          for col in spec.all_columns})
        pq.write_table(table, target / PARQUET_PART_PATTERN.format(index=0))
    analyze(str(workdir / "train"), spec, 4).save(workdir / "transform")
    # the statistics artifact holds the feature spec the tuning trials read (--spec)
    import yaml

    from mlengine.constants import SPEC_FILE

    (workdir / "statistics").mkdir(exist_ok=True)
    (workdir / "statistics" / SPEC_FILE).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), encoding="utf-8")
    write_statistics(workdir / "statistics", spec, columns, bounds, seed)
    return workdir


def write_statistics(folder: Path, spec, columns: dict, bounds: dict, seed: int) -> None:
    """statistics.json of the splits as ingest computes it (train and all scopes): what the monitor reads."""
    import numpy as np

    from mlengine.components.ingest.statistics import StatisticsAccumulator, build_statistics
    from mlengine.constants import STATISTICS_FILE

    rng = np.random.default_rng(seed)
    scopes = {}
    for scope, (begin, end) in (("all", (0, max(stop for _, stop in bounds.values()))), ("train", bounds["train"])):
        accumulator = StatisticsAccumulator(spec)
        values = {col.name: np.asarray(columns[col.name][begin:end]) for col in spec.all_columns}
        missing = {name: np.zeros(end - begin, dtype=bool) for name in values}
        accumulator.update(values, missing, rng.integers(0, 2**63, end - begin, dtype=np.uint64))
        scopes[scope] = accumulator
    stats = build_statistics(spec, scopes, {"rows_ok": bounds["train"][1] - bounds["train"][0], "synthetic": True})
    (folder / STATISTICS_FILE).write_text(json.dumps(stats, indent=1), encoding="utf-8")


# --- the Training Operator's part -------------------------------------------------------------------
@dataclass
class Replica:
    job: str
    kind: str  # Chief | PS | Worker
    index: int
    restart_policy: str
    container: dict
    pod_spec: dict
    cid: str | None = None
    restarts: int = 0
    exit_code: int | None = None

    @property
    def service(self) -> str:
        """The replica's Service name as the Training Operator names it."""
        return f"{self.job}-{self.kind.lower()}-{self.index}"


def tfjob_replicas(tfjob: dict) -> list[Replica]:
    name = tfjob["metadata"]["name"]
    replicas = []
    for kind, spec in tfjob["spec"]["tfReplicaSpecs"].items():
        pod = spec["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "tensorflow")
        for index in range(int(spec.get("replicas", 1))):
            replicas.append(Replica(name, kind, index, spec.get("restartPolicy", "Never"), container, pod))
    return replicas


def primary_replica(replicas: list[Replica]) -> Replica:
    """The replica the operator labels job-role=master (Katib's primary pod): the Chief, else Worker 0."""
    return next((r for r in replicas if r.kind == "Chief"), None) or next(
        r for r in replicas if r.kind == "Worker" and r.index == 0)


def tfjob_cluster(replicas: list[Replica]) -> dict[str, list[str]]:
    """TF_CONFIG's cluster: lower-case replica type -> ``<service>:<port>`` (the operator's shape, no namespace)."""
    cluster: dict[str, list[str]] = {}
    for replica in replicas:
        port = next((p["containerPort"] for p in replica.container.get("ports", []) if p.get("name") == "tfjob-port"),
                    REHEARSAL_TFJOB_PORT)
        cluster.setdefault(replica.kind.lower(), []).append(f"{replica.service}:{port}")
    return cluster


def _tail(engine: Engine, cid: str, scrub: Scrubber, lines: int = LOG_TAIL) -> str:
    raw = engine.client.api.logs(cid, tail=lines).decode("utf-8", "replace")
    return scrub(raw).rstrip()


def _last_error_line(logs: str) -> str:
    lines = [line for line in logs.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()
    return lines[-1].strip() if lines else "(no output)"


def prepare_volumes(engine: Engine, replicas: list[Replica], image: str) -> dict[tuple, str]:
    """Docker volumes for the pod volumes: an emptyDir per replica, one volume per claim (shared by all).

    Kubernetes applies ``fsGroup`` to the volumes; here one short root container gives them to
    ``runAsUser:fsGroup`` with group write, which is what the pods see.
    """
    volumes: dict[tuple, str] = {}
    for replica in replicas:
        for vol in replica.pod_spec.get("volumes", []):
            if "emptyDir" in vol:
                volumes[(replica.service, vol["name"])] = engine.volume(f"{replica.service}-{vol['name']}")
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                key = ("claim", claim)
                if key not in volumes:
                    volumes[key] = engine.volume(f"pvc-{claim}")
                volumes[(replica.service, vol["name"])] = volumes[key]
            else:
                raise RehearsalError(f"{replica.service}: volume {vol['name']}: only emptyDir and "
                                     "persistentVolumeClaim are rehearsed")
    security = replicas[0].pod_spec.get("securityContext", {})
    owner = f"{security.get('runAsUser', IMAGE_DEFAULT_UID)}:{security.get('fsGroup', 0)}"
    names = sorted(set(volumes.values()))
    binds = {name: f"/v/{i}" for i, name in enumerate(names)}
    network = engine.networks[0]
    cid = engine.create(image, name="fsgroup", network=network, entrypoint=["sh", "-c"],
                        command=[f"chown -R {owner} /v && chmod -R g+rwX /v"], binds=binds, user="0")
    engine.client.api.start(cid)
    code = engine.client.api.wait(cid, timeout=120)["StatusCode"]
    engine.client.api.remove_container(cid, force=True)
    engine.containers.remove(cid)
    if code != 0:
        raise RehearsalError("could not prepare the pod volumes (chown for fsGroup failed)")
    return volumes


def run_tfjob(engine: Engine, tfjob: dict, *, network: str, secret: dict[str, str], secret_name: str,
              scrub: Scrubber, progress, crash_worker: bool = False, timeout: float = JOB_TIMEOUT) -> dict:
    """Run every replica of ``tfjob`` as a container; return the result (``passed``, restarts, logs)."""
    import docker

    replicas = tfjob_replicas(tfjob)
    for image in {r.container["image"] for r in replicas}:
        require_image(engine.client, image, f"TFJob {tfjob['metadata']['name']}")
    backoff = int(tfjob["spec"].get("runPolicy", {}).get("backoffLimit", 6))
    cluster = tfjob_cluster(replicas)
    volumes = prepare_volumes(engine, replicas, replicas[0].container["image"])
    for replica in replicas:
        env = resolve_env(replica.container.get("env", []), secret, secret_name, replica.service)
        env[ENV_TF_CONFIG] = json.dumps({"cluster": cluster, "task": {"type": replica.kind.lower(),
                                                                      "index": replica.index}})
        security = replica.pod_spec.get("securityContext", {})
        binds = {volumes[(replica.service, m["name"])]: m["mountPath"]
                 for m in replica.container.get("volumeMounts", [])}
        replica.cid = engine.create(
            replica.container["image"], name=replica.service, network=network, alias=replica.service,
            entrypoint=replica.container.get("command"), command=replica.container.get("args"), environment=env,
            binds=binds, user=f"{security.get('runAsUser', IMAGE_DEFAULT_UID)}:0",
            group_add=[str(security["fsGroup"])] if "fsGroup" in security else None)
    for replica in replicas:
        _start(engine, replica, scrub)
    progress(f"TFJob {tfjob['metadata']['name']}: {len(replicas)} replicas started "
             f"({', '.join(r.service for r in replicas)})")
    chief = primary_replica(replicas)
    crashed = not crash_worker
    total_restarts = 0
    deadline = time.monotonic() + timeout
    result: dict[str, Any] = {"replicas": [r.service for r in replicas], "tf_config_cluster": cluster,
                              "commands": {r.service: [*(r.container.get("command") or []),
                                                       *(r.container.get("args") or [])] for r in replicas}}
    while True:
        for replica in replicas:
            state = engine.client.api.inspect_container(replica.cid)["State"]
            if not crashed and replica.kind == "Worker" and state["Running"]:
                engine.client.api.kill(replica.cid)  # the injected crash: SIGKILL, exit 137
                crashed = True
                progress(f"{replica.service}: injected crash (SIGKILL)")
                continue
            if state["Running"] or state["Status"] == "created":
                continue
            code = state["ExitCode"]
            if replica is chief and code == 0:
                replica.exit_code = 0
                result.update(passed=True, chief_exit_code=0, restarts={r.service: r.restarts for r in replicas})
                return result
            if code == 0:
                continue  # a worker that finished (all_reduce) waits for the chief
            policy = replica.restart_policy
            retry = policy in ("Always", "OnFailure") or (policy == "ExitCode" and code in RETRYABLE_EXIT_CODES)
            if retry and total_restarts < backoff:
                replica.restarts += 1
                total_restarts += 1
                progress(f"{replica.service} exited {code}: restarted ({policy}, {total_restarts}/{backoff})")
                try:
                    engine.client.api.start(replica.cid)
                except docker.errors.APIError as err:
                    raise RehearsalError(f"{replica.service} could not restart: {err.explanation}") from None
                continue
            logs = _tail(engine, replica.cid, scrub)
            why = "backoffLimit reached" if retry else f"restartPolicy {policy}"
            result.update(passed=False, failed_replica=replica.service, exit_code=code, logs=logs,
                          restarts={r.service: r.restarts for r in replicas},
                          reason=f"{replica.service} exited {code} ({why}): {_last_error_line(logs)}")
            return result
        if time.monotonic() > deadline:
            result.update(passed=False, reason=f"TFJob not finished after {timeout:.0f} s",
                          logs=_tail(engine, chief.cid, scrub))
            return result
        time.sleep(1.0)


def _start(engine: Engine, replica: Replica, scrub: Scrubber) -> None:
    import docker

    try:
        engine.client.api.start(replica.cid)
    except docker.errors.APIError as err:
        raise RehearsalError(f"{replica.service} never started: {scrub(str(err.explanation))}") from None


# --- Katib's part ---------------------------------------------------------------------------------
def first_suggestion(experiment: dict) -> dict[str, str]:
    """One assignment per parameter, as strings the way Katib's suggestion services return them.

    The rehearsal has no suggestion service: it takes the first value of each feasible space (a list's
    first entry, a range's minimum), which is inside every space the webhook accepts.
    """
    out = {}
    for param in experiment["spec"]["parameters"]:
        space = param.get("feasibleSpace") or {}
        out[param["name"]] = str(space["list"][0] if space.get("list") else space["min"])
    return out


def trial_tfjob(experiment: dict, assignments: dict[str, str], trial_name: str) -> dict:
    """The trial's TFJob: ``${trialParameters.x}`` replaced in the trialSpec text as Katib's trial controller does.

    Each trialParameter's ``reference`` is a parameter name (its assignment) or a ``${trialSpec.*}``
    meta reference (the trial's name, namespace, kind, apiVersion).
    """
    template = experiment["spec"]["trialTemplate"]
    namespace = experiment["metadata"]["namespace"]
    text = json.dumps(template["trialSpec"])
    meta = {"${trialSpec.Name}": trial_name, "${trialSpec.Namespace}": namespace,
            "${trialSpec.Kind}": template["trialSpec"]["kind"],
            "${trialSpec.APIVersion}": template["trialSpec"]["apiVersion"]}
    for param in template["trialParameters"]:
        reference = param["reference"]
        if reference in meta:
            value = meta[reference]
        elif reference in assignments:
            value = assignments[reference]
        else:
            raise RehearsalError(f"Katib trial: trialParameter {param['name']} refers to {reference!r}, "
                                 "which is no parameter of the Experiment")
        text = text.replace("${trialParameters." + param["name"] + "}", value)
    if "${trialParameters." in text:
        left = text[text.index("${trialParameters."):].split("}", 1)[0] + "}"
        raise RehearsalError(f"Katib trial: {left} has no trialParameter")
    tfjob = json.loads(text)
    tfjob["metadata"] = {**tfjob.get("metadata", {}), "name": trial_name, "namespace": namespace}
    return tfjob


def collect_metrics(stdout: str, experiment: dict) -> dict[str, float]:
    """The StdOut collector's rule: every ``metricsFormat`` match of the objective's metrics, the latest kept."""
    import re

    spec = experiment["spec"]
    formats = spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    wanted = {spec["objective"]["objectiveMetricName"], *spec["objective"].get("additionalMetricNames", [])}
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        for pattern in formats:
            for match in re.finditer(pattern, line):
                name, value = match.group(1), match.group(2)
                if name in wanted and value not in ("", "+", "-"):
                    found[name] = float(value)
    return found


def run_trial(engine: Engine, experiment: dict, *, network: str, secret: dict[str, str], secret_name: str,
              scrub: Scrubber, progress, timeout: float) -> dict:
    """One trial of ``experiment``: substitute a suggestion, run its TFJob, read its metric from stdout."""
    assignments = first_suggestion(experiment)
    trial_name = f"{experiment['metadata']['name']}-{secrets.token_hex(4)}"
    tfjob = trial_tfjob(experiment, assignments, trial_name)
    result = run_tfjob(engine, tfjob, network=network, secret=secret, secret_name=secret_name, scrub=scrub,
                       progress=progress, timeout=timeout)
    out = {"name": trial_name, "assignments": assignments, "tfjob": result}
    if not result.get("passed"):
        return {**out, "passed": False, "reason": result["reason"]}
    primary = primary_replica(tfjob_replicas(tfjob))
    stdout = engine.client.api.logs(engine.name(primary.service), stdout=True, stderr=False).decode("utf-8",
                                                                                                     "replace")
    metrics = collect_metrics(stdout, experiment)
    objective = experiment["spec"]["objective"]["objectiveMetricName"]
    if objective not in metrics:
        return {**out, "passed": False, "reason": f"trial {trial_name}: no {objective}=<value> line in "
                f"{primary.service}'s stdout (the StdOut collector's filter found nothing)",
                "logs": scrub(stdout[-3000:])}
    return {**out, "passed": True, "metrics": metrics}


# --- KServe's part --------------------------------------------------------------------------------
def run_inference_service(engine: Engine, isvc: dict, runtimes: dict[str, dict], *, network: str,
                          secret: dict[str, str], s3: S3Stage, scrub: Scrubber, port: int,
                          progress) -> tuple[dict, str | None]:
    """Storage initializer, then the predictor container; returns (result, the predictor's host URL).

    The container comes from the ServingRuntime the predictor's model names (``runtimes``: name ->
    ServingRuntime), with ``{{.Name}}`` filled as KServe fills it.
    """
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model") or {}
    runtime = runtimes.get(model.get("runtime"))
    if runtime is None:
        return ({"passed": False, "reason": f"predictor runtime {model.get('runtime')!r}: only the rendered "
                 "ServingRuntime (runtime=ours) is rehearsed; TF Serving's image cannot be pulled here"}, None)
    name = isvc["metadata"]["name"]
    container = json.loads(json.dumps(runtime["spec"]["containers"][0]).replace("{{.Name}}", name))
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    # KServe merges the predictor model's own env (the serving log, S3 via secretKeyRef) into the container
    env.update(resolve_env(model.get("env") or [], secret, K8S_S3_SECRET,
                           f"InferenceService {name} predictor"))
    storage_uri = model["storageUri"]
    image = container["image"]
    require_image(engine.client, image, f"InferenceService {isvc['metadata']['name']}")
    models = engine.volume("kserve-provision-location")
    # the S3 settings KServe's webhook puts into the storage-initializer container from the Secret
    init_env = {**secret, "AWS_ENDPOINT_URL": f"http://{s3.cluster_endpoint}", "S3_USE_HTTPS": "0",
                "S3_VERIFY_SSL": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    init = engine.create(s3.image, name="storage-initializer", network=network, user="0",
                         entrypoint=["python", "-c"], command=[STORAGE_INITIALIZER, storage_uri, IMAGE_MODEL_DIR],
                         environment=init_env, binds={models: IMAGE_MODEL_DIR})
    engine.client.api.start(init)
    code = engine.client.api.wait(init, timeout=300)["StatusCode"]
    if code != 0:
        logs = _tail(engine, init, scrub)
        return {"passed": False, "reason": f"storage-initializer exited {code}: {_last_error_line(logs)}",
                "logs": logs}, None
    progress(f"storage-initializer: {storage_uri} -> {IMAGE_MODEL_DIR}")
    http_port = IMAGE_SERVER_PORT
    args = container.get("args", [])
    for arg in args:
        if arg.startswith("--http_port="):
            http_port = int(arg.split("=", 1)[1])
    cid = engine.create(image, name="predictor", network=network, alias=isvc["metadata"]["name"] + "-predictor",
                        entrypoint=container.get("command"), command=args,
                        environment=env,
                        binds={models: IMAGE_MODEL_DIR}, ports={http_port: port})
    engine.client.api.start(cid)
    url = f"http://127.0.0.1:{port}"
    probe = (container.get("readinessProbe") or {}).get("httpGet", {}).get("path", "/v2/health/ready")
    deadline = time.monotonic() + READY_TIMEOUT
    import urllib.error
    import urllib.request

    while time.monotonic() < deadline:
        if not engine.client.api.inspect_container(cid)["State"]["Running"]:
            logs = _tail(engine, cid, scrub)
            return {"passed": False, "reason": f"predictor exited: {_last_error_line(logs)}", "logs": logs}, None
        try:
            with urllib.request.urlopen(url + probe, timeout=2) as response:
                if response.status == 200:
                    return {"passed": True, "storage_uri": storage_uri, "readiness": probe, "image": image,
                            "command": [*(container.get("command") or ["(image entrypoint)"]), *args]}, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    return {"passed": False, "reason": f"predictor not ready on {probe} after {READY_TIMEOUT:.0f} s",
            "logs": _tail(engine, cid, scrub)}, None


# KServe's storage initializer: kserve-storage's own Storage.download of the storageUri into the model
# mount (what its storage-initializer image runs), then readable by the predictor's non-root user
STORAGE_INITIALIZER = (
    "import os, sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2]); "
    "[os.chmod(os.path.join(d, x), 0o755 if x in ds else 0o644) "
    "for d, ds, fs in os.walk(sys.argv[2]) for x in ds + fs]; "
    "print(f'downloaded {sum(len(fs) for _, _, fs in os.walk(sys.argv[2]))} files')")


def compare_predictions(url: str, model_dir: Path, rows: list[dict]) -> dict:
    """v1 and v2 answers of the predictor against ``mlengine serve`` on the same model (a local process)."""
    from mlengine.components.deploy.client import PredictionClient
    from mlengine.components.deploy.local import start_server_process, stop_process_group, wait_until_ready

    local_port = check_port_free(0, "mlengine serve")
    log_path = model_dir.parent / "mlengine-serve.log"
    server = start_server_process([sys.executable, "-m", "mlengine.cli", "serve", "--model", str(model_dir),
                                   "--port", str(local_port)], log_path)
    local_url = f"http://127.0.0.1:{local_port}"
    try:
        try:
            wait_until_ready(local_url, None, server, log_path, timeout=READY_TIMEOUT)
        except MlengineError as err:
            raise RehearsalError(f"mlengine serve on the same model: {err}") from None
        out: dict[str, Any] = {}
        for protocol in ("v1", "v2"):
            with PredictionClient(url, protocol=protocol) as client:
                remote = client.predict(rows)
            with PredictionClient(local_url, protocol=protocol) as client:
                local = client.predict(rows)
            diff = max(abs(a - b) for a, b in zip(remote, local, strict=True))
            out[protocol] = {"rows": len(rows), "max_abs_difference": diff, "equal": diff <= 1e-5}
        return out
    finally:
        stop_process_group(server.pid)


# the monitoring pipeline's monitor step in the pipeline image: KFP's launcher downloads the
# statistics artifact to a local path, then the step reads the serving log prefix straight from S3
MONITOR_STEP = (
    "import subprocess, sys; from pathlib import Path; "
    "from mlengine.components.shared.staging import download_prefix; "
    "download_prefix(sys.argv[1], Path('/tmp/statistics')); "
    "raise SystemExit(subprocess.call([sys.executable, '-m', 'mlengine.cli', 'monitor', "
    "'--statistics', '/tmp/statistics', '--serving-log', sys.argv[2], '--out', '/tmp/drift', '--no-html']))")
MONITOR_TRAFFIC_ROWS = 300  # sent to the predictor after the comparison, half over v1, half over v2
LOG_WAIT_TIMEOUT = 90.0


def predictor_serving_log(isvc: dict) -> str | None:
    """The s3:// prefix the rendered predictor logs to (its MLENGINE_SERVING_LOG_URI), if any."""
    from mlengine.components.shared.serving_log import ENV_SERVING_LOG_URI

    for item in (isvc["spec"]["predictor"].get("model") or {}).get("env") or []:
        if item.get("name") == ENV_SERVING_LOG_URI:
            return item.get("value")
    return None


def count_logged_rows(s3, uri: str) -> tuple[int, int]:
    """(objects, lines) of the serving log objects under ``uri`` in the stand-in bucket."""
    from mlengine.components.shared.serving_log import LOG_FILE_PREFIX

    bucket, prefix = split_s3_uri(uri)
    objects = lines = 0
    for key in list_keys(s3, uri):
        if key[len(prefix):].startswith(LOG_FILE_PREFIX) and key.endswith(".jsonl"):
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            lines += body.count(b"\n")
    return objects, lines


def run_monitor_step(engine: Engine, isvc: dict, *, url: str, rows_before: int, network: str,
                     secret: dict[str, str], s3: S3Stage, scrub: Scrubber, progress,
                     pipeline_image: str | None = None) -> dict:
    """Send traffic, wait for the predictor's log objects in the bucket, run the monitor step in its container."""
    from mlengine.components.deploy.client import PredictionClient

    log_uri = predictor_serving_log(isvc)
    if not log_uri:
        return {"passed": False, "reason": "the rendered predictor has no serving log (MLENGINE_SERVING_LOG_URI)"}
    rows = sample_rows(MONITOR_TRAFFIC_ROWS, seed=23)
    half = len(rows) // 2
    for protocol, chunk in (("v1", rows[:half]), ("v2", rows[half:])):
        with PredictionClient(url, protocol=protocol) as client:
            client.predict(chunk)
    sent = rows_before + len(rows)
    progress(f"monitor: {sent} rows sent to the predictor; waiting for them under {log_uri}")
    started = time.monotonic()
    objects = logged = 0
    while time.monotonic() - started < LOG_WAIT_TIMEOUT:
        objects, logged = count_logged_rows(s3.client(), log_uri)
        if logged >= sent:
            break
        time.sleep(1.0)
    waited = round(time.monotonic() - started, 1)
    if logged < sent:
        return {"passed": False, "serving_log_uri": log_uri, "rows_sent": sent, "rows_logged": logged,
                "objects": objects, "reason": f"{logged} of {sent} rows sent reached {log_uri} "
                f"in {LOG_WAIT_TIMEOUT:.0f} s"}
    progress(f"monitor: {logged} rows in {objects} object(s) under {log_uri} after {waited} s")
    cid = engine.create(pipeline_image or image_for("pipeline"), name="monitor", network=network,
                        entrypoint=["python", "-c"],
                        command=[MONITOR_STEP, f"{DATA_ROOT}/statistics", log_uri], environment=secret)
    engine.client.api.start(cid)
    code = engine.client.api.wait(cid, timeout=300)["StatusCode"]
    stdout = scrub(engine.client.api.logs(cid, stdout=True, stderr=False).decode("utf-8", "replace"))
    result: dict[str, Any] = {"serving_log_uri": log_uri, "rows_sent": sent, "rows_logged": logged,
                              "objects": objects, "seconds_to_bucket": waited,
                              "command": ["mlengine", "monitor", "--statistics", f"{DATA_ROOT}/statistics (local copy)",
                                          "--serving-log", log_uri, "--out", "/tmp/drift", "--no-html"]}
    if code != 0:
        logs = _tail(engine, cid, scrub)
        return {**result, "passed": False, "reason": f"monitor step exited {code}: {_last_error_line(logs)}",
                "logs": logs}
    try:
        summary = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {**result, "passed": False, "reason": "monitor step printed no JSON summary",
                "logs": _tail(engine, cid, scrub)}
    result.update(rows_read=summary.get("serving_rows"), malformed_lines=summary.get("malformed_lines"),
                  drift_detected=summary.get("drift_detected"), status=summary.get("status"),
                  columns_drifted=summary.get("columns_drifted"), max_psi=summary.get("max_psi"))
    result["passed"] = result["rows_read"] == sent and result["malformed_lines"] == 0
    if not result["passed"]:
        result["reason"] = f"the monitor step read {result['rows_read']} rows of {sent} sent " \
                           f"({result['malformed_lines']} malformed lines)"
    return result


def sample_rows(count: int = 8, seed: int = 11) -> list[dict]:
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.synthetic import generate_columns

    spec = load_spec(None)
    columns = generate_columns(count, seed)
    feature_names = [c.name for c in spec.all_columns if c.name != spec.label.name]
    rows = []
    for i in range(count):
        row = {}
        for name in feature_names:
            value = columns[name][i]
            row[name] = value.item() if hasattr(value, "item") else value
        rows.append(row)
    return rows


# --- the whole rehearsal ----------------------------------------------------------------------------
@dataclass
class Options:
    out: Path
    env_file: str | None = None
    server_env_file: str | None = None  # the S3 server's own credentials (default: the env file's)
    workers: int = 2
    ps: int = 1
    rows: int = 3000
    epochs: int = 1
    s3_port: int = 0
    predictor_port: int = 0
    crash_worker: bool = False
    skip_serving: bool = False
    skip_trial: bool = False
    image_registry: str | None = None  # images named <registry>/mlengine-<role>:<version> (default: the setting)
    manifest_hook: Any = None  # tests: change a rendered manifest (a broken command, a missing env var)
    timeout: float = JOB_TIMEOUT


def rehearsal_images(registry: str | None = None) -> dict[str, str]:
    """role -> image the rehearsal runs: the TFJob and trials (trainer), the predictor (server), the
    storage initializer, the monitor step and the S3 stand-in's base (pipeline)."""
    if registry:
        from mlengine.pipelines.platform import check_registry

        try:
            registry = check_registry(registry)
        except MlengineError as err:
            raise RehearsalError(str(err)) from None
    return {role: image_for(role, registry) for role in ("trainer", "server", "pipeline")}


def rehearse(options: Options, progress=None) -> dict:
    """Run the rendered TFJob and InferenceService; write rehearsal.json and rehearsal.md; return the report."""
    import botocore.exceptions
    import docker

    from mlengine.kubeflow.manifests import render_cluster_manifests, write_manifests

    progress = progress or (lambda message: print(f"rehearse: {message}", file=sys.stderr, flush=True))
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    if options.env_file:
        secret = read_env_file(options.env_file)
        env_file = options.env_file
    else:  # throw-away credentials, in a private file removed at the end
        secret = {ENV_S3_ACCESS_KEY: "rehearsal" + secrets.token_hex(6), ENV_S3_SECRET_KEY: secrets.token_hex(16)}
        env_file = "(generated credentials)"
    server_secret = read_env_file(options.server_env_file) if options.server_env_file else secret
    scrub = Scrubber([secret.get(ENV_S3_ACCESS_KEY), secret.get(ENV_S3_SECRET_KEY),
                      server_secret.get(ENV_S3_ACCESS_KEY), server_secret.get(ENV_S3_SECRET_KEY)])
    s3_port = check_port_free(options.s3_port, "S3 server")
    predictor_port = check_port_free(options.predictor_port, "predictor")
    # the pods reach the stand-in under its Service name, whatever endpoint the file names
    pod_secret = {**secret, ENV_S3_ENDPOINT: f"{REHEARSAL_S3_HOST}:{REHEARSAL_S3_PORT}"}

    images = rehearsal_images(options.image_registry)
    manifests = render_cluster_manifests(data_root=DATA_ROOT, model_uri=MODEL_URI,
                                         image=images["trainer"], server_image=images["server"],
                                         previous_model_uri=PREVIOUS_MODEL_URI, workers=options.workers,
                                         ps=options.ps, trials=1, epochs=options.epochs,
                                         tune_epochs=options.epochs,
                                         serving_log_flush_seconds=SERVING_LOG_FLUSH_SECONDS)
    if options.manifest_hook:
        options.manifest_hook(manifests)
    write_manifests(out / "manifests", manifests)
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as err:
        raise RehearsalError(f"no Docker engine answers ({err}): images/dockerd.sh start") from None
    engine = Engine(client, secrets.token_hex(4))
    report: dict[str, Any] = {"id": engine.rehearsal_id, "label": f"{REHEARSAL_LABEL}={engine.rehearsal_id}",
                              "resources": {}}
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        network = engine.network("mlengine-rehearsal")
        bucket, _ = split_s3_uri(DATA_ROOT)
        s3 = start_s3(engine, network, server_secret, secret, s3_port, env_file, bucket, progress,
                      pipeline_image=images["pipeline"])
        with tempfile.TemporaryDirectory(prefix="mlengine-rehearsal-") as work:
            data = prepare_data(Path(work) / "data", options.rows)
            try:
                uploaded = sum(upload_tree(s3.client(), data / part, f"{DATA_ROOT}/{part}")
                               for part in ("train", "eval", "test", "transform", "statistics"))
            except botocore.exceptions.ClientError as err:
                raise s3_error(err, bucket, "the S3 server", env_file) from None
            progress(f"s3://{bucket}: {uploaded} objects under {DATA_ROOT}")
            tfjob = manifests["tfjob.yaml"]
            result = run_tfjob(engine, tfjob, network=network, secret=pod_secret, secret_name=K8S_S3_SECRET,
                               scrub=scrub, progress=progress, crash_worker=options.crash_worker,
                               timeout=options.timeout)
            if result.get("passed"):
                keys = list_keys(s3.client(), MODEL_URI)
                result["model_objects"] = len(keys)
                if not any(k.endswith("serving/saved_model.pb") for k in keys):
                    result.update(passed=False, reason=f"the Chief exited 0 but {MODEL_URI} holds no "
                                  "serving/saved_model.pb")
            report["resources"]["tfjob"] = {"name": tfjob["metadata"]["name"], **result}
            if not result.get("passed"):
                raise RehearsalError(f"TFJob {tfjob['metadata']['name']}: {result['reason']}")
            progress(f"TFJob {tfjob['metadata']['name']}: Chief exited 0, {MODEL_URI} holds the model")
            if not options.skip_trial:
                experiment = manifests["katib-experiment.yaml"]
                trial = run_trial(engine, experiment, network=network, secret=pod_secret, secret_name=K8S_S3_SECRET,
                                  scrub=scrub, progress=progress, timeout=options.timeout)
                report["resources"]["katib_trial"] = {"experiment": experiment["metadata"]["name"], **trial}
                if not trial["passed"]:
                    raise RehearsalError(f"Katib trial: {trial['reason']}")
                progress(f"Katib trial {trial['name']}: {trial['metrics']}")
            if not options.skip_serving:
                isvc = manifests["inferenceservice-canary.yaml"]
                runtimes = {m["metadata"]["name"]: m for m in manifests.values() if m["kind"] == "ServingRuntime"}
                served, url = run_inference_service(engine, isvc, runtimes, network=network, secret=pod_secret, s3=s3,
                                                    scrub=scrub, port=predictor_port, progress=progress)
                if url:
                    model_dir = Path(work) / "model"
                    bucket_name, prefix = split_s3_uri(MODEL_URI)
                    for key in list_keys(s3.client(), MODEL_URI):
                        if key.endswith("/"):  # a folder marker object
                            continue
                        target = model_dir / key[len(prefix) + 1:]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        s3.client().download_file(bucket_name, key, str(target))
                    served["predictions"] = compare_predictions(url, model_dir, sample_rows())
                    served["passed"] = all(p["equal"] for p in served["predictions"].values())
                report["resources"]["inferenceservice"] = {"name": isvc["metadata"]["name"], **served}
                if not served["passed"]:
                    raise RehearsalError(f"InferenceService {isvc['metadata']['name']}: "
                                         f"{served.get('reason', 'predictions differ from mlengine serve')}")
                compared = sum(p["rows"] for p in served["predictions"].values())
                monitored = run_monitor_step(engine, isvc, url=url, rows_before=compared, network=network,
                                             secret=pod_secret, s3=s3, scrub=scrub, progress=progress,
                                             pipeline_image=images["pipeline"])
                report["resources"]["monitor"] = {"name": f"{isvc['metadata']['name']}-monitor", **monitored}
                if not monitored["passed"]:
                    raise RehearsalError(f"monitor: {monitored['reason']}")
                progress(f"monitor: read {monitored['rows_read']} rows, drift_detected="
                         f"{monitored['drift_detected']}")
        report["passed"] = True
        return report
    except RehearsalError as err:
        report["passed"] = False
        report["reason"] = scrub(str(err))
        raise
    except KeyboardInterrupt:
        report["passed"] = False
        report["reason"] = "interrupted"
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.cleanup()
        write_report(out, report, scrub)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def write_report(out: Path, report: dict, scrub: Scrubber) -> None:
    text = scrub(json.dumps(report, indent=2, default=str))
    (out / "rehearsal.json").write_text(text + "\n", encoding="utf-8")
    lines = ["# mlengine rehearsal", "", f"Rehearsal `{report['id']}`: "
             f"**{'passed' if report.get('passed') else 'failed'}**"
             + (f" ({report['reason']})" if report.get("reason") else ""), ""]
    for name, entry in report["resources"].items():
        lines += [f"## {name}: {entry.get('name', '')}", "",
                  f"- passed: {entry.get('passed')}"]
        for key, value in entry.items():
            if key not in ("name", "passed", "logs"):
                lines.append(f"- {key}: `{json.dumps(value, default=str)}`")
        if entry.get("logs"):
            lines += ["", "Logs of the failing container (last lines):", "", "```", entry["logs"], "```"]
        lines.append("")
    (out / "rehearsal.md").write_text(scrub("\n".join(lines)), encoding="utf-8")


def cli(args) -> int:
    """The ``mlengine rehearse`` handler: 0 when every resource passed, 1 with one line otherwise."""
    options = Options(out=Path(args.out), env_file=args.env_file, workers=args.workers, ps=args.ps,
                      rows=args.rows, epochs=args.epochs, s3_port=args.s3_port, predictor_port=args.predictor_port,
                      image_registry=args.image_registry)
    try:
        report = rehearse(options)
    except RehearsalError as err:
        print(f"mlengine rehearse: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlengine rehearse: interrupted; its containers, networks and volumes are removed", file=sys.stderr)
        return 130
    for name, entry in report["resources"].items():
        print(f"{name} {entry.get('name', '')}: {'passed' if entry.get('passed') else 'failed'}")
    print(f"report: {options.out / 'rehearsal.md'}")
    return 0


def add_cli(subparsers) -> None:
    reh = subparsers.add_parser("rehearse", help="run the rendered TFJob and InferenceService on the local Docker "
                                                 "engine, as the cluster's controllers would (needs make images)")
    reh.add_argument("--out", required=True, help="folder for rehearsal.json, rehearsal.md and the manifests")
    reh.add_argument("--env-file", help="the MinIO Secret as KEY=value lines (AWS_ACCESS_KEY_ID, "
                                        "AWS_SECRET_ACCESS_KEY); default: throw-away credentials")
    reh.add_argument("--workers", type=int, default=2)
    reh.add_argument("--ps", type=int, default=1)
    reh.add_argument("--rows", type=int, default=3000, help="synthetic taxi rows (default %(default)s)")
    reh.add_argument("--epochs", type=int, default=1)
    reh.add_argument("--s3-port", type=int, default=0, help="host port of the S3 server (default: a free one)")
    reh.add_argument("--predictor-port", type=int, default=0, help="host port of the predictor (default: free)")
    reh.add_argument("--image-registry", default=None,
                     help="run the images named <registry>/mlengine-<role>:<version> (they must be in the local "
                          "engine, e.g. tagged after make images; default: $MLENGINE_IMAGE_REGISTRY, else built-in)")
    reh.set_defaults(handler=cli)


if __name__ == "__main__":  # `make images`: the rehearsal's tools image on the pipeline image just built
    import docker

    print("images: " + ensure_s3_image(docker.from_env(), lambda message: print(f"images: {message}", flush=True)))
