"""The ASGI middlewares: request ids and limits, request decoding, the fast inference path."""

from __future__ import annotations

import asyncio
import uuid
import zlib

from mlengine.components.deploy.http.errors import problem, send_json, send_problem, server_fault
from mlengine.components.deploy.http.limits import (
    BINARY_HEADER,
    CLIENT_REQUEST_ID,
    MODEL_VERSION,
    REQUEST_ID_HEADER,
    V1_PREDICT_NAME,
    V2_INFER_NAME,
    ServerLimits,
)
from mlengine.components.deploy.kserve_compat import kserve_argv
from mlengine.components.deploy.predictor import RawFeaturePredictor

with kserve_argv():
    from kserve.logging import logger
    from starlette.requests import ClientDisconnect


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
            return await send_json(send, status, problem(message),
                                    [(REQUEST_ID_HEADER, request_id.encode()), (b"connection", b"close")])
        if (scope["method"] == "POST" and V2_INFER_NAME.match(scope["path"])
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
                return await server_fault(scope, send_with_id, started, request_id, err)
            logger.warning("request %s: %s %s: no response within %g s", request_id, scope["method"], scope["path"],
                           self.request_timeout_s)
            if not started:
                await send_json(send_with_id, 503, {
                    "error": f"the request took longer than {self.request_timeout_s:g} s", "request_id": request_id,
                    "field": None, "index": None})
        except Exception as err:
            await server_fault(scope, send_with_id, started, request_id, err)


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
            return await send_problem(scope, send, 415, f"Content-Encoding {unknown[0]!r} is not supported "
                                                         f"(the server reads {readable})")
        try:
            body = await read_body(receive, limit=self.max_body_bytes)
            for token in reversed(encodings):  # listed in the order they were applied
                body = _inflate(body, token, self.max_body_bytes)
        except BodyTooLarge:
            limit = self.max_body_bytes
            return await send_problem(scope, send, 413, f"request body larger than the limit of {limit} bytes "
                                                         f"once decoded ({', '.join(encodings)})")
        except zlib.error as err:
            return await send_problem(scope, send, 400, f"the body is not valid {token} data ({err})")
        headers = [(key, value) for key, value in scope["headers"]
                   if key not in (b"content-encoding", b"content-length", b"transfer-encoding")]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        return await self.app(scope, replay_body(body, receive), send)


REQUEST_ENCODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
INFLATE_STEP_BYTES = 1 << 20  # output produced per decompress call, so an oversized body stops early


class BodyTooLarge(Exception):
    pass


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decoded from ``encoding`` (HTTP's deflate is the zlib format; raw deflate is read too).

    Raises BodyTooLarge past ``limit`` decoded bytes, zlib.error on corrupt or truncated data."""
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
            raise BodyTooLarge
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
        v1 = V1_PREDICT_NAME.match(path)
        v2 = None if v1 else V2_INFER_NAME.match(path)
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
        body = await read_body(receive)
        answer = await (model.fast_v1(body) if v1 is not None else model.fast_v2(body, json_length))
        if answer is None:
            return await self.app(scope, replay_body(body, receive), send)
        headers = [(b"content-type", b"application/json")]
        if v2 is not None:
            answer, size = answer
            if size is not None:
                headers = [(BINARY_HEADER, str(size).encode())]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


async def read_body(receive, limit: int | None = None) -> bytes:
    """The whole request body (BodyTooLarge past ``limit`` bytes: one sent without Content-Length)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_body(body: bytes, receive):
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
        if key == REQUEST_ID_HEADER and CLIENT_REQUEST_ID.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex
