"""The serving input log: what the predictor saw, written as bounded JSON Lines for the skew monitor.

Writer: :class:`ServingInputLog`. The KServe predictor hands it each batch of *validated* raw
instances (``log_columns(columns, rows)`` with the validator's numpy columns, or
``log_instances([{...}, ...])``); it appends one line per (sampled) instance::

    {"ts": 1718000000.123, "instance": {"pickup_longitude": -73.98, ...}}

into ``serving-<start ns>-<pid>-<seq>.jsonl`` files of one folder. Guarantees:

- bounded disk: a new file after ``max_lines_per_file`` lines or ``max_bytes_per_file`` bytes,
  and at most ``max_files`` files in the folder (the oldest are deleted), so the folder never
  holds more than about ``max_files * max_bytes_per_file`` bytes;
- thread-safe (one lock around the file; serialisation happens outside it) and fork-safe
  (each process writes its own files: ``--workers N`` servers share one folder);
- optional sampling (``sample_rate`` in (0, 1]);
- it never raises into the request path: every failure is counted in ``stats()["errors"]`` and
  logged once.

Destination ``s3://bucket/prefix/`` (the InferenceService writes to the pipeline bucket): the
same lines are buffered in memory and uploaded as one object
``prefix/serving-<start ns>-<pid>-<seq>.jsonl`` per rotation (the same line / byte bounds), after
``flush_interval_s`` seconds, and at :meth:`ServingInputLog.close`. Uploads run in a background
thread (pyarrow's S3 filesystem with the endpoint and credentials of the environment, as the
training pods' staging does); at most ``max_pending`` sealed objects wait for upload, rows that
arrive beyond that are dropped and counted (``rows_dropped``), so memory stays bounded when the
bucket is unreachable; a failed upload is counted in ``errors``, never raised. After each upload
the oldest ``serving-*`` objects beyond ``max_files`` under the prefix are deleted.

Reader: :func:`read_serving_log` turns a folder (or one file, or an ``s3://`` prefix) back into typed numpy columns of
the spec's raw columns, skipping and counting malformed lines.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.shared.featurespec import DTYPES
from mlengine.components.shared.staging import is_remote, normalize_uri
from mlengine.errors import DataError

LOG_FILE_PREFIX = "serving-"
LOG_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")
DEFAULT_MAX_LINES_PER_FILE = 100_000
DEFAULT_MAX_BYTES_PER_FILE = 32 * 1024 * 1024
DEFAULT_MAX_FILES = 10
# environment switches the predictor reads (see serving_log_from_env)
ENV_SERVING_LOG_DIR = "MLENGINE_SERVING_LOG_DIR"
ENV_SERVING_LOG_SAMPLE_RATE = "MLENGINE_SERVING_LOG_SAMPLE_RATE"
ENV_SERVING_LOG_MAX_FILES = "MLENGINE_SERVING_LOG_MAX_FILES"
ENV_SERVING_LOG_MAX_LINES = "MLENGINE_SERVING_LOG_MAX_LINES"
# the same as ENV_SERVING_LOG_DIR, named for an s3:// destination (wins when both are set)
ENV_SERVING_LOG_URI = "MLENGINE_SERVING_LOG_URI"
ENV_SERVING_LOG_FLUSH_SECONDS = "MLENGINE_SERVING_LOG_FLUSH_SECONDS"
DEFAULT_FLUSH_INTERVAL_S = 60.0
DEFAULT_MAX_PENDING = 4  # sealed objects waiting for upload (each at most max_bytes_per_file)
S3_PREFIX = "s3://"


logger = logging.getLogger(__name__)

try:  # orjson (a kserve dependency) encodes and parses 3-7x faster than the standard library
    import orjson as _orjson
except ImportError:  # the standard library does the same, slower (tests run both)
    _orjson = None


def _json_default(value: Any) -> Any:
    """numpy scalars and bytes (v2 BYTES inputs) as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encoder():
    """A function: instance dict -> compact JSON bytes (non-finite floats become null)."""
    if _orjson is not None:
        return lambda instance: _orjson.dumps(instance, default=_json_default)
    encode = json.JSONEncoder(separators=(",", ":"), default=_json_default, allow_nan=True).encode
    return lambda instance: encode(instance).encode("ascii")


