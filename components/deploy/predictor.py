"""The KServe predictor: a ``kserve.Model`` serving the exported SavedModel over raw features.

Preprocessing lives inside the SavedModel, so the predictor only validates the request against
the feature spec (``validation.py``: 400 with field and instance index, never a 5xx) and feeds
numpy columns to the ``serving_default`` signature. Concurrent requests are micro-batched
(``batching.py``) into one model call.

Protocols (KServe's ModelServer routes both to this class):

- v1: ``POST /v1/models/<name>:predict`` ``{"instances": [{raw features}, ...]}`` ->
  ``{"predictions": [float, ...]}``; or TF Serving's columnar ``{"inputs": {"<column>": [...]}}``
  -> ``{"outputs": [float, ...]}``
- v2: ``POST /v2/models/<name>/infer`` with one input per raw column (``name`` = column,
  ``shape`` [N], ``datatype`` FP32/FP64 | INT64/INT32 | BYTES, flat ``data``) -> one output
  ``predictions`` (FP32, shape [N]).

This module imports kserve (only the serving code path imports it); TensorFlow loads in ``load()``.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import numpy as np
import orjson

from mlengine.components.deploy.batching import MicroBatcher
from mlengine.components.deploy.validation import DEFAULT_MAX_INSTANCES, RequestError, RequestValidator
from mlengine.components.shared.savedmodel import OUTPUT_KEY, load_model_dir
from mlengine.components.shared.serving_log import serving_log_from_env

_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve.model_server parses sys.argv when it is imported
try:
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
finally:
    sys.argv = _argv

DEFAULT_MAX_BATCH_ROWS = 2048


class InvalidRequest(InvalidInput):
    """kserve's 400 error carrying our field / index (the server renders them as JSON)."""

    def __init__(self, error: RequestError):
        super().__init__(error.message)
        self.field = error.field
        self.index = error.index

    def to_json(self) -> dict[str, Any]:
        return {"error": self.reason, "field": self.field, "index": self.index}


class _Batch:
    """A validated request on its way from preprocess to predict."""

    __slots__ = ("columnar", "columns", "request", "rows")

    def __init__(self, columns: dict[str, np.ndarray], rows: int, request: InferRequest | None,
                 columnar: bool = False):
        self.columns = columns
        self.rows = rows
        self.request = request  # None for v1
        self.columnar = columnar  # v1 "inputs" layout: answer {"outputs": [...]} like TF Serving


class RawFeaturePredictor(kserve.Model):
    """Serve ``model_dir`` (serving/ SavedModel + feature_spec.yaml) under ``name``.

    ``load()`` loads the SavedModel and checks its signature; with ``--workers N`` kserve pickles
    this object into each worker process without the loaded SavedModel (it cannot be pickled) and
    marks it ``load_pending``; the worker's REST server loads it before it accepts requests.
    """

    def __init__(self, name: str, model_dir: str, *, max_instances: int = DEFAULT_MAX_INSTANCES,
                 max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, batching: bool = True, max_wait_s: float = 0.0,
                 tf_threads: int | None = None, inline_model: bool = False):
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.max_instances = max_instances
        self.max_batch_rows = max(max_batch_rows, 1)
        self.batching = batching
        self.max_wait_s = max_wait_s
        self.tf_threads = tf_threads
        self.inline_model = inline_model
        self._runner = None
        self._validator: RequestValidator | None = None
        self._batcher: MicroBatcher | None = None
        self._batcher_loop = None
        self._serving_log = None

    # --- lifecycle ------------------------------------------------------------------------------
    def load(self) -> bool:
        self._runner = load_model_dir(self.model_dir, tf_threads=self.tf_threads)
        self._validator = RequestValidator(self._runner.spec, self.max_instances)
        # serving inputs kept for the skew monitor when MLENGINE_SERVING_LOG_DIR is set (bounded, never raises)
        self._serving_log = serving_log_from_env()
        self.load_pending = False
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_runner=None, _validator=None, _batcher=None, _batcher_loop=None, _serving_log=None,
                     ready=False, load_pending=self.ready or self.__dict__.get("load_pending", False))
        return state

    def __setstate__(self, state: dict) -> None:
        # Unpickled in a spawned worker: loading here would block kserve's liveness pong (5 s) and
        # get the worker killed and restarted forever; the REST server loads it (load_pending_models).
        self.__dict__.update(state)

    def stop(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._serving_log is not None:
            self._serving_log.close()
            self._serving_log = None
        super().stop()

    @property
    def spec(self):
        return self._runner.spec

    # --- metadata (GET /v2/models/<name>) ---------------------------------------------------------
    def get_input_types(self) -> list[dict]:
        if self._runner is None:
            return []
        return [{"name": c.name, "datatype": c.dtypes.v2[0], "shape": [-1]} for c in self._runner.spec.columns]

    def get_output_types(self) -> list[dict]:
        return [{"name": OUTPUT_KEY, "datatype": "FP32", "shape": [-1]}]

    # --- the request path -------------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> _Batch:
        try:
            if isinstance(payload, InferRequest):
                columns, rows = self._validator.v2_columns(payload.inputs)
                self._log_inputs(columns, rows)
                return _Batch(columns, rows, payload)
            if isinstance(payload, bytes | bytearray | str):  # a body sent without a JSON content type
                try:
                    payload = orjson.loads(payload)
                except orjson.JSONDecodeError as err:
                    raise RequestError(f"the body is not valid JSON: {err}") from None
            columns, rows = self._validator.v1_columns(payload)
            self._log_inputs(columns, rows)
            return _Batch(columns, rows, None, columnar="inputs" in payload)
        except RequestError as err:
            raise InvalidRequest(err) from None

    def _log_inputs(self, columns: dict[str, np.ndarray], rows: int) -> None:
        if self._serving_log is not None:
            self._serving_log.log_columns(columns, rows)

    def validate(self, payload: Any) -> Any:
        return payload if isinstance(payload, _Batch) else super().validate(payload)

    async def predict(self, payload: _Batch, headers: dict[str, str] | None = None) -> dict | InferResponse:
        predictions = await self.predict_batch(payload.columns, payload.rows)
        request = payload.request
        if request is None:
            return {"outputs" if payload.columnar else "predictions": predictions.tolist()}
        output = InferOutput(name=OUTPUT_KEY, shape=[payload.rows], datatype="FP32", data=predictions)
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=[output], use_binary_outputs=request.use_binary_outputs,
                             requested_outputs=request.request_outputs)

    async def predict_batch(self, columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        """Predictions for validated columns: through the micro-batcher, or one call per request."""
        loop = asyncio.get_running_loop()
        if not self.batching:
            return await loop.run_in_executor(None, self._runner, columns)
        if self._batcher is None or self._batcher_loop is not loop:
            self._batcher = MicroBatcher(self._runner, self.max_batch_rows, self.max_wait_s,
                                         inline=self.inline_model)
            self._batcher_loop = loop
        if rows > self.max_batch_rows:  # a big request alone is already a batch
            return await self._batcher.run_alone(columns)
        return await self._batcher.submit(columns, rows)

    def predict_columns(self, columns: dict[str, Any]) -> np.ndarray:
        """In-process prediction (no HTTP, no batching) for already-valid columns."""
        typed = {c.name: np.asarray(columns[c.name], dtype=c.dtypes.numpy) for c in self._runner.spec.columns}
        return self._runner(typed)
