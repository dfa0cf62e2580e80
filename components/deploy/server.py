"""Run the real kserve ``ModelServer`` for one model directory on a chosen host (127.0.0.1 by default).

kserve 0.21's REST server always binds 0.0.0.0, always starts a gRPC port and always registers
the model repository extension (``POST /v2/repository/models/<name>/load|unload``, no
authentication). This subclass binds the host we ask for, leaves gRPC off, leaves the
repository extension off unless ``enable_model_repository=True`` (``--enable-model-repository``)
and, with ``hardened=True`` (our server), adds what a public endpoint needs:

- limits (:class:`ServerLimits`): request body size (413; Starlette's ``RequestBodyLimitMiddleware``
  for bodies without Content-Length), request line + header size (431; the HTTP protocol
  bounds what is buffered of an unfinished head too), a read deadline
  for the head and the body of each request (slow or stalled clients get 408 and lose the
  connection), a deadline for the whole request (503), connections per worker (uvicorn's
  ``limit_concurrency``, 503) and a shutdown grace period that drains in-flight requests;
- JSON 4xx answers ``{"error", "field", "index"}`` for every input problem, including FastAPI's
  own v2 body validation (422 -> 400 with the failing path), logged as one line, not a traceback;
- ``model_version``: the model directory is one version, ``MODEL_VERSION`` ("1", the version
  directory the cluster stages); other versions are 404 naming ``model_version``, never 501;
- v2 bodies without a Content-Type and without the binary header are JSON (as Triton reads
  them), so ``tritonclient`` JSON requests work; binary tensor requests work as before;
- request bodies with ``Content-Encoding: gzip`` or ``deflate`` (what ``tritonclient``'s
  ``request_compression_algorithm`` sends) are inflated before anything reads them, the body
  limit counting the decoded bytes (413 for a zip bomb, 400 for corrupt data, 415 for other
  encodings);
- every response carries ``x-request-id`` (the client's, when it sent a sane one); a server fault
  is a 500 ``{"error", "request_id"}`` with the traceback in the log under that id, never in the
  response;
- no per-request timing/trace log lines (KServe's TimingMiddleware logs several per request).

``hardened=False`` is the stock kserve behaviour (the benchmark's "straightforward" server),
still without the repository extension unless asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import uuid
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Union

from mlengine.components.deploy.predictor import InvalidRequest, RawFeaturePredictor
from mlengine.components.deploy.validation import DEFAULT_MAX_BODY_BYTES

_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve.model_server parses sys.argv when it is imported
try:
    import orjson
    from fastapi.exceptions import RequestValidationError
    from fastapi.requests import Request
    from fastapi.responses import ORJSONResponse, Response
    from fastapi.routing import APIRoute
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.errors import InferenceError, InvalidInput, ModelNotFound
    from kserve.logging import logger
    from kserve.model_server import ModelServer
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
    from kserve.protocol.rest.server import RESTServer
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
    from kserve.protocol.rest.v2_endpoints import V2Endpoints
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY, RequestBodyLimitMiddleware
    from starlette.requests import ClientDisconnect
    from uvicorn.importer import import_from_string
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
finally:
    sys.argv = _argv

DEFAULT_HOST = "127.0.0.1"
MODEL_VERSION = "1"  # one model directory = one version; the cluster stages it as <storageUri>/1 (TF Serving)
DEFAULT_MAX_HEADER_BYTES = 16 * 1024  # request line + headers (h11's default; nginx allows 8-32 KiB)
DEFAULT_READ_TIMEOUT_S = 30.0  # head + body of one request, from its first byte
DEFAULT_REQUEST_TIMEOUT_S = 60.0  # from the head until the response starts (covers the model)
DEFAULT_MAX_CONNECTIONS = 256  # per worker; uvicorn answers 503 beyond it
DEFAULT_SHUTDOWN_GRACE_S = 15  # drain in-flight requests; below deploy's 20 s before SIGKILL
REQUEST_ID_HEADER = b"x-request-id"
BINARY_HEADER = b"inference-header-content-length"  # KServe / Triton binary tensor extension
REPOSITORY_PREFIX = "/v2/repository"
REPOSITORY_EXTENSION = "model_repository_extension"  # as kserve names it in GET /v2
_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")  # echoed back: bounded, no header injection
_V1_PREDICT_NAME = re.compile(r"^/v1/models/([^/:]+):predict$")
_V2_INFER_NAME = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
FAST_PATH_ENV = "MLENGINE_SERVE_FAST_PATH"  # "0": every request through kserve's handlers (the benchmark's baseline)
_REPLACED_V2_HANDLERS = ("metadata", "model_metadata", "model_ready", "infer")


@dataclass(frozen=True)
class ServerLimits:
    """What one request and one worker may use; every limit answers 4xx (or 503 for capacity), never hangs.

    Attributes:
        max_body_bytes: largest request body (413, before reading when Content-Length says so).
        max_header_bytes: largest request line + headers (431 and the connection closed).
        read_timeout_s: the whole request (head and body) must arrive within this many seconds
            of its first byte, or the client gets 408 and the connection is closed.
        request_timeout_s: seconds from the request head to the start of the response (503).
        max_connections: open connections per worker before new requests get 503.
        shutdown_grace_s: on SIGTERM, seconds to finish in-flight requests before they are cancelled.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_grace_s: int = DEFAULT_SHUTDOWN_GRACE_S

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "read_timeout_s", "request_timeout_s",
                     "max_connections", "shutdown_grace_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


