"""The serving log's reader: :func:`read_serving_log` turns a folder (or one file, a glob, or an
``s3://`` object or prefix) back into typed numpy columns of the spec's raw columns, skipping and
counting malformed lines.
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.shared.featurespec import DTYPES
from mlengine.components.shared.serving_log.format import (
    LOG_FILE_SUFFIXES,
    S3_PREFIX,
    decode_record_with_prediction,
    s3_prefix,
)
from mlengine.components.shared.staging import is_remote, normalize_uri
from mlengine.errors import DataError


@dataclass
class ServingLogData:
    """Typed columns read back from a serving log, with the accounting of every line."""

    columns: dict[str, np.ndarray]
    rows: int = 0
    # per row, the line's "prediction" object (a classifier's class and probability), None without one
    predictions: list[dict[str, Any] | None] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines: int = 0  # non-blank lines looked at (rows + malformed + incomplete)
    malformed: int = 0
    incomplete: int = 0  # a last line without newline: a file still being written
    reasons: dict[str, int] = field(default_factory=dict)
    first_problem: str | None = None  # "file:line: reason" of the first malformed line
    first_ts: float | None = None
    last_ts: float | None = None

    def summary(self) -> dict[str, Any]:
        out = {key: value for key, value in self.__dict__.items() if key not in ("columns", "predictions")}
        out["rows_with_prediction"] = sum(prediction is not None for prediction in self.predictions)
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
    uri = s3_prefix(uri)
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
    """One log line as (typed value per spec column..., prediction or None, ts or None); ValueError says why not."""
    instance, ts, prediction = decode_record_with_prediction(raw)
    row = []
    for name, kind in kinds:
        if name not in instance:
            raise ValueError(f"column {name!r} missing")
        try:
            row.append(_typed_value(kind, instance[name]))
        except ValueError as err:
            raise ValueError(f"column {name!r}: {err}") from None
    row.append(prediction)
    row.append(ts)
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
    data.predictions = [row[-2] for row in ordered]
    timestamps = [row[-1] for row in ordered if row[-1] is not None]
    if timestamps:
        data.first_ts, data.last_ts = min(timestamps), max(timestamps)
    for position, (name, kind) in enumerate(kinds):
        values = [row[position] for row in ordered]
        data.columns[name] = np.array(values, dtype=DTYPES[kind].stored) if values else \
            np.zeros(0, dtype=DTYPES[kind].stored)
    return data
