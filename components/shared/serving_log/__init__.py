"""The serving input log: what the predictor saw, written as bounded JSON Lines for the skew monitor.

- ``format.py``: the record layout, the file naming and the JSON encoding every side shares;
- ``writer.py``: :class:`ServingInputLog` (local folder, or an ``s3://`` prefix through
  ``s3.py``, the S3 sink) and :func:`serving_log_from_env`;
- ``reader.py``: :func:`read_serving_log`, typed columns back for the monitor.

The names below are the package's public interface (``from ...serving_log import X``).
"""

from mlengine.components.shared.serving_log.format import LOG_FILE_PREFIX, LOG_FILE_SUFFIXES, S3_PREFIX
from mlengine.components.shared.serving_log.reader import ServingLogData, read_serving_log, resolve_log_files
from mlengine.components.shared.serving_log.writer import (
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_BYTES_PER_FILE,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_LINES_PER_FILE,
    DEFAULT_MAX_PENDING,
    ENV_SERVING_LOG_DIR,
    ENV_SERVING_LOG_FLUSH_SECONDS,
    ENV_SERVING_LOG_MAX_FILES,
    ENV_SERVING_LOG_MAX_LINES,
    ENV_SERVING_LOG_SAMPLE_RATE,
    ENV_SERVING_LOG_URI,
    ServingInputLog,
    serving_log_from_env,
)

__all__ = [
    "DEFAULT_FLUSH_INTERVAL_S", "DEFAULT_MAX_BYTES_PER_FILE", "DEFAULT_MAX_FILES", "DEFAULT_MAX_LINES_PER_FILE",
    "DEFAULT_MAX_PENDING", "ENV_SERVING_LOG_DIR", "ENV_SERVING_LOG_FLUSH_SECONDS", "ENV_SERVING_LOG_MAX_FILES",
    "ENV_SERVING_LOG_MAX_LINES", "ENV_SERVING_LOG_SAMPLE_RATE", "ENV_SERVING_LOG_URI", "LOG_FILE_PREFIX",
    "LOG_FILE_SUFFIXES", "S3_PREFIX", "ServingInputLog", "ServingLogData", "read_serving_log", "resolve_log_files",
    "serving_log_from_env",
]
