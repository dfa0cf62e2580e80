"""``mlengine serve`` and ``mlengine predict``: the served model on one machine.

Nothing heavy is imported here: kserve and TensorFlow load inside the ``serve`` handler.
"""

from __future__ import annotations

import argparse
import json

from mlengine.components.shared.processes import check_ports_free
from mlengine.errors import MlengineError

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CLIENT_BATCH = 64


def add_cli(subparsers) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve a trained model directory with the KServe ModelServer (REST v1 and v2)",
        description="Serve MODEL (serving/ SavedModel + feature_spec.yaml) on http://HOST:PORT: "
                    "POST /v1/models/NAME:predict, POST /v2/models/NAME/infer, health and metadata endpoints.")
    serve.add_argument("--model", required=True, help="model directory written by the train component")
    serve.add_argument("--port", "--http_port", type=int, default=DEFAULT_PORT, help="HTTP port (default %(default)s)")
    # --model_name / --http_port: the spelling KServe's ServingRuntime passes
    serve.add_argument("--name", "--model_name", default=None,
                       help="model name in the URLs (default: from the feature spec)")
    serve.add_argument("--workers", type=int, default=1, help="server processes, each loading the model (default 1)")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    serve.add_argument("--max-instances", type=int, default=None, help="most instances per request (default 10000)")
    serve.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (default 8 MiB)")
    serve.add_argument("--max-batch-rows", type=int, default=None,
                       help="most rows the micro-batcher merges into one model call (default 2048)")
    serve.add_argument("--no-batching", action="store_true", help="one model call per request")
    serve.add_argument("--tf-threads", type=int, default=None,
                       help="TensorFlow threads per worker (default: TF's own choice)")
    serve.add_argument("--model-thread", action="store_true",
                       help="run the model on its own thread, not the event loop's: while a slow model call "
                            "runs, the server still reads and validates requests, answers health checks and "
                            "the request timeout's 503 in time")
    serve.add_argument("--access-log", action="store_true", help="log one line per request")
    serve.add_argument("--max-header-bytes", type=int, default=None,
                       help="largest request line + headers (default 16 KiB; larger: 431)")
    serve.add_argument("--read-timeout", type=float, default=None,
                       help="seconds for a whole request to arrive from its first byte (default 30; slower: 408)")
    serve.add_argument("--request-timeout", type=float, default=None,
                       help="seconds from the request head to the response (default 60; longer: 503)")
    serve.add_argument("--max-connections", type=int, default=None,
                       help="connections per worker with a complete request head before new requests get 503 "
                            "(default 256; connections still reading their head do not count)")
    serve.add_argument("--head-timeout", type=float, default=None,
                       help="seconds for the request line and headers to arrive (default 5; slower: 408, closed)")
    serve.add_argument("--max-pending-connections", type=int, default=None,
                       help="connections per worker still reading their request head (default 2048; "
                            "past it the oldest is closed)")
    serve.add_argument("--enable-model-repository", action="store_true",
                       help="DANGEROUS on a reachable port: register KServe's model repository extension "
                            "(POST /v2/repository/models/NAME/load|unload) with no authentication; "
                            "anyone who can reach the server can then unload the model")
    serve.add_argument("--serving-log", default=None,
                       help="folder or s3://bucket/prefix/ where validated serving inputs are kept for "
                            "`mlengine monitor` (bounded, rotating JSONL files or objects; same as "
                            "MLENGINE_SERVING_LOG_DIR; s3 endpoint and credentials from the environment)")
    serve.set_defaults(handler=_serve)

    predict = subparsers.add_parser(
        "predict", help="send rows (JSON Lines of raw features) to a served model, print predictions",
        description="Print one JSON object per input row: {\"prediction\": value}; for a classification model "
                    "{\"prediction\": class, \"probabilities\": [one per class, in the label vocabulary's order]}.")
    predict.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    predict.add_argument("--file", required=True, help="JSON Lines file, one object of raw features per line")
    predict.add_argument("--protocol", choices=("v1", "v2"), default="v1", help="inference protocol (default v1)")
    predict.add_argument("--batch", type=int, default=DEFAULT_CLIENT_BATCH,
                         help="rows per request (default %(default)s)")
    predict.add_argument("--name", default=None, help="model name (default: the only model the server serves)")
    predict.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default %(default)s)")
    predict.set_defaults(handler=_predict)


def _serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise MlengineError(f"--port {args.port}: expected 1-65535")
    if args.workers < 1:
        raise MlengineError(f"--workers {args.workers}: expected at least 1")
    for option in ("max_instances", "max_body_bytes", "max_batch_rows", "tf_threads", "max_header_bytes",
                   "read_timeout", "request_timeout", "max_connections"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise MlengineError(f"--{option.replace('_', '-')} {value}: expected a positive number")
    # a busy port is one line naming it, before TensorFlow and kserve load (uvicorn would say it later)
    check_ports_free([args.port], args.host)
    if args.serving_log:
        import os

        from mlengine.components.shared.serving_log import ENV_SERVING_LOG_DIR

        os.environ[ENV_SERVING_LOG_DIR] = args.serving_log  # read in load(), also by spawned workers
    from mlengine.components.deploy.kserve_compat import hide_argv_from_kserve

    hide_argv_from_kserve()  # for good: spawned workers import kserve with this process's sys.argv
    from mlengine.components.deploy.http.server import ServerLimits, serve

    given = {"max_body_bytes": args.max_body_bytes, "max_header_bytes": args.max_header_bytes,
             "read_timeout_s": args.read_timeout, "request_timeout_s": args.request_timeout,
             "max_connections": args.max_connections, "head_timeout_s": args.head_timeout,
             "max_pending_connections": args.max_pending_connections}
    limits = ServerLimits(**{key: value for key, value in given.items() if value is not None})
    serve(args.model, name=args.name, port=args.port, host=args.host, workers=args.workers,
          max_instances=args.max_instances, max_batch_rows=args.max_batch_rows, batching=not args.no_batching,
          tf_threads=args.tf_threads, access_log=args.access_log, model_thread=args.model_thread, limits=limits,
          enable_model_repository=args.enable_model_repository)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mlengine.components.deploy.client import PredictionClient, ServerError, read_rows

    if args.batch < 1:
        raise MlengineError(f"--batch {args.batch}: expected at least 1")
    with PredictionClient(args.url, name=args.name, protocol=args.protocol, timeout=args.timeout) as client:
        expected = {meta["name"] for meta in client.input_types()} if args.protocol == "v2" else None
        batch: list[tuple[int, dict]] = []

        def flush() -> None:
            try:
                predictions = client.predict_rows([row for _, row in batch])
            except ServerError as err:
                if err.index is not None and 0 <= err.index < len(batch):
                    raise MlengineError(f"{args.file}:{batch[err.index][0]}: {err}") from None
                raise
            for prediction in predictions:
                print(json.dumps(prediction))
            batch.clear()

        for line_number, row in read_rows(args.file):
            if expected is not None and set(row) != expected:
                missing, extra = sorted(expected - set(row)), sorted(set(row) - expected)
                problem = f"missing feature {missing[0]!r}" if missing else f"unknown feature {extra[0]!r}"
                raise MlengineError(f"{args.file}:{line_number}: {problem}")
            batch.append((line_number, row))
            if len(batch) >= args.batch:
                flush()
        if batch:
            flush()
    return 0