def _decode(raw: bytes) -> Any:
    return _orjson.loads(raw) if _orjson is not None else json.loads(raw)


class ServingInputLog:
    """Append sampled serving instances to rotating JSONL files in ``folder`` (see the module doc).

    The folder is created on the first write, so a misconfigured path costs counted errors,
    never a failed request or a failed server start.
    """

    def __init__(self, folder: str | os.PathLike, *, sample_rate: float = 1.0,
                 max_lines_per_file: int = DEFAULT_MAX_LINES_PER_FILE,
                 max_bytes_per_file: int = DEFAULT_MAX_BYTES_PER_FILE,
                 max_files: int = DEFAULT_MAX_FILES, seed: int | None = None,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S, max_pending: int = DEFAULT_MAX_PENDING):
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        for name, value in (("max_lines_per_file", max_lines_per_file), ("max_bytes_per_file", max_bytes_per_file),
                            ("max_files", max_files)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(flush_interval_s, int | float) and flush_interval_s > 0):
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s!r}")
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive integer, got {max_pending!r}")
        text = os.fspath(folder)
        self.uri = _s3_prefix(text) if is_remote(text) else None
        if self.uri is not None:
            from mlengine.components.shared import storage

            storage.split_s3_uri(self.uri)  # an s3:// without a bucket fails here, at start
        self.folder = text if self.uri is not None else Path(folder)
        self.flush_interval_s = float(flush_interval_s)
        self.max_pending = max_pending
        self.sample_rate = float(sample_rate)
        self.max_lines_per_file = max_lines_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self.max_files = max_files
        self.seed = seed
        self._counts = Counter()
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + self._pid)
        self._handle = None
        self._path: Path | None = None
        self._lines_in_file = 0
        self._bytes_in_file = 0
        self._sequence = 0
        self._error_logged = False
        self._s3 = _S3Sink(self) if self.uri is not None else None

    # --- pickling (kserve --workers N pickles the predictor into each worker process) ----------
    def __getstate__(self) -> dict:
        keep = ("folder", "uri", "sample_rate", "max_lines_per_file", "max_bytes_per_file", "max_files", "seed",
                "flush_interval_s", "max_pending")
        return {name: getattr(self, name) for name in keep}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._counts = Counter()
        self._init_runtime()

    # --- the request path ------------------------------------------------------------------------
    def log_instances(self, instances: Sequence[Mapping[str, Any]]) -> int:
        """Log validated instances (one dict per row); returns the rows written. Never raises."""
        try:
            rows = len(instances)
            keep = self._sampled_rows(rows)
            chosen = instances if len(keep) == rows else [instances[i] for i in keep]
            return self._write_instances(chosen, rows)
        except Exception as err:  # the request must succeed whatever happens to the log
            self._record_error(err)
            return 0

    def log_columns(self, columns: Mapping[str, Any], rows: int | None = None) -> int:
        """Log validated columns (name -> 1-D array, all of length ``rows``); returns rows written.

        This is what the predictor has after validation for both v1 and v2 requests.
        Never raises.
        """
        try:
            if rows is None:
                rows = len(next(iter(columns.values()))) if columns else 0
            keep = self._sampled_rows(rows)
            if not keep:
                return self._write_instances([], rows)
            everything = len(keep) == rows
            as_lists = {}
            for name, values in columns.items():
                array = np.asarray(values)
                as_lists[name] = (array if everything else array[keep]).tolist()
            names = list(as_lists)
            instances = [dict(zip(names, row, strict=True)) for row in zip(*as_lists.values(), strict=True)]
            return self._write_instances(instances, rows)
        except Exception as err:
            self._record_error(err)
            return 0

    def _sampled_rows(self, rows: int) -> list[int]:
        if self.sample_rate >= 1.0:
            return list(range(rows))
        draw = self._rng.random  # a C call: atomic under the GIL, no lock needed
        return [i for i in range(rows) if draw() < self.sample_rate]

    def _write_instances(self, instances: Sequence[Mapping[str, Any]], rows_seen: int) -> int:
        prefix = f'{{"ts":{round(time.time(), 3)},"instance":'.encode("ascii")
        dumps = _encoder()
        lines = [prefix + dumps(instance) + b"}\n" for instance in instances]
        if os.getpid() != self._pid:  # forked without pickling: never share the parent's file or lock
            self._init_runtime()
        with self._lock:
            self._counts["batches"] += 1
            self._counts["rows_seen"] += rows_seen
            self._counts["rows_sampled_out"] += rows_seen - len(lines)
            if lines and self._s3 is not None:
                kept = self._s3.add(lines)
                self._counts["rows_written"] += kept
                self._counts["rows_dropped"] += len(lines) - kept
                return kept
            if lines:
                try:
                    self._append(lines)
                except BaseException:
                    self._drop_handle()  # reopen a fresh file next time
                    raise
                self._counts["rows_written"] += len(lines)
        return len(lines)

    def _append(self, lines: list[bytes]) -> None:
        index = 0
        while index < len(lines):
            if (self._handle is None or self._lines_in_file >= self.max_lines_per_file
                    or self._bytes_in_file >= self.max_bytes_per_file):
                self._rotate()
            room = self.max_lines_per_file - self._lines_in_file
            chunk_bytes = 0
            stop = index
            while stop < len(lines) and stop - index < room:
                size = len(lines[stop])
                # a line always fits into an empty file, even one larger than the byte bound
                if self._bytes_in_file + chunk_bytes + size > self.max_bytes_per_file and \
                        self._bytes_in_file + chunk_bytes > 0:
                    break
                chunk_bytes += size
                stop += 1
            if stop == index:  # the next line does not fit: start a new file
                self._rotate()
                continue
            self._handle.write(b"".join(lines[index:stop]))
            self._lines_in_file += stop - index
            self._bytes_in_file += chunk_bytes
            index = stop
        self._handle.flush()  # readers (the monitor) see whole batches; a crash loses little

    def _rotate(self) -> None:
        self._drop_handle()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        name = f"{LOG_FILE_PREFIX}{time.time_ns():020d}-{self._pid}-{self._sequence:06d}.jsonl"
        self._path = self.folder / name
        self._handle = open(self._path, "xb")  # noqa: SIM115 - kept open across calls
        self._lines_in_file = 0
        self._bytes_in_file = 0
        self._counts["files_opened"] += 1
        self._prune()

    def _prune(self) -> None:
        """Delete the oldest log files (any process's) beyond ``max_files``; never our open one."""
        files = sorted(p for p in self.folder.glob(f"{LOG_FILE_PREFIX}*.jsonl") if p != self._path)
        excess = len(files) + 1 - self.max_files
        for path in files[:max(excess, 0)]:
            try:
                path.unlink()
                self._counts["files_deleted"] += 1
            except FileNotFoundError:  # another worker pruned it first
                pass

    def _drop_handle(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def _record_error(self, err: BaseException) -> None:
        with self._lock:
            self._counts["errors"] += 1
        if not self._error_logged:
            self._error_logged = True
            logger.warning("serving input log %s: %s: %s (further errors are counted, not logged)",
                           self.folder, type(err).__name__, err)

    # --- housekeeping ----------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters: batches, rows_seen, rows_written, rows_sampled_out, files_opened, files_deleted, errors.

        For an s3:// destination also: objects_uploaded, rows_uploaded, rows_dropped (no room while
        uploads were failing or slow); ``rows_written`` counts rows accepted into the buffer.
        """
        keys = ("batches", "rows_seen", "rows_written", "rows_sampled_out", "files_opened", "files_deleted", "errors",
                "objects_uploaded", "rows_uploaded", "rows_dropped")
        return {key: int(self._counts[key]) for key in keys}

    @property
    def current_file(self) -> Path | None:
        return self._path if self._handle is not None else None

    def flush(self, timeout: float | None = 30.0) -> None:
        """Local: flush the open file. s3://: upload the buffered lines and wait (``timeout``) for it."""
        if self._s3 is not None:
            if os.getpid() == self._pid:
                self._s3.flush(timeout)
            return
        with self._lock:
            if self._handle is not None:
                self._handle.flush()

    def close(self, timeout: float | None = 30.0) -> None:
        if self._s3 is not None:
            if os.getpid() == self._pid:
                self._s3.close(timeout)
            return
        with self._lock:
            self._drop_handle()

    def __enter__(self) -> ServingInputLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def serving_log_from_env(environ: Mapping[str, str] | None = None) -> ServingInputLog | None:
    """The log the environment asks for (``MLENGINE_SERVING_LOG_URI`` or ``MLENGINE_SERVING_LOG_DIR``
    set: a folder or an ``s3://bucket/prefix/``), else None.

    Optional: ``MLENGINE_SERVING_LOG_SAMPLE_RATE`` (default 1), ``MLENGINE_SERVING_LOG_MAX_FILES``,
    ``MLENGINE_SERVING_LOG_MAX_LINES`` (per file), ``MLENGINE_SERVING_LOG_FLUSH_SECONDS`` (s3://:
    upload at least this often, default 60). A bad value raises ValueError naming the variable.
    """
    env = os.environ if environ is None else environ
    folder = env.get(ENV_SERVING_LOG_URI, "").strip() or env.get(ENV_SERVING_LOG_DIR, "").strip()
    if not folder:
        return None
    options: dict[str, Any] = {}
    for variable, option, convert in ((ENV_SERVING_LOG_SAMPLE_RATE, "sample_rate", float),
                                      (ENV_SERVING_LOG_MAX_FILES, "max_files", int),
                                      (ENV_SERVING_LOG_MAX_LINES, "max_lines_per_file", int),
                                      (ENV_SERVING_LOG_FLUSH_SECONDS, "flush_interval_s", float)):
        text = env.get(variable, "").strip()
        if text:
            try:
                options[option] = convert(text)
            except ValueError:
                raise ValueError(f"{variable}={text!r}: expected a {convert.__name__}") from None
    try:
        return ServingInputLog(folder, **options)
    except (ValueError, DataError) as err:
        raise ValueError(f"serving log settings from the environment: {err}") from None


