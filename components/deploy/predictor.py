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

A classification model answers its class and the class probabilities instead (``outputs.py``):
v1 ``{"predictions": [{"label": ..., "probabilities": [...]}, ...]}``, v2 the outputs ``label``
(BYTES or INT64, [N]) and ``probabilities`` (FP32, [N, C]); the classes are in the metadata.

This module imports kserve (only the serving code path imports it); TensorFlow loads in ``load()``.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import numpy as np
import orjson

from mlengine.components.deploy.batching import MicroBatcher
from mlengine.components.deploy.kserve_compat import kserve_argv
from mlengine.components.deploy.outputs import ServedTask, log_outputs
from mlengine.components.deploy.validation import DEFAULT_MAX_INSTANCES, RequestError, RequestValidator
from mlengine.components.shared.savedmodel import OUTPUT_KEY, load_model_dir
from mlengine.components.shared.serving_log import serving_log_from_env

with kserve_argv():
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, RequestedOutput

DEFAULT_MAX_BATCH_ROWS = 2048
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# v2 binary tensor datatypes decoded straight from the body (little-endian, as Triton sends them)
_BINARY_DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT32": np.dtype("<i4"),
                  "INT64": np.dtype("<i8")}
_V2_KEYS = frozenset({"id", "inputs", "parameters", "outputs"})
_V2_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})


