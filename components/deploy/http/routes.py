"""Routes: kserve's handlers where ``model_version`` names the one version served, and the route table."""

from __future__ import annotations

from typing import Any, Union

from mlengine.components.deploy.http.errors import ModelVersionNotFound
from mlengine.components.deploy.http.limits import (
    BINARY_HEADER,
    MODEL_VERSION,
    REPLACED_V2_HANDLERS,
    REPOSITORY_EXTENSION,
    REPOSITORY_PREFIX,
)
from mlengine.components.deploy.kserve_compat import kserve_argv

with kserve_argv():
    from fastapi.requests import Request
    from fastapi.responses import ORJSONResponse, Response
    from fastapi.routing import APIRoute
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.v1_endpoints import V1Endpoints
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
    from kserve.protocol.rest.v2_endpoints import V2Endpoints


def _described(dataplane, model_name: str) -> dict[str, Any]:
    """The served model's task and classes (``describe()``), empty for a regression model."""
    model = dataplane.model_registry.get_model(model_name)
    describe = getattr(model, "describe", None)
    return describe() if callable(describe) else {}


class DescribedV1Endpoints(V1Endpoints):
    """kserve's v1 handlers where ``GET /v1/models/<name>`` also names a classifier's task and classes."""

    async def model_ready(self, model_name: str):
        answer = await super().model_ready(model_name)
        described = _described(self.dataplane, model_name)
        # a Response: the route's response model (kserve's annotation) allows str and bool values only
        return ORJSONResponse({**answer, **described}) if described else answer


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
        described = _described(self.dataplane, model_name)
        if described:  # the v2 metadata has no field for it: "parameters", as in its inference answers
            return ORJSONResponse({**answer.model_dump(), "parameters": described})
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


def register_routes(app, routes: list[APIRoute], v2: VersionedV2Endpoints | None,
                     enable_model_repository: bool, v1: DescribedV1Endpoints | None = None) -> None:
    """Register kserve's routes without the repository extension (unless asked) or ``:explain``; version v2;
    ``v1`` answers ``GET /v1/models/<name>``."""
    for route in routes:
        if route.path.startswith(REPOSITORY_PREFIX) and not enable_model_repository:
            continue  # 404 like any unknown route
        endpoint = route.endpoint
        if v2 is not None:
            if route.path.endswith(":explain"):
                continue  # the predictor has no explainer: 404, not kserve's 501
            name = getattr(endpoint, "__name__", "")
            if isinstance(getattr(endpoint, "__self__", None), V2Endpoints) and name in REPLACED_V2_HANDLERS:
                endpoint = getattr(v2, name)
        if v1 is not None and isinstance(getattr(endpoint, "__self__", None), V1Endpoints) and \
                getattr(endpoint, "__name__", "") == "model_ready":
            endpoint = v1.model_ready
        app.add_api_route(route.path, endpoint, methods=sorted(route.methods), response_model=route.response_model,
                          tags=route.tags, include_in_schema=route.include_in_schema, name=route.name)
