"""What the served model answers, by task: the output tensors, their metadata and the v1 bodies.

A regression model answers one output, ``predictions`` (FP32 [N]); its answers are built in
``predictor.py`` as they always were. A classification model answers two (the SavedModel
contract, mlengine/constants.py):

- ``label``: the predicted class in the vocabulary's type, BYTES for a string vocabulary, INT64
  for an int one, shape [N];
- ``probabilities``: FP32 [N, C], one column per class in the vocabulary's order.

v1 answers ``{"predictions": [{"label": ..., "probabilities": [...]}, ...]}`` (one object per
instance), and for TF Serving's columnar ``{"inputs": ...}`` layout ``{"outputs": {"label": [...],
"probabilities": [[...], ...]}}`` (TF Serving's answer for a model with several outputs). The class
names, in order, are in ``describe()``: the v2 model metadata's ``parameters`` and ``GET
/v1/models/<name>``.

Pure numpy here (no kserve import): the predictor wraps these tuples in kserve's objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from mlengine.constants import OUTPUT_CLASS, OUTPUT_PREDICTIONS, OUTPUT_PROBABILITIES

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class ServedTask:
    """The task of the served spec: which outputs it answers and how they are written."""

    def __init__(self, spec):
        self.task = spec.task
        self.classification = bool(spec.is_classification)
        self.classes = list(spec.classes)
        self.label_datatype = "BYTES" if self.classification and spec.label.type == "string" else "INT64"
        # the v2 order of the outputs (and the names a request may ask for)
        self.output_names = (OUTPUT_CLASS, OUTPUT_PROBABILITIES) if self.classification else (OUTPUT_PREDICTIONS,)

    def model_call(self, runner):
        """What the micro-batcher calls: the main output (regression) or every output by name."""
        return runner.outputs if self.classification else runner

    def output_types(self) -> list[dict]:
        """The v2 metadata outputs (name, datatype, shape)."""
        if not self.classification:
            return [{"name": OUTPUT_PREDICTIONS, "datatype": "FP32", "shape": [-1]}]
        return [{"name": OUTPUT_CLASS, "datatype": self.label_datatype, "shape": [-1]},
                {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, len(self.classes)]}]

    def describe(self) -> dict[str, Any]:
        """What a client needs to read the outputs: the task and the classes in order (empty for regression)."""
        if not self.classification:
            return {}
        return {"task": self.task, "classes": list(self.classes), "outputs": list(self.output_names)}

    # --- v2 --------------------------------------------------------------------------------------
    def v2_tensors(self, result: dict[str, np.ndarray]) -> list[tuple[str, list[int], str, np.ndarray]]:
        """``(name, shape, datatype, array)`` per output of a classifier's result, in the v2 order."""
        labels = label_array(result[OUTPUT_CLASS], self.label_datatype)
        probabilities = np.asarray(result[OUTPUT_PROBABILITIES], dtype=np.float32)
        rows = len(labels)
        return [(OUTPUT_CLASS, [rows], self.label_datatype, labels),
                (OUTPUT_PROBABILITIES, [rows, probabilities.shape[1] if probabilities.ndim == 2 else 0], "FP32",
                 probabilities)]

    @staticmethod
    def v2_json_data(name: str, array: np.ndarray) -> Any:
        """The flat JSON ``data`` of one output, written by orjson as kserve's ``tolist()`` would give it."""
        if name == OUTPUT_PROBABILITIES:
            return array.astype(np.float64).reshape(-1)
        return array.tolist()

    # --- v1 --------------------------------------------------------------------------------------
    def v1_answer(self, result: dict[str, np.ndarray], columnar: bool) -> dict[str, Any]:
        """The v1 body of a classifier as Python objects (kserve's handler serialises it)."""
        labels = label_array(result[OUTPUT_CLASS], self.label_datatype).tolist()
        probabilities = np.asarray(result[OUTPUT_PROBABILITIES], np.float32).astype(np.float64).tolist()
        if columnar:
            return {"outputs": {OUTPUT_CLASS: labels, OUTPUT_PROBABILITIES: probabilities}}
        return {"predictions": [{OUTPUT_CLASS: label, OUTPUT_PROBABILITIES: p}
                                for label, p in zip(labels, probabilities, strict=True)]}

    def v1_bytes(self, result: dict[str, np.ndarray], columnar: bool) -> bytes:
        """The same body as :meth:`v1_answer`, as the bytes the bulk path sends."""
        if columnar:
            labels = label_array(result[OUTPUT_CLASS], self.label_datatype).tolist()
            probabilities = np.asarray(result[OUTPUT_PROBABILITIES], np.float32).astype(np.float64)
            return orjson.dumps({"outputs": {OUTPUT_CLASS: labels, OUTPUT_PROBABILITIES: probabilities}},
                                option=_NUMPY)
        return orjson.dumps(self.v1_answer(result, columnar=False))


def label_array(labels: np.ndarray, datatype: str) -> np.ndarray:
    """Class labels as the v2 datatype wants them: an object array of str (BYTES) or int64."""
    array = np.asarray(labels)
    if datatype == "INT64":
        return array.astype(np.int64, copy=False)
    if array.dtype == object:
        return array
    return array.astype(object)


def log_outputs(result: dict[str, np.ndarray]) -> dict[str, list]:
    """The per-row prediction a classifier's serving log keeps: the class and its probability."""
    probabilities = np.asarray(result[OUTPUT_PROBABILITIES], np.float32)
    labels = np.asarray(result[OUTPUT_CLASS])
    top = probabilities.max(axis=1) if probabilities.ndim == 2 and probabilities.shape[1] else \
        np.zeros(len(labels), np.float32)
    return {OUTPUT_CLASS: labels.tolist(), "probability": np.round(top.astype(np.float64), 6).tolist()}