class _Input:
    """One v2 input as the validator reads it (name, datatype, shape, data)."""

    __slots__ = ("data", "datatype", "name", "shape")

    def __init__(self, name: str, datatype: str, shape: list, data: Any):
        self.name, self.datatype, self.shape, self.data = name, datatype, shape, data


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
                 tf_threads: int | None = None, model_thread: bool = False):
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.max_instances = max_instances
        self.max_batch_rows = max(max_batch_rows, 1)
        self.batching = batching
        self.max_wait_s = max_wait_s
        self.tf_threads = tf_threads
        # KServe runs a synchronous predict on the event loop too: no thread hand-off per call
        # (about 0.25 ms on 2 cores); a model thread keeps the loop answering while a slow call runs
        self.model_thread = model_thread
        self._runner = None
        self._validator: RequestValidator | None = None
        self._batcher: MicroBatcher | None = None
        self._batcher_loop = None
        self._serving_log = None
        self._task: ServedTask | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def load(self) -> bool:
        self._runner = load_model_dir(self.model_dir, tf_threads=self.tf_threads)
        self._validator = RequestValidator(self._runner.spec, self.max_instances)
        self._task = ServedTask(self._runner.spec)
        # serving inputs kept for the skew monitor when MLENGINE_SERVING_LOG_DIR is set (bounded, never raises)
        self._serving_log = serving_log_from_env()
        self.load_pending = False
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_runner=None, _validator=None, _batcher=None, _batcher_loop=None, _serving_log=None, _task=None,
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
        if self._task is None:
            return [{"name": OUTPUT_KEY, "datatype": "FP32", "shape": [-1]}]
        return self._task.output_types()

    def describe(self) -> dict[str, Any]:
        """The task and the classes in order for the metadata answers (empty for a regression model)."""
        return {} if self._task is None else self._task.describe()

    @property
    def classification(self) -> bool:
        return self._task is not None and self._task.classification

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
        # a classifier's inputs are logged with the predicted class, once it is known (_log_outputs)
        if self._serving_log is not None and not self.classification:
            self._serving_log.log_columns(columns, rows)

    def _log_outputs(self, columns: dict[str, np.ndarray], rows: int, result) -> None:
        if self._serving_log is not None and self.classification:
            self._serving_log.log_columns(columns, rows, predictions=log_outputs(result))

    def validate(self, payload: Any) -> Any:
        return payload if isinstance(payload, _Batch) else super().validate(payload)

    async def predict(self, payload: _Batch, headers: dict[str, str] | None = None) -> dict | InferResponse:
        predictions = await self.predict_batch(payload.columns, payload.rows)
        if self.classification:
            return self._classifier_answer(payload, predictions)
        request = payload.request
        if request is None:
            return {"outputs" if payload.columnar else "predictions": predictions.tolist()}
        output = InferOutput(name=OUTPUT_KEY, shape=[payload.rows], datatype="FP32", data=predictions)
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=[output], use_binary_outputs=request.use_binary_outputs,
                             requested_outputs=request.request_outputs)

    def _classifier_answer(self, payload: _Batch, result: dict[str, np.ndarray]) -> dict | InferResponse:
        self._log_outputs(payload.columns, payload.rows, result)
        request = payload.request
        if request is None:
            return self._task.v1_answer(result, payload.columnar)
        outputs = [InferOutput(name=name, shape=shape, datatype=datatype, data=array)
                   for name, shape, datatype, array in self._task.v2_tensors(result)]
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=outputs, use_binary_outputs=request.use_binary_outputs,
                             requested_outputs=request.request_outputs)

    async def predict_batch(self, columns: dict[str, np.ndarray], rows: int) -> np.ndarray | dict[str, np.ndarray]:
        """The model's result for validated columns (a classifier's: every output by name), through
        the micro-batcher, or one call per request."""
        loop = asyncio.get_running_loop()
        call = self._task.model_call(self._runner)
        if not self.batching:
            return await loop.run_in_executor(None, call, columns)
        if self._batcher is None or self._batcher_loop is not loop:
            self._batcher = MicroBatcher(call, self.max_batch_rows, self.max_wait_s,
                                         inline=not self.model_thread)
            self._batcher_loop = loop
        if rows > self.max_batch_rows:  # a big request alone is already a batch
            return await self._batcher.run_alone(columns)
        return await self._batcher.submit(columns, rows)

    # --- the bulk path (server.FastInferMiddleware): bytes in, bytes out, no kserve objects per row ---------
    async def fast_v1(self, body: bytes) -> bytes | None:
        """The v1 answer for a body that decodes and validates, else None (kserve's handler then answers)."""
        typed = self._validator.v1_from_json(body)
        if typed is not None:
            columns, rows, columnar = typed
        else:  # what the typed decoder refuses or would have to convert: the full checks decide
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                return None
            if type(payload) is not dict:
                return None
            try:
                columns, rows = self._validator.v1_columns(payload)
            except RequestError:
                return None
            columnar = "inputs" in payload
        self._log_inputs(columns, rows)
        predictions = await self.predict_batch(columns, rows)
        if self.classification:
            self._log_outputs(columns, rows, predictions)
            return self._task.v1_bytes(predictions, columnar)
        key = "outputs" if columnar else "predictions"
        return orjson.dumps({key: predictions.astype(np.float64)}, option=_NUMPY)  # the floats tolist() gives

    async def fast_v2(self, body: bytes, json_length: int | None) -> tuple[bytes, int | None] | None:
        """The v2 answer (body, binary JSON length) for a plain request that validates, else None.

        Plain: JSON data, or numeric binary tensors (``binary_data_size``), the keys of the protocol
        only. Anything else -- and every invalid request -- goes through kserve's own handler.
        """
        try:
            header = orjson.loads(body if json_length is None else memoryview(body)[:json_length])
        except orjson.JSONDecodeError:
            return None
        parsed = _plain_v2(header, body, json_length)
        if parsed is None:
            return None
        inputs, binary = parsed
        try:
            checked = self._validator.v2_arrays(inputs) if binary else self._validator.v2_columns(
                [_Input(*item) for item in inputs])
        except RequestError:
            return None
        if checked is None:
            return None
        columns, rows = checked
        try:
            outputs = header.get("outputs")
            requested = None if outputs is None else [
                RequestedOutput(name=output["name"], parameters=output.get("parameters")) for output in outputs]
            request = InferRequest(model_name=self.name, request_id=header.get("id"),
                                   parameters=header.get("parameters"), infer_inputs=[],
                                   request_outputs=requested)
            wanted = request.request_outputs or []
            if self.classification:
                binary_output = self._fast_binary_choice(request, wanted)
                if binary_output is None:
                    return None
            elif len(wanted) > 1 or any(output.name != OUTPUT_KEY for output in wanted):
                return None  # kserve's handler answers (or refuses) other output lists
            else:
                binary_output = wanted[0].binary_data if wanted else request.use_binary_outputs
        except Exception:  # anything kserve's request objects refuse: its own handler answers
            return None
        if self.classification:
            return await self._fast_v2_classifier(request, columns, rows, bool(binary_output))
        self._log_inputs(columns, rows)
        predictions = await self.predict_batch(columns, rows)
        # JSON data is written by orjson from the array below, not as one Python float per row by kserve
        output = InferOutput(name=OUTPUT_KEY, shape=[rows], datatype="FP32",
                             data=predictions if binary_output else [])
        response = InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                                 infer_outputs=[output], use_binary_outputs=request.use_binary_outputs,
                                 requested_outputs=request.request_outputs)
        answer, json_size = response.to_rest()
        if isinstance(answer, bytes):
            return answer, json_size
        for item in answer.get("outputs", ()):  # pydantic's InferenceResponse fills these in kserve's handler
            item.setdefault("parameters", None)
            item["data"] = predictions.astype(np.float64)  # the floats kserve's tolist() gives
        answer = {"model_name": answer.get("model_name"), "model_version": answer.get("model_version"),
                  "id": answer.get("id"), "parameters": answer.get("parameters"), "outputs": answer.get("outputs")}
        return orjson.dumps(answer, option=_NUMPY), None

    def _fast_binary_choice(self, request: InferRequest, wanted: list) -> bool | None:
        """Whether every answered output is binary, for the outputs the bulk path answers; None
        (kserve's handler answers or refuses) for unknown or repeated names and a binary/JSON mix."""
        names = [output.name for output in wanted]
        if len(set(names)) != len(names) or any(name not in self._task.output_names for name in names):
            return None
        choices = {bool(output.binary_data) for output in wanted} if wanted else {bool(request.use_binary_outputs)}
        return choices.pop() if len(choices) == 1 else None

    async def _fast_v2_classifier(self, request: InferRequest, columns: dict[str, np.ndarray], rows: int,
                                  binary_output: bool) -> tuple[bytes, int | None]:
        """A classifier's v2 answer on the bulk path: what kserve's handler writes, JSON data by orjson."""
        result = await self.predict_batch(columns, rows)
        self._log_outputs(columns, rows, result)
        tensors = self._task.v2_tensors(result)
        outputs = [InferOutput(name=name, shape=shape, datatype=datatype, data=array if binary_output else [])
                   for name, shape, datatype, array in tensors]
        response = InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                                 infer_outputs=outputs, use_binary_outputs=request.use_binary_outputs,
                                 requested_outputs=request.request_outputs)
        answer, json_size = response.to_rest()
        if isinstance(answer, bytes):
            return answer, json_size
        arrays = {name: array for name, _, _, array in tensors}
        for item in answer.get("outputs", ()):  # pydantic's InferenceResponse fills these in kserve's handler
            item.setdefault("parameters", None)
            item["data"] = self._task.v2_json_data(item["name"], arrays[item["name"]])
        answer = {"model_name": answer.get("model_name"), "model_version": answer.get("model_version"),
                  "id": answer.get("id"), "parameters": answer.get("parameters"), "outputs": answer.get("outputs")}
        return orjson.dumps(answer, option=_NUMPY), None

    def predict_columns(self, columns: dict[str, Any]) -> np.ndarray:
        """In-process prediction (no HTTP, no batching) for already-valid columns."""
        typed = {c.name: np.asarray(columns[c.name], dtype=c.dtypes.numpy) for c in self._runner.spec.columns}
        return self._runner(typed)