class ModelVersionNotFound(ModelNotFound):
    """A ``model_version`` other than the one served: 404 naming the parameter."""

    def __init__(self, model_name: str, version: str):
        super().__init__(model_name)
        self.reason = (f"model_version {version!r} of model {model_name!r} is not served; "
                       f"the only version is {MODEL_VERSION!r}")

    def __str__(self) -> str:
        return self.reason


# --- HTTP: uvicorn's httptools protocol with a read deadline and a bound on the head ------------
class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (what stock KServe runs) where a request must arrive whole in time.

    uvicorn only times out idle keep-alive connections *between* requests: a fresh connection
    that sends nothing, or a client that trickles its head or body a byte at a time, holds a
    connection (and its slot in ``limit_concurrency``) forever. Here a deadline runs from the
    opening of a connection, and on a kept-alive connection from the first byte of each next
    request, until the request is read completely. When it passes, a client that sent part of
    a request gets 408, and the connection is closed (a handler waiting for the body sees a
    disconnect). Idle time between requests stays uvicorn's keep-alive timeout.

    httptools buffers a head of any size, so the bytes of an unfinished head are counted here:
    past ``config.max_head_bytes`` the client gets 431 and the connection is closed. That bound
    is twice the header limit, so :class:`RequestGuardMiddleware`'s exact check (431) sees every
    head within the limit whole, however it was split into packets.
    """

    def __init__(self, config, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self.read_timeout_s = getattr(config, "read_timeout_s", None)
        self.max_head_bytes = getattr(config, "max_head_bytes", None)
        self._read_timer: asyncio.TimerHandle | None = None
        self._request_started = False  # a byte of the request being read has come (the timer runs until it is read)
        self._head_open = False  # between the first byte of a request and the end of its headers
        self._head_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_read_timer()

    def data_received(self, data: bytes) -> None:
        head_was_open = self._head_open
        super().data_received(data)
        if self._head_open and self.max_head_bytes and not self.transport.is_closing():
            # a head that began in this chunk counts the whole chunk: at most one chunk too many
            self._head_bytes = self._head_bytes + len(data) if head_was_open else len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, f"the request line and headers are larger than the limit of "
                                  f"{self.max_head_bytes // 2} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = self._head_open = True
        self._start_read_timer()

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._request_started = False
        self._cancel_read_timer()  # the request is read whole
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        super().connection_lost(exc)

    def _start_read_timer(self) -> None:
        if self.read_timeout_s and self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        logger.info("closed the connection of %s: request not received within %g s",
                    "{}:{}".format(*self.client) if self.client else "a client", self.read_timeout_s)
        # self.cycle is this request's only once its head is read (before, it is the previous request's)
        answered = not self._head_open and self.cycle is not None and self.cycle.response_started
        if not self._request_started or answered:  # not one byte of a request came, or it was answered early
            self.transport.close()
            return
        self._refuse(408, f"the request was not received within {self.read_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer raw and close: uvicorn has no answer path for a request whose head or body is unread."""
        if not self._head_open and self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # a handler still reading the body sees a disconnect
        body = orjson.dumps(_problem(message))
        self.transport.write(STATUS_LINE[status] + b"content-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()


# --- ASGI: request ids, JSON without Content-Type, the request deadline, server faults -----------
class RequestGuardMiddleware:
    """Outermost ASGI middleware of the hardened app (inside Starlette's ServerErrorMiddleware).

    - ``x-request-id`` on every response (the client's own when it is sane, else a new one), in
      ``scope["state"]["request_id"]`` for the handlers;
    - 431 when the request line + headers exceed ``max_header_bytes`` (the protocol's own bound
      only caps what it buffers of an *incomplete* head), 413 as JSON when Content-Length exceeds
      ``max_body_bytes`` (Starlette's body limit answers plain text there; it still enforces the
      limit on bodies without Content-Length, through our JSON handler);
    - a v2 infer POST with neither Content-Type nor ``inference-header-content-length`` is JSON
      (Triton's rule; ``tritonclient`` sends JSON bodies without a Content-Type);
    - the response must start within ``request_timeout_s`` (else 503);
    - an unhandled exception is a 500 ``{"error", "request_id"}``, logged with its traceback
      under the request id; a client that went away mid-request is logged as one line.
    """

    def __init__(self, app, limits: ServerLimits | None = None):
        self.app = app
        self.limits = limits or ServerLimits()
        self.request_timeout_s = self.limits.request_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope["headers"]
        request_id = _request_id(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        refusal = _refusal(scope, self.limits)
        if refusal is not None:
            status, message = refusal
            logger.info("rejected request %s: %s", request_id, message)
            return await _send_json(send, status, _problem(message),
                                    [(REQUEST_ID_HEADER, request_id.encode()), (b"connection", b"close")])
        if (scope["method"] == "POST" and _V2_INFER_NAME.match(scope["path"])
                and not any(key in (b"content-type", BINARY_HEADER) for key, _ in headers)):
            scope["headers"] = [*headers, (b"content-type", b"application/json")]
        started = False

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        deadline = asyncio.timeout(self.request_timeout_s)
        try:
            async with deadline:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            logger.info("request %s: %s %s: the client disconnected before the request was read",
                        request_id, scope["method"], scope["path"])
        except TimeoutError as err:
            if not deadline.expired():
                return await _server_fault(scope, send_with_id, started, request_id, err)
            logger.warning("request %s: %s %s: no response within %g s", request_id, scope["method"], scope["path"],
                           self.request_timeout_s)
            if not started:
                await _send_json(send_with_id, 503, {
                    "error": f"the request took longer than {self.request_timeout_s:g} s", "request_id": request_id,
                    "field": None, "index": None})
        except Exception as err:
            await _server_fault(scope, send_with_id, started, request_id, err)


class RequestDecodingMiddleware:
    """Request bodies sent with ``Content-Encoding: gzip`` or ``deflate`` decoded before any handler.

    ``tritonclient`` compresses request bodies on request (``request_compression_algorithm``) and
    Triton reads them; kserve's handlers would parse the compressed bytes as JSON (400). The body
    is inflated in bounded steps: more than ``max_body_bytes`` once inflated is 413 (a small
    compressed body must not become gigabytes), corrupt data is 400 and any other encoding 415,
    each a JSON answer naming the encoding. The handlers then see the decoded body with its own
    Content-Length and no Content-Encoding. Responses are sent uncompressed.
    """

    def __init__(self, app, limits: ServerLimits | None = None):
        self.app = app
        self.max_body_bytes = (limits or ServerLimits()).max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        encodings = [token.strip().lower() for key, value in scope["headers"] if key == b"content-encoding"
                     for token in value.decode("latin-1").split(",")]
        encodings = [token for token in encodings if token not in ("", "identity")]
        if not encodings:
            return await self.app(scope, receive, send)
        unknown = [token for token in encodings if token not in REQUEST_ENCODINGS]
        if unknown:
            readable = ", ".join(sorted(set(REQUEST_ENCODINGS) - {"x-gzip"}))
            return await _send_problem(scope, send, 415, f"Content-Encoding {unknown[0]!r} is not supported "
                                                         f"(the server reads {readable})")
        try:
            body = await _read_body(receive, limit=self.max_body_bytes)
            for token in reversed(encodings):  # listed in the order they were applied
                body = _inflate(body, token, self.max_body_bytes)
        except _BodyTooLarge:
            limit = self.max_body_bytes
            return await _send_problem(scope, send, 413, f"request body larger than the limit of {limit} bytes "
                                                         f"once decoded ({', '.join(encodings)})")
        except zlib.error as err:
            return await _send_problem(scope, send, 400, f"the body is not valid {token} data ({err})")
        headers = [(key, value) for key, value in scope["headers"]
                   if key not in (b"content-encoding", b"content-length", b"transfer-encoding")]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        return await self.app(scope, _replay(body, receive), send)


REQUEST_ENCODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
INFLATE_STEP_BYTES = 1 << 20  # output produced per decompress call, so an oversized body stops early


class _BodyTooLarge(Exception):
    pass


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decoded from ``encoding`` (HTTP's deflate is the zlib format; raw deflate is read too).

    Raises _BodyTooLarge past ``limit`` decoded bytes, zlib.error on corrupt or truncated data."""
    wbits = REQUEST_ENCODINGS[encoding]
    if encoding == "deflate" and data[:1] and (data[0] & 0x0F != 8 or int.from_bytes(data[:2], "big") % 31):
        wbits = -zlib.MAX_WBITS  # no zlib header: raw deflate, as some clients send it
    inflater = zlib.decompressobj(wbits)
    pieces, size, pending = [], 0, data
    while not inflater.eof:
        # with all input consumed, a call without input still returns what zlib holds back
        piece = inflater.decompress(pending, INFLATE_STEP_BYTES)
        if not piece and not pending:
            raise zlib.error("the compressed data ends early")
        size += len(piece)
        if size > limit:
            raise _BodyTooLarge
        pieces.append(piece)
        pending = inflater.unconsumed_tail
    return b"".join(pieces)


class FastInferMiddleware:
    """The served model's v1 predict and v2 infer requests decoded straight into numpy columns.

    kserve's handlers build pydantic models, per-value Python lists and response objects for
    every request (``InferenceRequest``, ``InferRequest``, ``InferenceResponse``): at batch 256
    that costs several times the model call. Here the body is read whole, decoded with orjson
    (binary tensors with ``np.frombuffer``), validated by the same :class:`RequestValidator`
    and answered with orjson. Only requests that pass every check are answered here; anything
    else (invalid input, CloudEvents, chunked bodies, query strings, unknown models or versions,
    BYTES binary tensors) goes on to kserve's handlers with the same bytes, so every error answer is
    unchanged. ``MLENGINE_SERVE_FAST_PATH=0`` turns it off.
    """

    def __init__(self, app, registry):
        self.app = app
        self.registry = registry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            return await self.app(scope, receive, send)  # a query may name a model_version: kserve's routes
        path = scope["path"]
        v1 = _V1_PREDICT_NAME.match(path)
        v2 = None if v1 else _V2_INFER_NAME.match(path)
        match = v1 or v2
        if match is None or (v2 is not None and v2.group(2) not in (None, MODEL_VERSION)):
            return await self.app(scope, receive, send)
        model = self.registry.get_model(match.group(1))
        if not isinstance(model, RawFeaturePredictor) or not model.ready or model._validator is None:
            return await self.app(scope, receive, send)
        length = json_length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == BINARY_HEADER:
                json_length = value
            elif key.startswith(b"ce-") or (key == b"content-type" and b"cloudevents" in value):
                return await self.app(scope, receive, send)
        if length is None or not length.isdigit():
            return await self.app(scope, receive, send)
        if v1 is not None and json_length is not None:
            return await self.app(scope, receive, send)
        if json_length is not None:
            if not (json_length.isascii() and json_length.isdigit()) or int(json_length) > int(length):
                return await self.app(scope, receive, send)
            json_length = int(json_length)
        body = await _read_body(receive)
        answer = await (model.fast_v1(body) if v1 is not None else model.fast_v2(body, json_length))
        if answer is None:
            return await self.app(scope, _replay(body, receive), send)
        headers = [(b"content-type", b"application/json")]
        if v2 is not None:
            answer, size = answer
            if size is not None:
                headers = [(BINARY_HEADER, str(size).encode())]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


async def _read_body(receive, limit: int | None = None) -> bytes:
    """The whole request body (_BodyTooLarge past ``limit`` bytes: one sent without Content-Length)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands ``body`` over once, then the connection's own messages."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _refusal(scope, limits: ServerLimits) -> tuple[int, str] | None:
    """(status, message) for a request refused on its head alone, else None."""
    head = len(scope.get("raw_path") or b"") + len(scope["query_string"]) + sum(
        len(key) + len(value) + 4 for key, value in scope["headers"])
    if head > limits.max_header_bytes:
        return 431, f"request line and headers of {head} bytes are larger than the limit of {limits.max_header_bytes}"
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > limits.max_body_bytes:
            return 413, f"request body larger than the limit of {limits.max_body_bytes} bytes"
    return None


def _request_id(headers) -> str:
    for key, value in headers:
        if key == REQUEST_ID_HEADER and _CLIENT_REQUEST_ID.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


async def _server_fault(scope, send, started: bool, request_id: str, err: BaseException) -> None:
    logger.error("request %s: %s %s failed: %s: %s", request_id, scope["method"], scope["path"],
                 type(err).__name__, err, exc_info=err)
    if not started:
        await _send_json(send, 500, _fault_body(request_id))


def _fault_body(request_id: str) -> dict[str, Any]:
    return {"error": f"internal server error (request id {request_id})", "request_id": request_id,
            "field": None, "index": None}


def _problem(message: str) -> dict[str, Any]:
    """The JSON body of every 4xx answer: the message, and the field / instance it names (none here)."""
    return {"error": message, "field": None, "index": None}


async def _send_problem(scope, send, status: int, message: str) -> None:
    """A 4xx answer from a middleware, logged as one line under the request id."""
    logger.info("rejected request %s: %s", scope.get("state", {}).get("request_id", "-"), message)
    await _send_json(send, status, _problem(message))


async def _send_json(send, status: int, content: dict, headers: list | None = None) -> None:
    body = orjson.dumps(content)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or ())]})
    await send({"type": "http.response.body", "body": body})


