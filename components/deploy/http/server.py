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
import sys
import warnings
from typing import Any

from mlengine.components.deploy.http.errors import install_error_handlers
from mlengine.components.deploy.http.limits import DEFAULT_HOST, FAST_PATH_ENV, ServerLimits, default_model_name
from mlengine.components.deploy.http.middleware import (
    FastInferMiddleware,
    RequestDecodingMiddleware,
    RequestGuardMiddleware,
)
from mlengine.components.deploy.http.protocol import GuardedHttpToolsProtocol
from mlengine.components.deploy.http.routes import (
    DescribedV1Endpoints,
    GuardedModelRepositoryExtension,
    VersionedV2Endpoints,
    register_routes,
)
from mlengine.components.deploy.kserve_compat import (
    PatientRESTServerMultiProcess,
    attach_worker_server,
    kserve_argv,
    kserve_routes,
)
from mlengine.components.deploy.predictor import RawFeaturePredictor

with kserve_argv():
    from fastapi.responses import ORJSONResponse
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.logging import logger
    from kserve.model_server import ModelServer
    from kserve.protocol.rest.server import RESTServer
    from starlette.middleware.body_limit import RequestBodyLimitMiddleware
    from uvicorn.importer import import_from_string


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
            self.config.head_timeout_s = limits.head_timeout_s
            self.config.max_pending_heads = limits.max_pending_connections

    def _add_middlewares(self, app) -> None:
        if not self.hardened:
            super()._add_middlewares(app)

    def _register_endpoints(self, app) -> None:
        v2 = VersionedV2Endpoints(self.dataplane, self.model_repository_extension,
                                  repository_enabled=self.enable_model_repository) if self.hardened else None
        v1 = DescribedV1Endpoints(self.dataplane, self.model_repository_extension) if self.hardened else None
        register_routes(app, kserve_routes(self), v2, self.enable_model_repository, v1)

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
        install_error_handlers(app)
        app.add_middleware(RequestBodyLimitMiddleware, max_body_size=self.limits.max_body_bytes)
        if os.environ.get(FAST_PATH_ENV, "1") != "0":
            app.add_middleware(FastInferMiddleware, registry=self.dataplane.model_registry)
        app.add_middleware(RequestDecodingMiddleware, limits=self.limits)
        app.add_middleware(RequestGuardMiddleware, limits=self.limits)


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
            attach_worker_server(multi, rest_server)  # the server each spawned worker runs
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
