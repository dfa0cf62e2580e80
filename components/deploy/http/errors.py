"""The JSON problem bodies ``{"error", "field", "index"}`` and the app's exception handlers."""

from __future__ import annotations

import uuid
from typing import Any

from mlengine.components.deploy.http.limits import MODEL_VERSION
from mlengine.components.deploy.kserve_compat import kserve_argv
from mlengine.components.deploy.predictor import InvalidRequest

with kserve_argv():
    import orjson
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import ORJSONResponse
    from kserve.errors import InferenceError, InvalidInput, ModelNotFound
    from kserve.logging import logger
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY


class ModelVersionNotFound(ModelNotFound):
    """A ``model_version`` other than the one served: 404 naming the parameter."""

    def __init__(self, model_name: str, version: str):
        super().__init__(model_name)
        self.reason = (f"model_version {version!r} of model {model_name!r} is not served; "
                       f"the only version is {MODEL_VERSION!r}")

    def __str__(self) -> str:
        return self.reason


async def server_fault(scope, send, started: bool, request_id: str, err: BaseException) -> None:
    logger.error("request %s: %s %s failed: %s: %s", request_id, scope["method"], scope["path"],
                 type(err).__name__, err, exc_info=err)
    if not started:
        await send_json(send, 500, fault_body(request_id))


def fault_body(request_id: str) -> dict[str, Any]:
    return {"error": f"internal server error (request id {request_id})", "request_id": request_id,
            "field": None, "index": None}


def problem(message: str) -> dict[str, Any]:
    """The JSON body of every 4xx answer: the message, and the field / instance it names (none here)."""
    return {"error": message, "field": None, "index": None}


async def send_problem(scope, send, status: int, message: str) -> None:
    """A 4xx answer from a middleware, logged as one line under the request id."""
    logger.info("rejected request %s: %s", scope.get("state", {}).get("request_id", "-"), message)
    await send_json(send, status, problem(message))


async def send_json(send, status: int, content: dict, headers: list | None = None) -> None:
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
    return ORJSONResponse(status_code=400, content=problem(message))


async def _http_exception_handler(request, exc: StarletteHTTPException):
    message = " ".join(str(exc.detail).split())
    if exc.status_code == 413 and request.scope.get(MAX_BODY_SIZE_SCOPE_KEY):
        message = f"request body larger than the limit of {request.scope[MAX_BODY_SIZE_SCOPE_KEY]} bytes"
    return ORJSONResponse(status_code=exc.status_code, content=problem(message),
                          headers=getattr(exc, "headers", None))


async def _model_not_found_handler(_request, exc: ModelNotFound):
    field = "model_version" if isinstance(exc, ModelVersionNotFound) else "model_name"
    return ORJSONResponse(status_code=404, content={"error": str(exc), "field": field, "index": None})


async def _server_fault_handler(request, exc: Exception):
    """kserve's InferenceError / NotImplementedError: a server fault, answered without its message."""
    request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
    logger.error("request %s: %s %s failed: %s: %s", request_id, request.method, request.url.path,
                 type(exc).__name__, exc, exc_info=exc)
    return ORJSONResponse(status_code=500, content=fault_body(request_id))


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



def install_error_handlers(app) -> None:
    """Our JSON answers for every input problem and server fault on ``app``."""
    app.add_exception_handler(InvalidRequest, _invalid_request_handler)
    app.add_exception_handler(InvalidInput, _invalid_input_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(ModelNotFound, _model_not_found_handler)
    app.add_exception_handler(InferenceError, _server_fault_handler)
    app.add_exception_handler(NotImplementedError, _server_fault_handler)
