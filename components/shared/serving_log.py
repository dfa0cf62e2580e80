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

Reader: :func:`read_serving_log` turns a folder (or one file) back into typed numpy columns of
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
                 max_files: int = DEFAULT_MAX_FILES, seed: int | None = None):
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        for name, value in (("max_lines_per_file", max_lines_per_file), ("max_bytes_per_file", max_bytes_per_file),
                            ("max_files", max_files)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.folder = Path(folder)
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

    # --- pickling (kserve --workers N pickles the predictor into each worker process) ----------
    def __getstate__(self) -> dict:
        keep = ("folder", "sample_rate", "max_lines_per_file", "max_bytes_per_file", "max_files", "seed")
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
        """Counters: batches, rows_seen, rows_written, rows_sampled_out, files_opened, files_deleted, errors."""
        keys = ("batches", "rows_seen", "rows_written", "rows_sampled_out", "files_opened", "files_deleted", "errors")
        return {key: int(self._counts[key]) for key in keys}

    @property
    def current_file(self) -> Path | None:
        return self._path if self._handle is not None else None

    def flush(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.flush()

    def close(self) -> None:
        with self._lock:
            self._drop_handle()

    def __enter__(self) -> ServingInputLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def serving_log_from_env(environ: Mapping[str, str] | None = None) -> ServingInputLog | None:
    """The log the environment asks for (``MLENGINE_SERVING_LOG_DIR`` set), else None.

    Optional: ``MLENGINE_SERVING_LOG_SAMPLE_RATE`` (default 1), ``MLENGINE_SERVING_LOG_MAX_FILES``,
    ``MLENGINE_SERVING_LOG_MAX_LINES`` (per file). A bad value raises ValueError naming the variable.
    """
    env = os.environ if environ is None else environ
    folder = env.get(ENV_SERVING_LOG_DIR, "").strip()
    if not folder:
        return None
    options: dict[str, Any] = {}
    for variable, option, convert in ((ENV_SERVING_LOG_SAMPLE_RATE, "sample_rate", float),
                                      (ENV_SERVING_LOG_MAX_FILES, "max_files", int),
                                      (ENV_SERVING_LOG_MAX_LINES, "max_lines_per_file", int)):
        text = env.get(variable, "").strip()
        if text:
            try:
                options[option] = convert(text)
            except ValueError:
                raise ValueError(f"{variable}={text!r}: expected a {convert.__name__}") from None
    try:
        return ServingInputLog(folder, **options)
    except ValueError as err:
        raise ValueError(f"serving log settings from the environment: {err}") from None


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
    if text.startswith("s3://"):
        return [text]  # one object; storage.open_binary streams it
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
    """Read a serving log (folder, glob, one file, or one s3:// object) into the spec's raw columns.

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