# --- exception handlers (inside the app: the answer is JSON with our fields) ----------------------
async def _invalid_request_handler(_request, exc: InvalidRequest):
    logger.info("rejected request: %s", exc.reason)
    return ORJSONResponse(status_code=400, content=exc.to_json())


async def _invalid_input_handler(_request, exc: InvalidInput):
    message = " ".join(str(exc).split())
    logger.info("rejected request: %s", message)
    return ORJSONResponse(status_code=400, content=_problem(message))


async def _http_exception_handler(request, exc: StarletteHTTPException):
    message = " ".join(str(exc.detail).split())
    if exc.status_code == 413 and request.scope.get(MAX_BODY_SIZE_SCOPE_KEY):
        message = f"request body larger than the limit of {request.scope[MAX_BODY_SIZE_SCOPE_KEY]} bytes"
    return ORJSONResponse(status_code=exc.status_code, content=_problem(message),
                          headers=getattr(exc, "headers", None))


async def _model_not_found_handler(_request, exc: ModelNotFound):
    field = "model_version" if isinstance(exc, ModelVersionNotFound) else "model_name"
    return ORJSONResponse(status_code=404, content={"error": str(exc), "field": field, "index": None})


async def _server_fault_handler(request, exc: Exception):
    """kserve's InferenceError / NotImplementedError: a server fault, answered without its message."""
    request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
    logger.error("request %s: %s %s failed: %s: %s", request_id, request.method, request.url.path,
                 type(exc).__name__, exc, exc_info=exc)
    return ORJSONResponse(status_code=500, content=_fault_body(request_id))