def _plain_v2(header: Any, body: bytes, json_length: int | None) -> tuple[list[tuple], bool] | None:
    """``([(name, datatype, shape, data or array)], binary)`` for a v2 request of the plain kind, else None."""
    if type(header) is not dict or not header.keys() <= _V2_KEYS or type(header.get("inputs")) is not list:
        return None
    if header.get("id") is not None and type(header["id"]) is not str:
        return None
    if type(header.get("parameters")) not in (dict, type(None)):
        return None
    outputs = header.get("outputs")
    if outputs is not None and not (type(outputs) is list and all(
            type(o) is dict and type(o.get("name")) is str and o.keys() <= {"name", "parameters"}
            and type(o.get("parameters")) in (dict, type(None)) for o in outputs)):
        return None
    items = []
    offset = json_length or 0
    binary = False
    for item in header["inputs"]:
        if type(item) is not dict or not item.keys() <= _V2_INPUT_KEYS:
            return None
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if type(name) is not str or type(datatype) is not str or type(shape) is not list or not all(
                type(d) is int for d in shape):
            return None
        parameters = item.get("parameters")
        if "data" in item:
            if json_length is not None or parameters is not None or type(item["data"]) is not list:
                return None
            items.append((name, datatype, shape, item["data"]))
            continue
        dtype = _BINARY_DTYPES.get(datatype)
        size = parameters.get("binary_data_size") if type(parameters) is dict and len(parameters) == 1 else None
        if json_length is None or dtype is None or type(size) is not int or size < 0 or size % dtype.itemsize:
            return None
        if offset + size > len(body) or not shape or size // dtype.itemsize != math.prod(shape):
            return None
        items.append((name, datatype, shape, np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize,
                                                           offset=offset).reshape(-1)))
        offset += size
        binary = True
    if binary and len(items) != sum(type(i[3]) is np.ndarray for i in items):
        return None  # JSON and binary inputs mixed: kserve's handler
    return items, binary
