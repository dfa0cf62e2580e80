"""MinIO's stand-in: moto's S3 server in a container built on the pipeline image (``s3server.py``),
reachable as ``minio:9000`` on the rehearsal network, and the host-side uploads and listings."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlengine.components.shared.storage import split_s3_uri
from mlengine.constants import (
    ENV_S3_ACCESS_KEY,
    ENV_S3_SECRET_KEY,
    IMAGE_DEFAULT_UID,
    IMAGES_BUILD_COMMAND,
    REHEARSAL_S3_HOST,
    REHEARSAL_S3_IMAGE,
    REHEARSAL_S3_PORT,
    image_for,
)
from mlengine.rehearsal import log
from mlengine.rehearsal.engine import LOG_TAIL, Engine, RehearsalError, require_image

MOTO_REQUIREMENT = "moto[server]==5.2.5"
# KServe's storage initializer's own download code (the package its storage-initializer image runs)
KSERVE_STORAGE_REQUIREMENT = "kserve-storage==0.21.0"
REHEARSAL_REQUIREMENTS = (MOTO_REQUIREMENT, KSERVE_STORAGE_REQUIREMENT)
S3_SERVER_SCRIPT = Path(__file__).with_name("s3server.py")
S3_SOURCE_LABEL = "io.mlengine.rehearsal-s3-source"
START_TIMEOUT = 60.0  # seconds a container may stay "created" before it counts as never started


def ensure_s3_image(client, base: str | None = None, build: bool = True) -> str:
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
    log.info(f"building {REHEARSAL_S3_IMAGE} on {base} (moto's S3 server, kserve-storage)")
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
             port: int, env_file: str, bucket: str, pipeline_image: str | None = None) -> S3Stage:
    """Start the S3 server, wait until it answers, create ``bucket``."""
    import botocore.exceptions

    image = ensure_s3_image(engine.client, pipeline_image, build=False)
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
