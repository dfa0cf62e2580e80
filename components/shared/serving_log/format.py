"""The serving log's format, shared by the writer, the S3 sink and the reader.

One JSON object per line, one line per logged instance::

    {"ts": 1718000000.123, "instance": {"pickup_longitude": -73.98, ...}}

A classifier's lines also carry what it predicted (the class and its probability), so the monitor
can compare the predicted classes with the training labels; regression lines stay as above::

    {"ts": 1718000000.123, "instance": {...}, "prediction": {"label": "setosa", "probability": 0.97}}

in files (or objects) named ``serving-<start ns>-<pid>-<seq>.jsonl`` (``.jsonl.gz`` is read
too), so names sort oldest first and concurrent writers never share a file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlengine.components.shared.staging import normalize_uri

LOG_FILE_PREFIX = "serving-"
LOG_FILE_SUFFIX = ".jsonl"  # what the writers write
LOG_FILE_SUFFIXES = (LOG_FILE_SUFFIX, ".jsonl.gz")  # what the reader reads
S3_PREFIX = "s3://"

try:  # orjson (a kserve dependency) encodes and parses 3-7x faster than the standard library
    import orjson as _orjson
except ImportError:  # the standard library does the same, slower (tests run both)
    _orjson = None


def log_file_name(pid: int, sequence: int) -> str:
    """A new log file's (or object's) name: start time in ns, the writing process, its sequence."""
    return f"{LOG_FILE_PREFIX}{time.time_ns():020d}-{pid}-{sequence:06d}{LOG_FILE_SUFFIX}"


def is_log_file_name(name: str) -> bool:
    """True for a name a writer wrote (what pruning may delete)."""
    return name.startswith(LOG_FILE_PREFIX) and name.endswith(LOG_FILE_SUFFIX)


def s3_prefix(text: str) -> str:
    """``minio://b/p`` -> ``s3://b/p/`` (a prefix always ends with one slash)."""
    return normalize_uri(text).rstrip("/") + "/"


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


def encode_lines(instances: Sequence[Mapping[str, Any]], ts: float,
                 predictions: Sequence[Mapping[str, Any]] | None = None) -> list[bytes]:
    """One record line (newline-terminated bytes) per instance, all stamped ``ts`` (seconds, ms precision);
    with ``predictions`` (one object per instance) each line also carries its ``prediction``."""
    prefix = f'{{"ts":{round(ts, 3)},"instance":'.encode("ascii")
    dumps = _encoder()
    if predictions is None:
        return [prefix + dumps(instance) + b"}\n" for instance in instances]
    return [prefix + dumps(instance) + b',"prediction":' + dumps(prediction) + b"}\n"
            for instance, prediction in zip(instances, predictions, strict=True)]


def decode_record(raw: bytes) -> tuple[dict[str, Any], float | None]:
    """(instance, ts or None) of one line; ValueError (JSON or layout) says why not."""
    instance, ts, _ = decode_record_with_prediction(raw)
    return instance, ts


def decode_record_with_prediction(raw: bytes) -> tuple[dict[str, Any], float | None, dict[str, Any] | None]:
    """(instance, ts or None, prediction object or None) of one line; ValueError says why not."""
    record = _orjson.loads(raw) if _orjson is not None else json.loads(raw)
    if not isinstance(record, dict) or not isinstance(record.get("instance"), dict):
        raise ValueError("no 'instance' object")
    ts = record.get("ts")
    prediction = record.get("prediction")
    return (record["instance"], float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None,
            prediction if isinstance(prediction, dict) else None)
