"""Where input data lives: local files, folders, globs and ``s3://`` URIs on MinIO / S3.

``resolve_inputs(uri)`` turns one data URI into a sorted list of file URIs; ``open_binary`` /
``open_text`` stream one of them (never the whole object in memory; ``.gz`` is decompressed on
the fly). S3 credentials come only from the environment (``MLENGINE_S3_ENDPOINT``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``MLENGINE_S3_SECURE``) and never appear in a
message. Every problem the user can fix is a one-line :class:`DataError` naming the URI.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlengine.constants import ENV_S3_ACCESS_KEY, ENV_S3_ENDPOINT, ENV_S3_SECRET_KEY, ENV_S3_SECURE
from mlengine.errors import DataError

S3_SCHEME = "s3://"
CSV_SUFFIXES = (".csv", ".csv.gz")
GLOB_CHARS = frozenset("*?[")
READ_BUFFER_BYTES = 1 << 20
# a refused connection fails after a few quick retries instead of minio's default ~6 s back-off
S3_RETRIES = 3
S3_CONNECT_TIMEOUT_S = 10.0
S3_READ_TIMEOUT_S = 120.0
_TRUE_WORDS = {"1", "true", "yes", "on"}


def is_s3_uri(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def is_csv_name(name: str) -> bool:
    return name.lower().endswith(CSV_SUFFIXES)


def display_name(uri: str) -> str:
    """The last path component of a URI (for progress lines)."""
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


# --- resolution ----------------------------------------------------------------------------------
def resolve_inputs(data_uri: str) -> list[str]:
    """The sorted list of files a data URI names: a file, a folder of CSV shards, a glob, or S3.

    Folders contribute their ``*.csv`` and ``*.csv.gz`` files (not recursive); a glob contributes
    every file it matches.
    """
    if not isinstance(data_uri, str) or not data_uri.strip():
        raise DataError("data URI is empty: pass a CSV file, a folder, a glob or an s3:// URI")
    data_uri = data_uri.strip()
    if is_s3_uri(data_uri):
        return _resolve_s3(data_uri)
    return _resolve_local(data_uri)


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _resolve_local(uri: str) -> list[str]:
    path = _local_path(uri)
    if any(ch in GLOB_CHARS for ch in path):
        matches = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not matches:
            raise DataError(f"{uri}: glob matched nothing")
        return matches
    if os.path.isdir(path):
        shards = sorted(str(p) for p in Path(path).iterdir() if p.is_file() and is_csv_name(p.name))
        if not shards:
            raise DataError(f"{uri}: folder has no CSV files (*.csv, *.csv.gz)")
        return shards
    if os.path.isfile(path):
        return [path]
    raise DataError(f"{uri}: no such file")


# --- S3 / MinIO -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Settings:
    """Connection settings read from the environment (the secret stays out of repr)."""

    endpoint: str  # host:port, no scheme
    secure: bool
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print the keys
        return f"S3Settings(endpoint={self.endpoint!r}, secure={self.secure})"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    rest = uri[len(S3_SCHEME):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise DataError(f"{uri}: an s3:// URI needs a bucket name (s3://bucket/key)")
    return bucket, key


def s3_settings_from_env(uri: str = "") -> S3Settings:
    """Read endpoint and credentials from the environment; a missing one is a DataError."""
    where = f"{uri}: " if uri else ""
    raw_endpoint = os.environ.get(ENV_S3_ENDPOINT, "").strip()
    if not raw_endpoint:
        raise DataError(f"{where}{ENV_S3_ENDPOINT} is not set (the S3/MinIO endpoint, e.g. minio:9000)")
    access_key = os.environ.get(ENV_S3_ACCESS_KEY, "")
    secret_key = os.environ.get(ENV_S3_SECRET_KEY, "")
    if not access_key or not secret_key:
        missing = [name for name, value in ((ENV_S3_ACCESS_KEY, access_key), (ENV_S3_SECRET_KEY, secret_key))
                   if not value]
        raise DataError(f"{where}missing S3 credentials: set {' and '.join(missing)}")
    secure = os.environ.get(ENV_S3_SECURE, "").strip().lower() in _TRUE_WORDS
    endpoint = raw_endpoint
    if endpoint.startswith("https://"):
        endpoint, secure = endpoint[len("https://"):], True
    elif endpoint.startswith("http://"):
        endpoint, secure = endpoint[len("http://"):], False
    endpoint = endpoint.rstrip("/")
    if not endpoint or "/" in endpoint:
        raise DataError(f"{where}{ENV_S3_ENDPOINT} must be host:port or http(s)://host:port, "
                        f"got {raw_endpoint!r}")
    return S3Settings(endpoint=endpoint, secure=secure, access_key=access_key, secret_key=secret_key)


def s3_client(settings: S3Settings):
    """A minio client with short connection retries and timeouts."""
    import urllib3
    from minio import Minio

    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=S3_CONNECT_TIMEOUT_S, read=S3_READ_TIMEOUT_S),
        maxsize=4,
        retries=urllib3.Retry(total=S3_RETRIES, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
                 secure=settings.secure, http_client=http_client)


def _s3_error(uri: str, settings: S3Settings, err: BaseException) -> DataError:
    """Translate a minio / urllib3 exception into a one-line DataError (no secrets, no traceback)."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(err, S3Error):
        code = err.code or ""
        if code == "NoSuchBucket":
            return DataError(f"{uri}: bucket not found")
        if code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
            return DataError(f"{uri}: no such file")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return DataError(f"{uri}: access denied by {settings.endpoint} ({code}); "
                             f"check {ENV_S3_ACCESS_KEY} / {ENV_S3_SECRET_KEY}")
        return DataError(f"{uri}: S3 error {code or 'unknown'} from {settings.endpoint}")
    if isinstance(err, Urllib3Error | OSError):
        reason = str(getattr(err, "reason", None) or err)
        if "refused" in reason.lower():
            what = "connection refused"
        elif "timed out" in reason.lower() or "timeout" in reason.lower():
            what = "connection timed out"
        elif "name or service" in reason.lower() or "resolution" in reason.lower():
            what = "host name not found"
        else:
            what = f"connection failed ({type(err).__name__})"
        return DataError(f"{uri}: cannot reach S3 endpoint {settings.endpoint}: {what}")
    return DataError(f"{uri}: S3 request to {settings.endpoint} failed ({type(err).__name__})")


