"""Copy a training job's ``s3://`` (MinIO) inputs to local disk and its model directory back.

TensorFlow 2.21 has no S3 filesystem of its own, so a TFJob pod works on local copies: the
inputs (train/eval splits, the transform) are downloaded into a scratch directory (an emptyDir
in the pod, which survives container restarts of the pod), the model is built in
``scratch/model`` and the chief uploads it when training ends. A model prefix that already holds
checkpoints is downloaded first, so a rescheduled chief resumes from them.

KFP's artifact URIs ``minio://bucket/key`` name objects of the same MinIO: they are read as
``s3://bucket/key``. Plain local paths pass through untouched (the local cluster).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from mlengine.components.shared.logs import component_logger
from mlengine.errors import MlengineError

URI_ALIASES = {"minio://": "s3://"}
log = component_logger("staging")
INPUT_FIELDS = ("train_dir", "eval_dir", "transform_dir", "model_module")  # model_module: a module artifact folder


def normalize_uri(uri: str) -> str:
    """``minio://b/k`` -> ``s3://b/k``; other values unchanged."""
    for alias, scheme in URI_ALIASES.items():
        if uri.startswith(alias):
            return scheme + uri[len(alias):]
    return uri


def is_remote(uri: str) -> bool:
    return normalize_uri(uri).startswith("s3://")


def s3_filesystem(uri: str):
    """A ``pyarrow.fs.S3FileSystem`` for the MinIO / S3 endpoint and credentials in the environment."""
    import os

    import pyarrow.fs as pafs

    from mlengine.components.shared import storage

    settings = storage.s3_settings_from_env(uri)
    return pafs.S3FileSystem(
        access_key=settings.access_key, secret_key=settings.secret_key, endpoint_override=settings.endpoint,
        scheme="https" if settings.secure else "http", region=os.environ.get("AWS_REGION", "us-east-1"),
        connect_timeout=storage.S3_CONNECT_TIMEOUT_S, request_timeout=storage.S3_READ_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=storage.S3_RETRIES))


def _bucket_path(uri: str) -> str:
    """``s3://bucket/some/prefix/`` -> ``bucket/some/prefix`` (pyarrow's S3 paths have no scheme)."""
    from mlengine.components.shared import storage

    bucket, key = storage.split_s3_uri(normalize_uri(uri))
    return f"{bucket}/{key.strip('/')}".rstrip("/")


def _s3_error(uri: str, err: OSError) -> MlengineError:
    """One line for a pyarrow S3 failure: the URI and what went wrong, never a credential."""
    text = str(err)
    for marker, what in (("ACCESS_DENIED", "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"),
                         ("NO_SUCH_BUCKET", "bucket not found"), ("Couldn't connect", "cannot reach the S3 endpoint"),
                         ("NETWORK_CONNECTION", "cannot reach the S3 endpoint")):
        if marker in text:
            return MlengineError(f"{uri}: {what}")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return MlengineError(f"{uri}: S3 copy failed: {first}")


def download_prefix(uri: str, local_dir: Path, *, required: bool = True) -> int:
    """Copy every object under ``uri`` (a folder prefix) into ``local_dir``; returns the file count."""
    import pyarrow.fs as pafs

    uri = normalize_uri(uri)
    fs, source = s3_filesystem(uri), _bucket_path(uri)
    try:
        found = [info for info in fs.get_file_info(pafs.FileSelector(source, recursive=True, allow_not_found=True))
                 if info.type == pafs.FileType.File]
        if not found:
            if required:
                raise MlengineError(f"{uri}: no objects under this prefix")
            return 0
        local_dir.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(source, str(local_dir), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except OSError as err:
        raise _s3_error(uri, err) from None
    return len(found)


def upload_dir(local_dir: Path, uri: str) -> int:
    """Copy every file under ``local_dir`` to the prefix ``uri``; returns the file count."""
    import pyarrow.fs as pafs

    uri = normalize_uri(uri)
    count = sum(1 for p in Path(local_dir).rglob("*") if p.is_file())
    try:
        pafs.copy_files(str(local_dir), _bucket_path(uri), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=s3_filesystem(uri))
    except OSError as err:
        raise _s3_error(uri, err) from None
    return count


class Stage:
    """The local view of one task's config, and the upload of the model at the end (chief)."""

    def __init__(self, config, *, scratch_dir: str | None, task_name: str, is_chief: bool):
        self.config = config
        self.task_name = task_name
        self.is_chief = is_chief
        self.remote_model = is_remote(config.model_dir)
        self.needed = self.remote_model or any(is_remote(getattr(config, f, "") or "") for f in INPUT_FIELDS)
        self.scratch = Path(scratch_dir or tempfile.gettempdir()) / f"mlengine-{task_name}"
        self.local_model_dir: Path | None = None

    def stage_in(self):
        """The config with every remote location replaced by a local copy."""
        if not self.needed:
            return self.config
        changes = {}
        for name in INPUT_FIELDS:
            uri = getattr(self.config, name, "") or ""
            if is_remote(uri):
                target = self.scratch / "inputs" / name
                if not target.is_dir():  # a restarted container of the same pod keeps its copy
                    partial = target.with_name(target.name + ".partial")
                    count = download_prefix(uri, partial)
                    partial.rename(target)
                    log.info("staging: %d file(s) from %s -> %s", count, uri, target)
                changes[name] = str(target)
        if self.remote_model:
            self.local_model_dir = self.scratch / "model"
            if self.is_chief and not self.local_model_dir.is_dir():
                count = download_prefix(self.config.model_dir, self.local_model_dir, required=False)
                if count:
                    log.info("staging: resuming from %d file(s) already at %s", count, self.config.model_dir)
            self.local_model_dir.mkdir(parents=True, exist_ok=True)
            changes["model_dir"] = str(self.local_model_dir)
        return dataclasses.replace(self.config, **changes)

    def stage_out(self) -> None:
        """Upload the model directory (chief only; no-op for local paths)."""
        if not (self.is_chief and self.remote_model and self.local_model_dir is not None):
            return
        count = upload_dir(self.local_model_dir, self.config.model_dir)
        log.info("staging: uploaded %d file(s) to %s", count, normalize_uri(self.config.model_dir))


KFP_LOCAL_PREFIXES = {"/minio/": "s3://", "/s3/": "s3://"}


def artifact_uri(path_or_uri: str) -> str:
    """The URI a TFJob pod can read: s3:// and minio:// as is, KFP's ``/minio/...``/``/s3/...`` mounts mapped back."""
    value = normalize_uri(path_or_uri)
    if value.startswith("s3://"):
        return value
    for prefix, scheme in KFP_LOCAL_PREFIXES.items():
        if value.startswith(prefix):
            return scheme + value[len(prefix):]
    raise MlengineError(f"{path_or_uri}: cluster training needs data in MinIO/S3 (s3:// or minio://); "
                        "a local path is not visible to the TFJob pods")
