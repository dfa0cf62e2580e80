"""Run the real kserve ``ModelServer`` for one model directory on a chosen host (127.0.0.1 by default).

kserve 0.21's REST server always binds 0.0.0.0 and always starts a gRPC port; this subclass binds
the host we ask for, leaves gRPC off, and (``hardened=True``, our server) adds:

- a request body limit (413 before the body is read when Content-Length is too big, and while
  streaming otherwise);
- JSON 4xx answers ``{"error", "field", "index"}`` for every input problem, including FastAPI's
  own v2 body validation (422 -> 400 with the failing path), logged as one line, not a traceback;
- no per-request timing/trace log lines (KServe's TimingMiddleware logs several per request).

``hardened=False`` is the stock kserve behaviour (the benchmark's "straightforward" server).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import warnings
from typing import Any

from mlengine.components.deploy.predictor import InvalidRequest, RawFeaturePredictor
from mlengine.components.deploy.validation import DEFAULT_MAX_BODY_BYTES

_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve.model_server parses sys.argv when it is imported
try:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import ORJSONResponse
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.logging import logger
    from kserve.model_server import ModelServer
    from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
    from kserve.protocol.rest.server import RESTServer
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from uvicorn.importer import import_from_string
finally:
    sys.argv = _argv

DEFAULT_HOST = "127.0.0.1"


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413 instead of reading them whole."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _send_json(send, 400, {"error": "invalid Content-Length header",
                                                        "field": None, "index": None})
                if declared > self.max_bytes:
                    return await _send_json(send, 413, {
                        "error": f"request body of {declared} bytes is larger than the limit of {self.max_bytes}",
                        "field": None, "index": None})
                break
        received = 0
        limit = self.max_bytes

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return await self.app(scope, limited_receive, send)


async def _send_json(send, status: int, content: dict) -> None:
    import orjson

    body = orjson.dumps(content)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _invalid_request_handler(_request, exc: InvalidRequest):
    logger.info("rejected request: %s", exc.reason)
    return ORJSONResponse(status_code=400, content=exc.to_json())


async def _invalid_input_handler(_request, exc: InvalidInput):
    message = " ".join(str(exc).split())
    logger.info("rejected request: %s", message)
    return ORJSONResponse(status_code=400, content={"error": message, "field": None, "index": None})


async def _http_exception_handler(_request, exc: StarletteHTTPException):
    message = " ".join(str(exc.detail).split())
    return ORJSONResponse(status_code=exc.status_code, content={"error": message, "field": None, "index": None},
                          headers=getattr(exc, "headers", None))


async def _model_not_found_handler(_request, exc: ModelNotFound):
    return ORJSONResponse(status_code=404, content={"error": str(exc), "field": None, "index": None})


async def _body_too_large_handler(_request, exc: BodyTooLarge):
    return ORJSONResponse(status_code=413, content={"error": str(exc), "field": None, "index": None})


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
    """kserve's REST server on ``host``; ``hardened`` adds the limits and error answers above."""

    def __init__(self, *args: Any, host: str = DEFAULT_HOST, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 hardened: bool = True, access_log: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.config.access_log = access_log or not hardened
        self.max_body_bytes = max_body_bytes
        self.hardened = hardened

    def _add_middlewares(self, app) -> None:
        if not self.hardened:
            super()._add_middlewares(app)

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
        app = import_from_string(FASTAPI_APP_IMPORT_STRING)
        app.add_exception_handler(InvalidRequest, _invalid_request_handler)
        app.add_exception_handler(InvalidInput, _invalid_input_handler)
        app.add_exception_handler(BodyTooLarge, _body_too_large_handler)
        app.add_exception_handler(RequestValidationError, _request_validation_handler)
        app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
        app.add_exception_handler(ModelNotFound, _model_not_found_handler)
        app.add_middleware(BodyLimitMiddleware, max_bytes=self.max_body_bytes)


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
    """``kserve.ModelServer`` that binds ``host`` (default 127.0.0.1) and runs no gRPC server."""

    def __init__(self, *, host: str = DEFAULT_HOST, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 hardened: bool = True, access_log: bool = False, **kwargs: Any):
        kwargs.setdefault("enable_grpc", False)
        kwargs.setdefault("enable_latency_logging", not hardened)
        super().__init__(**kwargs)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.hardened = hardened
        self.access_log = access_log

    def _rest_server_for_workers(self) -> MlengineRESTServer:
        return MlengineRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            access_log_format=self.access_log_format, workers=self.workers, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            host=self.host, max_body_bytes=self.max_body_bytes, hardened=self.hardened, access_log=self.access_log,
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
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def serve(model_dir: str, *, name: str | None = None, port: int = 8080, host: str = DEFAULT_HOST,
          workers: int = 1, max_instances: int | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          max_batch_rows: int | None = None, batching: bool = True, tf_threads: int | None = None,
          access_log: bool = False, inline_model: bool = False) -> None:
    """Load ``model_dir`` (one-line MlengineError when it cannot be served) and serve it until stopped."""
    from mlengine.components.deploy.validation import DEFAULT_MAX_INSTANCES

    if workers < 1:
        raise ValueError("workers must be at least 1")
    if tf_threads is None and workers > 1:
        tf_threads = 1  # one worker per core: more TF threads per worker only contend
    options: dict[str, Any] = {"batching": batching, "tf_threads": tf_threads, "inline_model": inline_model,
                               "max_instances": max_instances or DEFAULT_MAX_INSTANCES}
    if max_batch_rows:
        options["max_batch_rows"] = max_batch_rows
    model = RawFeaturePredictor(name or "model", model_dir, **options)
    model.load()
    if name is None:
        model.name = default_model_name(model.spec.name)
    server = LocalModelServer(host=host, http_port=port, workers=workers, max_body_bytes=max_body_bytes,
                              access_log=access_log)
    print(f"mlengine serve: model {model.name!r} from {model_dir} on http://{host}:{port} "
          f"({workers} worker{'s' if workers > 1 else ''})", file=sys.stderr, flush=True)
    server.start([model])


def default_model_name(spec_name: str) -> str:
    """A URL-safe model name from the spec name ("nyc-taxi-fare")."""
    import re

    cleaned = re.sub(r"[^a-z0-9-]+", "-", spec_name.lower()).strip("-")
    return cleaned or "model"