def _s3_call(uri: str, settings: S3Settings, func, *args, **kwargs):
    """Call a minio client method; any S3 / connection failure becomes a one-line DataError."""
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        return func(*args, **kwargs)
    except (MinioException, Urllib3Error, OSError) as err:
        raise _s3_error(uri, settings, err) from None


def _resolve_s3(uri: str) -> list[str]:
    bucket, key = split_s3_uri(uri)
    settings = s3_settings_from_env(uri)
    client = s3_client(settings)

    def list_keys(prefix: str, recursive: bool) -> list[str]:
        objects = _s3_call(uri, settings, lambda: list(client.list_objects(bucket, prefix=prefix or None,
                                                                         recursive=recursive)))
        return [obj.object_name for obj in objects if not obj.is_dir]

    def require_bucket() -> None:
        if not _s3_call(uri, settings, client.bucket_exists, bucket):
            raise DataError(f"{uri}: bucket not found")

    if any(ch in GLOB_CHARS for ch in key):
        require_bucket()
        first_glob = min(key.index(ch) for ch in GLOB_CHARS if ch in key)
        prefix = key[:first_glob].rpartition("/")[0]
        prefix = f"{prefix}/" if prefix else ""
        depth = key.count("/")
        # like a shell glob: '*' does not cross '/'
        matches = sorted(k for k in list_keys(prefix, recursive=True)
                         if k.count("/") == depth and fnmatch.fnmatchcase(k, key))
        if not matches:
            raise DataError(f"{uri}: glob matched nothing")
        return [f"{S3_SCHEME}{bucket}/{k}" for k in matches]
    if key == "" or key.endswith("/"):
        require_bucket()
        shards = sorted(k for k in list_keys(key, recursive=False) if is_csv_name(k))
        if not shards:
            raise DataError(f"{uri}: folder has no CSV files (*.csv, *.csv.gz)")
        return [f"{S3_SCHEME}{bucket}/{k}" for k in shards]
    try:
        _s3_call(uri, settings, client.stat_object, bucket, key)
        return [uri]
    except DataError:
        # a HEAD on a missing object cannot tell a missing bucket from a missing key
        require_bucket()
    # maybe a folder written without the trailing slash
    shards = sorted(k for k in list_keys(f"{key}/", recursive=False) if is_csv_name(k))
    if shards:
        return [f"{S3_SCHEME}{bucket}/{k}" for k in shards]
    raise DataError(f"{uri}: no such file")


