"""Constants and per-request / per-worker limits of the model server (light: no kserve import)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlengine.components.deploy.validation import DEFAULT_MAX_BODY_BYTES

DEFAULT_HOST = "127.0.0.1"
MODEL_VERSION = "1"  # one model directory = one version; the cluster stages it as <storageUri>/1 (TF Serving)
DEFAULT_MAX_HEADER_BYTES = 16 * 1024  # request line + headers (h11's default; nginx allows 8-32 KiB)
DEFAULT_READ_TIMEOUT_S = 30.0  # head + body of one request, from its first byte
DEFAULT_HEAD_TIMEOUT_S = 5.0  # the request line + headers (a head is a few hundred bytes: one round trip)
DEFAULT_MAX_PENDING_CONNECTIONS = 2048  # per worker, still reading their head (<= 2 x 16 KiB buffered each)
DEFAULT_REQUEST_TIMEOUT_S = 60.0  # from the head until the response starts (covers the model)
DEFAULT_MAX_CONNECTIONS = 256  # per worker; uvicorn answers 503 beyond it
DEFAULT_SHUTDOWN_GRACE_S = 15  # drain in-flight requests; below deploy's 20 s before SIGKILL
REQUEST_ID_HEADER = b"x-request-id"
BINARY_HEADER = b"inference-header-content-length"  # KServe / Triton binary tensor extension
REPOSITORY_PREFIX = "/v2/repository"
REPOSITORY_EXTENSION = "model_repository_extension"  # as kserve names it in GET /v2
CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")  # echoed back: bounded, no header injection
V1_PREDICT_NAME = re.compile(r"^/v1/models/([^/:]+):predict$")
V2_INFER_NAME = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
FAST_PATH_ENV = "MLENGINE_SERVE_FAST_PATH"  # "0": every request through kserve's handlers (the benchmark's baseline)
REPLACED_V2_HANDLERS = ("metadata", "model_metadata", "model_ready", "infer")


@dataclass(frozen=True)
class ServerLimits:
    """What one request and one worker may use; every limit answers 4xx (or 503 for capacity), never hangs.

    Attributes:
        max_body_bytes: largest request body (413, before reading when Content-Length says so).
        max_header_bytes: largest request line + headers (431 and the connection closed).
        read_timeout_s: the whole request (head and body) must arrive within this many seconds
            of its first byte, or the client gets 408 and the connection is closed.
        request_timeout_s: seconds from the request head to the start of the response (503).
        max_connections: connections per worker with a complete request head before new requests get
            503 (connections still reading their head do not count).
        head_timeout_s: the request head (line and headers) must arrive within this many seconds of
            the connection's opening (or of the first byte of a next request on a kept-alive one);
            else 408 (or a plain close when nothing came) and the connection is closed.
        max_pending_connections: connections per worker still reading their head; past it the
            oldest is closed.
        shutdown_grace_s: on SIGTERM, seconds to finish in-flight requests before they are cancelled.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_grace_s: int = DEFAULT_SHUTDOWN_GRACE_S
    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S
    max_pending_connections: int = DEFAULT_MAX_PENDING_CONNECTIONS

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "read_timeout_s", "request_timeout_s",
                     "max_connections", "shutdown_grace_s", "head_timeout_s", "max_pending_connections"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


def default_model_name(spec_name: str) -> str:
    """A URL-safe model name from the spec name ("nyc-taxi-fare")."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", spec_name.lower()).strip("-")
    return cleaned or "model"