def _s3_prefix(text: str) -> str:
    """``minio://b/p`` -> ``s3://b/p/`` (a prefix always ends with one slash)."""
    return normalize_uri(text).rstrip("/") + "/"


class _S3Sink:
    """The s3:// side of a :class:`ServingInputLog`: a buffer, sealed objects, one uploader thread.

    ``add`` runs under the log's lock; uploads and pruning run in the thread, outside that lock.
    """

    def __init__(self, log: ServingInputLog):
        from mlengine.components.shared import storage

        self.log = log
        self.bucket, key = storage.split_s3_uri(log.uri)
        self.prefix = key.strip("/") + "/" if key.strip("/") else ""
        self.buffer: list[bytes] = []
        self.buffer_bytes = 0
        self.buffer_since = 0.0
        self.pending: list[tuple[str, bytes, int]] = []  # (key, body, rows) sealed, not yet uploaded
        self.cond = threading.Condition(log._lock)
        self.thread: threading.Thread | None = None
        self.closing = False
        self.busy = False
        self.fs = None

    # under log._lock ------------------------------------------------------------------------------
    def add(self, lines: list[bytes]) -> int:
        """Buffer lines, sealing an object at each bound; returns the rows kept (others dropped)."""
        log = self.log
        kept = 0
        for line in lines:
            if self.buffer and (len(self.buffer) >= log.max_lines_per_file
                                or self.buffer_bytes + len(line) > log.max_bytes_per_file):
                self._seal()
            if not self.buffer and len(self.pending) >= log.max_pending:
                break  # no room: the bucket is slow or failing; drop (counted) rather than grow
            if not self.buffer:
                self.buffer_since = time.monotonic()
            self.buffer.append(line)
            self.buffer_bytes += len(line)
            kept += 1
        if self.buffer and (len(self.buffer) >= log.max_lines_per_file or self.buffer_bytes >= log.max_bytes_per_file):
            self._seal()
        self._ensure_thread()
        return kept

    def _seal(self) -> None:
        if not self.buffer:
            return
        if len(self.pending) >= self.log.max_pending:  # only reached from flush/close/timer
            self.log._counts["rows_dropped"] += len(self.buffer)
        else:
            self.log._sequence += 1
            name = f"{LOG_FILE_PREFIX}{time.time_ns():020d}-{self.log._pid}-{self.log._sequence:06d}.jsonl"
            self.pending.append((self.prefix + name, b"".join(self.buffer), len(self.buffer)))
            self.log._counts["files_opened"] += 1
        self.buffer, self.buffer_bytes = [], 0
        self.cond.notify_all()

    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.closing = False
            self.thread = threading.Thread(target=self._run, name="serving-log-s3", daemon=True)
            self.thread.start()

    # the uploader thread ------------------------------------------------------------------------
    def _run(self) -> None:
        log = self.log
        while True:
            with self.cond:
                while not self.pending:
                    if self.buffer and (self.closing or time.monotonic() - self.buffer_since >= log.flush_interval_s):
                        self._seal()
                        continue
                    if self.closing:
                        return
                    waited = time.monotonic() - self.buffer_since
                    self.cond.wait(max(log.flush_interval_s - waited, 0.01) if self.buffer else log.flush_interval_s)
                key, body, rows = self.pending[0]
                self.busy = True
            try:
                self._upload(key, body)
                uploaded = True
            except Exception as err:  # counted, never raised; the object is given up
                uploaded = False
                log._record_error(err)
            if uploaded:
                try:
                    self._prune(key)
                except Exception as err:
                    log._record_error(err)
            with self.cond:  # popped after pruning, so a flush() returns with the prefix bounded
                self.pending.pop(0)
                self.busy = False
                if uploaded:
                    log._counts["objects_uploaded"] += 1
                    log._counts["rows_uploaded"] += rows
                else:
                    log._counts["rows_dropped"] += rows
                self.cond.notify_all()

    def _filesystem(self):
        if self.fs is None:
            from mlengine.components.shared.staging import s3_filesystem

            self.fs = s3_filesystem(self.log.uri)
        return self.fs

    def _upload(self, key: str, body: bytes) -> None:
        with self._filesystem().open_output_stream(f"{self.bucket}/{key}") as stream:
            stream.write(body)

    def _prune(self, newest: str) -> None:
        """Delete the oldest ``serving-*.jsonl`` objects under the prefix beyond ``max_files``."""
        import pyarrow.fs as pafs

        fs = self._filesystem()
        base = f"{self.bucket}/{self.prefix}".rstrip("/")
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
        names = sorted(info.base_name for info in infos if info.type == pafs.FileType.File
                       and info.base_name.startswith(LOG_FILE_PREFIX) and info.base_name.endswith(".jsonl"))
        newest_name = newest.rpartition("/")[2]
        older = [name for name in names if name != newest_name]
        for name in older[:max(len(names) - self.log.max_files, 0)]:
            try:
                fs.delete_file(f"{base}/{name}")
                with self.cond:
                    self.log._counts["files_deleted"] += 1
            except FileNotFoundError:  # another writer pruned it first
                pass

    # flush / close (caller's thread, not under the lock) -----------------------------------------
    def flush(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            self._seal()
            if self.pending:
                self._ensure_thread()
            while self.pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.cond.wait(left)

    def close(self, timeout: float | None) -> None:
        self.flush(timeout)
        with self.cond:
            self.closing = True
            self.cond.notify_all()


# --- reading ---------------------------------------------------------------------------------------
@dataclass
class ServingLogData:
    """Typed columns read back from a serving log, with the accounting of every line."""

    columns: dict[str, np.ndarray]
    rows: int = 0
    files: list[str] = field(default_factory=list)
    lines: int = 0  # non-blank lines looked at (rows + malformed + incomplete)
    malformed: int = 0
    incomplete: int = 0  # a last line without newline: a file still being written
    reasons: dict[str, int] = field(default_factory=dict)
    first_problem: str | None = None  # "file:line: reason" of the first malformed line
    first_ts: float | None = None
    last_ts: float | None = None

    def summary(self) -> dict[str, Any]:
        out = {key: value for key, value in self.__dict__.items() if key != "columns"}
        out["files"] = len(self.files)
        return out


def resolve_log_files(path: str | os.PathLike) -> list[str]:
    """The log files a path names, oldest first: a folder's ``*.jsonl[.gz]``, a glob, or one file."""
    text = os.fspath(path)
    if is_remote(text):
        return _resolve_s3_log(text)
    if any(ch in text for ch in "*?["):
        files = sorted(p for p in glob.glob(text) if os.path.isfile(p))
        if not files:
            raise DataError(f"{text}: glob matched no serving log file")
        return files
    local = Path(text)
    if local.is_dir():
        return sorted(str(p) for p in local.iterdir() if p.is_file() and p.name.endswith(LOG_FILE_SUFFIXES))
    if local.is_file():
        return [str(local)]
    raise DataError(f"{text}: serving log not found (expected a folder of *.jsonl files or one .jsonl file)")


def _resolve_s3_log(text: str) -> list[str]:
    """One object (a name ending in .jsonl[.gz]) or every log object directly under a prefix."""
    from mlengine.components.shared import storage

    uri = normalize_uri(text)
    if uri.endswith(LOG_FILE_SUFFIXES):
        return [uri]
    uri = _s3_prefix(uri)
    bucket, prefix = storage.split_s3_uri(uri)
    settings = storage.s3_settings_from_env(uri)
    client = storage.s3_client(settings)
    if not storage._s3_call(uri, settings, client.bucket_exists, bucket):
        raise DataError(f"{uri}: bucket not found")
    objects = storage._s3_call(uri, settings, lambda: list(client.list_objects(bucket, prefix=prefix or None)))
    names = sorted(obj.object_name for obj in objects if not obj.is_dir
                   and obj.object_name.endswith(LOG_FILE_SUFFIXES))
    return [f"{S3_PREFIX}{bucket}/{name}" for name in names]


def _typed_value(kind: str, value: Any) -> Any:
    """The value as the column type, or raise ValueError with the reason."""
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("not a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    if not math.isfinite(value):
        raise ValueError("not finite")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("not an integer")
        return int(value)
    return float(value)


def _parse_line(raw: bytes, kinds: list[tuple[str, str]]) -> tuple:
    """One log line as (typed value per spec column..., ts or None); ValueError says why not."""
    record = _decode(raw)
    if not isinstance(record, dict) or not isinstance(record.get("instance"), dict):
        raise ValueError("no 'instance' object")
    instance = record["instance"]
    row = []
    for name, kind in kinds:
        if name not in instance:
            raise ValueError(f"column {name!r} missing")
        try:
            row.append(_typed_value(kind, instance[name]))
        except ValueError as err:
            raise ValueError(f"column {name!r}: {err}") from None
    ts = record.get("ts")
    row.append(float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None)
    return tuple(row)


def _reason(err: ValueError) -> str:
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(err, json.JSONDecodeError):
        return "invalid JSON"
    return str(err)


def read_serving_log(path: str | os.PathLike, spec, limit: int | None = None) -> ServingLogData:
    """Read a serving log (folder, glob, one file, an s3:// object or an s3:// prefix) into the spec's raw columns.

    With ``limit``, only the most recent ``limit`` rows (by file order) are kept. Malformed lines
    (invalid JSON, no ``instance`` object, a spec column missing or of the wrong type) are skipped
    and counted by reason; a missing path raises DataError.
    """
    from mlengine.components.shared import storage

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    files = resolve_log_files(path)
    kinds = [(col.name, col.type) for col in spec.columns]
    data = ServingLogData(columns={}, files=list(files))
    reasons: Counter[str] = Counter()
    per_file: list[list[tuple]] = []
    kept = 0
    for uri in reversed(files):  # newest first, so a limit stops reading early
        rows: list[tuple] = []
        with storage.open_binary(uri) as stream:
            for number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                data.lines += 1
                if not raw.endswith(b"\n"):  # the last line of a file the writer is in the middle of
                    data.incomplete += 1
                    continue
                try:
                    rows.append(_parse_line(raw, kinds))
                except ValueError as err:
                    reason = _reason(err)
                    reasons[reason] += 1
                    data.malformed += 1
                    if data.first_problem is None:
                        data.first_problem = f"{uri}:{number}: {reason}"
        per_file.append(rows)
        kept += len(rows)
        if limit is not None and kept >= limit:
            break
    ordered = [row for rows in reversed(per_file) for row in rows]
    if limit is not None:
        ordered = ordered[-limit:]
    data.rows = len(ordered)
    data.reasons = dict(reasons.most_common())
    timestamps = [row[-1] for row in ordered if row[-1] is not None]
    if timestamps:
        data.first_ts, data.last_ts = min(timestamps), max(timestamps)
    for position, (name, kind) in enumerate(kinds):
        values = [row[position] for row in ordered]
        data.columns[name] = np.array(values, dtype=DTYPES[kind].stored) if values else \
            np.zeros(0, dtype=DTYPES[kind].stored)
    return data