class _ResponseReader(io.RawIOBase):
    """A raw stream over a urllib3 response, so io.BufferedReader / gzip can wrap it."""

    def __init__(self, response: Any):
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._response.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size


# --- opening -------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_binary(uri: str) -> Iterator[io.BufferedIOBase]:
    """Stream one file (local path or s3:// URI) as bytes; ``.gz`` is decompressed on the fly.

    Errors while opening *or reading* (missing file, lost connection, broken gzip) surface as a
    one-line DataError naming the URI.
    """
    gzipped = uri.lower().endswith(".gz")
    if is_s3_uri(uri):
        with _open_s3(uri) as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            with _read_errors(uri, gzipped=gzipped, remote=True):
                yield stream
        return
    path = _local_path(uri)
    try:
        handle = open(path, "rb", buffering=READ_BUFFER_BYTES)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise DataError(f"{uri}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{uri}: is a folder, not a file") from None
    except PermissionError:
        raise DataError(f"{uri}: permission denied") from None
    try:
        stream = gzip.GzipFile(fileobj=handle, mode="rb") if gzipped else handle
        with _read_errors(uri, gzipped=gzipped, remote=False):
            yield stream
    finally:
        handle.close()


@contextlib.contextmanager
def _read_errors(uri: str, gzipped: bool, remote: bool) -> Iterator[None]:
    """Turn low-level read failures of the stream into a DataError naming the URI."""
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except (gzip.BadGzipFile, zlib.error, EOFError) as err:
        if not gzipped:
            raise
        raise DataError(f"{uri}: not a valid gzip file ({type(err).__name__}: {err})") from None
    except Urllib3Error as err:
        if not remote:
            raise
        raise DataError(f"{uri}: connection lost while reading ({type(err).__name__})") from None


@contextlib.contextmanager
def _open_s3(uri: str) -> Iterator[io.BufferedReader]:
    bucket, key = split_s3_uri(uri)
    if not key or key.endswith("/"):
        raise DataError(f"{uri}: names a folder, not an object")
    settings = s3_settings_from_env(uri)
    client = s3_client(settings)
    try:
        response = _s3_call(uri, settings, client.get_object, bucket, key)
    except DataError as err:
        if "no such file" in str(err) and not _s3_call(uri, settings, client.bucket_exists, bucket):
            raise DataError(f"{uri}: bucket not found") from None
        raise
    try:
        yield io.BufferedReader(_ResponseReader(response), buffer_size=READ_BUFFER_BYTES)
    finally:
        response.close()
        response.release_conn()


@contextlib.contextmanager
def open_text(uri: str, encoding: str = "utf-8", errors: str = "strict") -> Iterator[io.TextIOBase]:
    """Stream one file as text (see :func:`open_binary`)."""
    with open_binary(uri) as stream:
        text = io.TextIOWrapper(stream, encoding=encoding, errors=errors, newline="")
        try:
            yield text
        finally:
            text.detach()