async def _request_validation_handler(_request, exc: RequestValidationError):
    errors = list(exc.errors())
    # the v2 body is Union[InferenceRequest, bytes]: report the InferenceRequest branch, without its type name
    errors.sort(key=lambda e: "InferenceRequest" not in [str(p) for p in e.get("loc", ())])
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "InferenceRequest", "bytes")]
    if first.get("type") == "json_invalid":  # the location is a character position, not a field
        detail = (first.get("ctx") or {}).get("error") or first.get("msg", "")
        message, field = f"the body is not valid JSON (at character {'.'.join(location) or '?'}): {detail}", None
    else:
        field = ".".join(location) or None
        message = f"{field or 'body'}: {first.get('msg', 'invalid request body')}"
    logger.info("rejected request: %s", message)
    return ORJSONResponse(status_code=400, content={"error": message, "field": field, "index": None})


# --- routes -------------------------------------------------------------------------------------
class VersionedV2Endpoints(V2Endpoints):
    """kserve's v2 handlers where ``model_version`` may name the one version served.

    kserve 0.21 answers any ``model_version`` (path or query) with 501 "not supported yet".
    """

    def __init__(self, *args: Any, repository_enabled: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.repository_enabled = repository_enabled

    async def metadata(self):
        answer = await super().metadata()
        if not self.repository_enabled:  # do not advertise routes that are not there
            answer.extensions = [e for e in answer.extensions if e != REPOSITORY_EXTENSION]
        return answer

    async def model_metadata(self, model_name: str, model_version: str | None = None):
        self._check_version(model_name, model_version)
        answer = await super().model_metadata(model_name)
        answer.versions = [MODEL_VERSION]
        return answer

    async def model_ready(self, model_name: str, model_version: str | None = None):
        self._check_version(model_name, model_version)
        return await super().model_ready(model_name)

    async def infer(self, raw_request: Request, raw_response: Response, model_name: str,
                    request_body: Union[InferenceRequest, bytes],  # noqa: UP007 (FastAPI reads this annotation)
                    model_version: str | None = None):
        self._check_version(model_name, model_version)
        if isinstance(request_body, bytes):  # decoded here: any failure is the client's bytes, a 400 (kserve: 500)
            request_body = _decode_binary_request(request_body, raw_request.headers.get(BINARY_HEADER.decode()),
                                                  model_name)
        return await super().infer(raw_request, raw_response, model_name, request_body)

    def _check_version(self, model_name: str, model_version: str | None) -> None:
        if self.dataplane.model_registry.get_model(model_name) is None:
            raise ModelNotFound(model_name)
        if model_version not in (None, "", MODEL_VERSION):
            raise ModelVersionNotFound(model_name, model_version)


def _decode_binary_request(body: bytes, json_length: str | None, model_name: str) -> InferRequest:
    """A binary-extension v2 body (JSON header + raw tensors) as an ``InferRequest``, else InvalidInput."""
    header = BINARY_HEADER.decode()
    if json_length is None:
        raise InvalidInput(f"the body is not JSON (no JSON Content-Type) and the '{header}' header of a binary "
                           f"tensor request is missing")
    if not (json_length.isascii() and json_length.isdigit()) or int(json_length) > len(body):  # "²".isdigit()
        raise InvalidInput(f"{header}: {json_length[:40]!r} is not a byte count within the {len(body)}-byte body")
    try:
        return InferRequest.from_bytes(body, int(json_length), model_name)
    except InvalidInput:
        raise
    except Exception as err:  # KeyError, TypeError, ValueError... from malformed client bytes
        raise InvalidInput(f"the binary tensor request does not parse: {type(err).__name__}: {err}") from None


class GuardedModelRepositoryExtension(ModelRepositoryExtension):
    """kserve's repository extension (only with ``--enable-model-repository``): an unknown name is 404, not 503."""

    async def load(self, model_name: str) -> None:
        if self._model_registry.get_model(model_name) is None:
            raise ModelNotFound(model_name)
        await super().load(model_name)


def _kserve_routes(server: RESTServer) -> list[APIRoute]:
    """kserve's own route table (``RESTServer._register_endpoints``), collected on a scratch app.

    FastAPI 0.165 keeps included routers nested (``_IncludedRouter``) with cached views, so the
    table is edited as a list here and registered on the real app once, instead of in place.
    """
    from fastapi import FastAPI

    scratch = FastAPI()
    RESTServer._register_endpoints(server, scratch)
    routes: list[APIRoute] = []

    def walk(router) -> None:
        for route in router.routes:
            if isinstance(route, APIRoute):
                routes.append(route)
            elif hasattr(route, "original_router"):
                walk(route.original_router)

    walk(scratch.router)
    return routes


def _register_routes(app, routes: list[APIRoute], v2: VersionedV2Endpoints | None,
                     enable_model_repository: bool) -> None:
    """Register kserve's routes without the repository extension (unless asked) or ``:explain``; version v2."""
    for route in routes:
        if route.path.startswith(REPOSITORY_PREFIX) and not enable_model_repository:
            continue  # 404 like any unknown route
        endpoint = route.endpoint
        if v2 is not None:
            if route.path.endswith(":explain"):
                continue  # the predictor has no explainer: 404, not kserve's 501
            name = getattr(endpoint, "__name__", "")
            if isinstance(getattr(endpoint, "__self__", None), V2Endpoints) and name in _REPLACED_V2_HANDLERS:
                endpoint = getattr(v2, name)
        app.add_api_route(route.path, endpoint, methods=sorted(route.methods), response_model=route.response_model,
                          tags=route.tags, include_in_schema=route.include_in_schema, name=route.name)


def load_pending_models(registry) -> None:
    """Load models that arrived pickled in a spawned worker (``load_pending``), before serving.

    This runs in the worker after kserve started its liveness pong thread, so a slow load (TF
    import + SavedModel, often > 5 s on a busy machine) is not mistaken for a hung worker.
    """
    for model in registry.get_models().values():
        if getattr(model, "load_pending", False):
            logger.info("worker %d: loading model %s", os.getpid(), model.name)
            model.load()
            model.load_pending = False


class MlengineRESTServer(RESTServer):
    """kserve's REST server on ``host``; ``hardened`` adds the limits, routes and error answers above."""

    def __init__(self, *args: Any, host: str = DEFAULT_HOST, limits: ServerLimits | None = None,
                 hardened: bool = True, access_log: bool = False, enable_model_repository: bool = False,
                 **kwargs: Any):
        limits = limits or ServerLimits()
        if hardened:
            kwargs["grace_period"] = limits.shutdown_grace_s
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.config.access_log = access_log or not hardened
        self.limits = limits
        self.hardened = hardened
        self.enable_model_repository = enable_model_repository
        if hardened:  # uvicorn's own options; the protocol class reads its two limits from the config
            self.config.http = GuardedHttpToolsProtocol
            self.config.max_head_bytes = 2 * limits.max_header_bytes
            self.config.limit_concurrency = limits.max_connections
            self.config.read_timeout_s = limits.read_timeout_s

    def _add_middlewares(self, app) -> None:
        if not self.hardened:
            super()._add_middlewares(app)

    def _register_endpoints(self, app) -> None:
        v2 = VersionedV2Endpoints(self.dataplane, self.model_repository_extension,
                                  repository_enabled=self.enable_model_repository) if self.hardened else None
        _register_routes(app, _kserve_routes(self), v2, self.enable_model_repository)

    def create_application(self) -> None:
        load_pending_models(self.dataplane.model_registry)
        super().create_application()
        if not self.hardened:
            return
        # runs in every worker process: keep the logs to one line per rejected request
        warnings.filterwarnings("ignore", message=".*ORJSONResponse is deprecated.*")
        if not self.config.access_log:
            access_logger = logging.getLogger("uvicorn.access")
            access_logger.handlers = []
            access_logger.propagate = False
        self.harden(import_from_string(FASTAPI_APP_IMPORT_STRING))

    def build_app(self):
        """A fresh FastAPI app with this server's routes, handlers and middleware (kserve's order), for tests."""
        from fastapi import FastAPI

        app = FastAPI(default_response_class=ORJSONResponse)
        self._add_middlewares(app)
        self._register_endpoints(app)
        self._add_exception_handlers(app)
        if self.hardened:
            self.harden(app)
        return app

    def harden(self, app) -> None:
        """Our JSON error answers, the body limit and the request guard on ``app`` (after kserve set it up)."""
        app.add_exception_handler(InvalidRequest, _invalid_request_handler)
        app.add_exception_handler(InvalidInput, _invalid_input_handler)
        app.add_exception_handler(RequestValidationError, _request_validation_handler)
        app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
        app.add_exception_handler(ModelNotFound, _model_not_found_handler)
        app.add_exception_handler(InferenceError, _server_fault_handler)
        app.add_exception_handler(NotImplementedError, _server_fault_handler)
        app.add_middleware(RequestBodyLimitMiddleware, max_body_size=self.limits.max_body_bytes)
        if os.environ.get(FAST_PATH_ENV, "1") != "0":
            app.add_middleware(FastInferMiddleware, registry=self.dataplane.model_registry)
        app.add_middleware(RequestDecodingMiddleware, limits=self.limits)
        app.add_middleware(RequestGuardMiddleware, limits=self.limits)


class PatientRESTServerMultiProcess(RESTServerMultiProcess):
    """kserve's multi-worker REST server with a startup grace before the liveness pings.

    kserve pings every worker each 0.5 s and kills one that does not answer within 5 s, but a
    spawned worker only starts answering after it has imported kserve and unpickled the model
    registry; on a busy 2-core machine that alone can take longer, and the worker is then killed
    and respawned forever. Workers younger than ``startup_grace_s`` are only checked for being
    alive at all; after that kserve's ping applies as before.
    """

    startup_grace_s = 180.0

    async def keep_subprocess_alive(self, sockets) -> None:
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self._processes):
            if _age_s(process.pid) < self.startup_grace_s and process._process.is_alive():
                continue
            if not process.is_alive():
                process.kill()
                await process.wait_for_termination()
                if self.should_exit.is_set():
                    return
                logger.info("Child process [%s] died", process.pid)
                process = RESTServerProcess(sockets, self._rest_server.run)
                process.start()
                self._processes[index] = process
                logger.info("Started new child process [%s]", process.pid)


