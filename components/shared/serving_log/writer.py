"""The serving log's writer: :class:`ServingInputLog` and :func:`serving_log_from_env`.

The KServe predictor hands it each batch of *validated* raw instances (``log_columns(columns,
rows)`` with the validator's numpy columns, or ``log_instances([{...}, ...])``); it appends one
line per (sampled) instance (the layout in ``format.py``) into the files of one folder, or
hands them to the S3 sink (``s3.py``) for an ``s3://`` destination. Guarantees:

- bounded disk: a new file after ``max_lines_per_file`` lines or ``max_bytes_per_file`` bytes,
  and at most ``max_files`` files in the folder (the oldest are deleted), so the folder never
  holds more than about ``max_files * max_bytes_per_file`` bytes;
- thread-safe (one lock around the file; serialisation happens outside it) and fork-safe
  (each process writes its own files: ``--workers N`` servers share one folder);
- optional sampling (``sample_rate`` in (0, 1]);
- it never raises into the request path: every failure is counted in ``stats()["errors"]`` and
  logged once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.shared.serving_log.format import (
    LOG_FILE_PREFIX,
    LOG_FILE_SUFFIX,
    encode_lines,
    log_file_name,
    s3_prefix,
)
from mlengine.components.shared.serving_log.s3 import S3Sink
from mlengine.components.shared.staging import is_remote
from mlengine.errors import DataError

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

logger = logging.getLogger(__name__)


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
        self.uri = s3_prefix(text) if is_remote(text) else None
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
        self._s3 = S3Sink(self) if self.uri is not None else None

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

    def log_columns(self, columns: Mapping[str, Any], rows: int | None = None,
                    predictions: Mapping[str, Sequence[Any]] | None = None) -> int:
        """Log validated columns (name -> 1-D array, all of length ``rows``); returns rows written.

        This is what the predictor has after validation for both v1 and v2 requests.
        ``predictions`` (name -> one value per row, e.g. a classifier's ``label`` and
        ``probability``) is kept on each line as its ``prediction`` object. Never raises.
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
            per_row = None
            if predictions is not None:
                kept = {name: (list(values) if everything else [values[i] for i in keep])
                        for name, values in predictions.items()}
                per_row = [dict(zip(kept, row, strict=True)) for row in zip(*kept.values(), strict=True)]
            return self._write_instances(instances, rows, per_row)
        except Exception as err:
            self._record_error(err)
            return 0

    def _sampled_rows(self, rows: int) -> list[int]:
        if self.sample_rate >= 1.0:
            return list(range(rows))
        draw = self._rng.random  # a C call: atomic under the GIL, no lock needed
        return [i for i in range(rows) if draw() < self.sample_rate]

    def _write_instances(self, instances: Sequence[Mapping[str, Any]], rows_seen: int,
                         predictions: Sequence[Mapping[str, Any]] | None = None) -> int:
        lines = encode_lines(instances, time.time(), predictions)
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
        self._path = self.folder / log_file_name(self._pid, self._sequence)
        self._handle = open(self._path, "xb")  # noqa: SIM115 - kept open across calls
        self._lines_in_file = 0
        self._bytes_in_file = 0
        self._counts["files_opened"] += 1
        self._prune()

    def _prune(self) -> None:
        """Delete the oldest log files (any process's) beyond ``max_files``; never our open one."""
        files = sorted(p for p in self.folder.glob(f"{LOG_FILE_PREFIX}*{LOG_FILE_SUFFIX}") if p != self._path)
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