def _age_s(pid: int | None) -> float:
    import time

    import psutil

    try:
        return time.time() - psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, ValueError, TypeError):
        return float("inf")


class LocalModelServer(ModelServer):
    """``kserve.ModelServer`` that binds ``host`` (default 127.0.0.1), runs no gRPC server and,
    unless ``enable_model_repository``, no model repository extension (no unauthenticated unload)."""

    def __init__(self, *, host: str = DEFAULT_HOST, max_body_bytes: int | None = None,
                 limits: ServerLimits | None = None, hardened: bool = True, access_log: bool = False,
                 enable_model_repository: bool = False, **kwargs: Any):
        kwargs.setdefault("enable_grpc", False)
        kwargs.setdefault("enable_latency_logging", not hardened)
        super().__init__(**kwargs)
        self.model_repository_extension = GuardedModelRepositoryExtension(model_registry=self.registered_models)
        self.host = host
        limits = limits or ServerLimits()
        if max_body_bytes is not None:
            limits = ServerLimits(**{**limits.__dict__, "max_body_bytes": max_body_bytes})
        self.limits = limits
        self.hardened = hardened
        self.access_log = access_log
        self.enable_model_repository = enable_model_repository
        if hardened:
            self.grace_period = limits.shutdown_grace_s

    def _rest_server_for_workers(self) -> MlengineRESTServer:
        return MlengineRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            access_log_format=self.access_log_format, workers=self.workers, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            host=self.host, limits=self.limits, hardened=self.hardened, access_log=self.access_log,
            enable_model_repository=self.enable_model_repository,
        )

    def start(self, models: list) -> None:
        """Mirror of ``ModelServer.start`` (kserve 0.21) with our REST server class."""
        self._register_and_check_atleast_one_model_is_ready(models)
        rest_server = self._rest_server_for_workers()
        if self.workers > 1:
            multi = PatientRESTServerMultiProcess(
                FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
                workers=self.workers, grace_period=self.grace_period, event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            multi._rest_server = rest_server  # the server each spawned worker runs (kserve 0.21 attribute)
            self._rest_multiprocess_server = multi
            self.servers.append(multi.start())
        else:
            self._rest_server = rest_server
            self.servers.append(rest_server.start())
        self.register_signal_handler()
        # the event loop uvicorn picks for its worker processes (uvloop when installed, as kserve's
        # --event_loop auto intends), here too; kserve's asyncio.run() always takes the stock loop
        with asyncio.Runner(loop_factory=rest_server.config.get_loop_factory()) as runner:
            runner.run(self._serve_configured())

    async def _serve_configured(self) -> None:
        self.setup_event_loop()  # on the running loop (kserve sets its handler and executor on another one)
        await self._serve()


def serve(model_dir: str, *, name: str | None = None, port: int = 8080, host: str = DEFAULT_HOST,
          workers: int = 1, max_instances: int | None = None, max_body_bytes: int | None = None,
          max_batch_rows: int | None = None, batching: bool = True, tf_threads: int | None = None,
          access_log: bool = False, model_thread: bool = False, limits: ServerLimits | None = None,
          enable_model_repository: bool = False, model_class: type[RawFeaturePredictor] = RawFeaturePredictor) -> None:
    """Load ``model_dir`` (one-line MlengineError when it cannot be served) and serve it until stopped.

    Args:
        model_dir: the model directory (serving/ SavedModel + feature_spec.yaml).
        name: the model name in the URLs (default: from the feature spec).
        port: HTTP port.
        host: address to bind.
        workers: server processes, each loading the model.
        max_instances: most instances per request.
        max_body_bytes: largest request body (overrides ``limits.max_body_bytes``).
        max_batch_rows: most rows the micro-batcher merges into one model call.
        batching: micro-batch concurrent requests.
        tf_threads: TensorFlow threads per worker (default: TF's own choice; one TF thread per
            worker halved 2-worker throughput and doubled p50 on 2 cores, bench/README.md).
        access_log: log one line per request.
        model_thread: run the model on a thread of its own instead of the event loop thread, so
            that while a slow model call runs the loop still reads and validates requests and
            answers health checks and the request timeout's 503 (about 0.25 ms more per call).
            Without ``batching`` each request's call runs on a thread pool either way.
        limits: header/body/time/connection limits (:class:`ServerLimits`).
        enable_model_repository: register KServe's unauthenticated load/unload routes.
        model_class: the predictor class (tests pass a subclass).
    """
    from mlengine.components.deploy.validation import DEFAULT_MAX_INSTANCES

    if workers < 1:
        raise ValueError("workers must be at least 1")
    options: dict[str, Any] = {"batching": batching, "tf_threads": tf_threads, "model_thread": model_thread,
                               "max_instances": max_instances or DEFAULT_MAX_INSTANCES}
    if max_batch_rows:
        options["max_batch_rows"] = max_batch_rows
    model = model_class(name or "model", model_dir, **options)
    model.load()
    if name is None:
        model.name = default_model_name(model.spec.name)
    server = LocalModelServer(host=host, http_port=port, workers=workers, max_body_bytes=max_body_bytes,
                              limits=limits, access_log=access_log, enable_model_repository=enable_model_repository)
    if enable_model_repository:
        print("mlengine serve: WARNING: the model repository extension is on: anyone who can reach the server "
              "can unload the model (POST /v2/repository/models/<name>/unload)", file=sys.stderr, flush=True)
    print(f"mlengine serve: model {model.name!r} from {model_dir} on http://{host}:{port} "
          f"({workers} worker{'s' if workers > 1 else ''})", file=sys.stderr, flush=True)
    server.start([model])


def default_model_name(spec_name: str) -> str:
    """A URL-safe model name from the spec name ("nyc-taxi-fare")."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", spec_name.lower()).strip("-")
    return cleaned or "model"
