"""Load an exported model directory for serving and check it against its feature spec.

A model directory (the train component's output) holds ``serving/`` (a SavedModel whose
``serving_default`` signature takes the RAW columns: one 1-D tensor per column, float32 / int64
/ string, and returns ``{"predictions": float32 [batch]}`` for a regression spec, ``{"label": [batch],
"probabilities": float32 [batch, C]}`` for a classification one) and ``feature_spec.yaml``. Anything
else -- no directory, no SavedModel, a signature whose inputs do not match the spec -- is a
one-line :class:`MlengineError` at startup instead of a traceback on the first request.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

import numpy as np

from mlengine.constants import (
    OUTPUT_CLASS,
    OUTPUT_PREDICTIONS,
    OUTPUT_PROBABILITIES,
    SERVING_MODEL_SUBDIR,
    SPEC_FILE,
)
from mlengine.errors import MlengineError

SIGNATURE_KEY = "serving_default"
OUTPUT_KEY = OUTPUT_PREDICTIONS


# a signature input keeps its column's name when TensorFlow and Python both accept it as is
_PLAIN_INPUT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def signature_input_names(spec) -> dict[str, str]:
    """Column name -> the serving signature's input name, for every raw column of the spec.

    A column whose name is a plain identifier (a letter, then letters, digits, ``_``; not a
    Python keyword) keeps it. Any other (``class``, ``a.b``, ``trip-distance``, ``my col``,
    ``_id``, ``1st``) gets a safe name: every other character becomes ``_``, a name not starting
    with a letter gets a ``c`` in front, a keyword gets ``_`` behind (``class_``, ``a_b``,
    ``c_id``); a safe name already taken gets ``_2``, ``_3``... Deterministic from the spec's
    column order, so every consumer of the model directory (its feature_spec.yaml) computes the
    same mapping: clients and files keep using the column names.
    """
    names = [col.name for col in spec.columns]
    taken = {name for name in names if _PLAIN_INPUT_NAME.fullmatch(name) and not keyword.iskeyword(name)}
    out = {}
    for name in names:
        if name in taken:
            out[name] = name
            continue
        safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not safe[:1].isascii() or not safe[:1].isalpha():
            safe = "c" + safe
        if keyword.iskeyword(safe):
            safe += "_"
        candidate, suffix = safe, 2
        while candidate in taken:
            candidate, suffix = f"{safe}_{suffix}", suffix + 1
        taken.add(candidate)
        out[name] = candidate
    return out


def task_outputs(spec) -> tuple[str, ...]:
    """The signature outputs a model of this spec's task returns; the first is what ``runner(...)`` gives."""
    return (OUTPUT_PROBABILITIES, OUTPUT_CLASS) if spec.is_classification else (OUTPUT_PREDICTIONS,)


class SavedModelRunner:
    """The loaded ``serving_default`` signature: numpy columns in, the task's outputs out.

    ``runner(columns)`` gives the main output (regression: float32 predictions [rows];
    classification: float32 probabilities [rows, C]); ``runner.outputs(columns)`` gives every output
    of the task by name (a class label comes back in the vocabulary's type: str or int64).
    """

    def __init__(self, model_dir: str | Path, *, fast_path: bool = True):
        from mlengine.components.shared.featurespec import load_spec
        from mlengine.components.shared.tf import import_tf

        directory = Path(model_dir)
        if not directory.is_dir():
            raise MlengineError(f"{directory}: model directory not found")
        serving_dir = directory / SERVING_MODEL_SUBDIR
        if not (serving_dir / "saved_model.pb").is_file():
            raise MlengineError(f"{directory}: not a model directory: no SavedModel at "
                                f"{SERVING_MODEL_SUBDIR}/saved_model.pb (the train component writes it)")
        spec_path = directory / SPEC_FILE
        if not spec_path.is_file():
            raise MlengineError(f"{directory}: not a model directory: {SPEC_FILE} is missing")
        self.model_dir = directory
        self.spec = load_spec(spec_path)
        self.output_names = task_outputs(self.spec)
        tf, _ = import_tf()
        self._tf = tf
        try:
            # keep the loaded object referenced: the signature holds only weak references to its variables
            self._loaded = tf.saved_model.load(str(serving_dir))
        except Exception as err:  # TensorFlow raises many types for unreadable SavedModels
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise MlengineError(f"{serving_dir}: cannot load the SavedModel: {first}") from None
        signatures = getattr(self._loaded, "signatures", {})
        if SIGNATURE_KEY not in signatures:
            raise MlengineError(f"{serving_dir}: the SavedModel has no {SIGNATURE_KEY!r} signature "
                                f"(has: {', '.join(signatures) or 'none'})")
        self._signature = signatures[SIGNATURE_KEY]
        self.input_names = signature_input_names(self.spec)  # column -> signature input name
        self._dtypes = self._check_signature(serving_dir)
        self.columns = tuple(col.name for col in self.spec.columns)
        self._flat_call = self._direct_call() if fast_path else None

    def _check_signature(self, serving_dir: Path) -> dict:
        """The signature must take exactly the spec's raw columns (by their signature names), 1-D, with the
        contract's dtypes; returns signature input name -> dtype."""
        tf = self._tf
        inputs = dict(self._signature.structured_input_signature[1])
        where = f"{serving_dir}: signature {SIGNATURE_KEY!r} does not match {SPEC_FILE}"
        for col in self.spec.columns:
            input_name = self.input_names[col.name]
            if input_name not in inputs:
                raise MlengineError(f"{where}: input {input_name!r} is missing (inputs: {', '.join(sorted(inputs))})")
            tensor_spec = inputs[input_name]
            expected = getattr(tf, col.dtypes.tf)
            if tensor_spec.dtype != expected:
                raise MlengineError(f"{where}: input {col.name!r} is {tensor_spec.dtype.name}, "
                                    f"the {col.type} column needs {expected.name}")
            if tensor_spec.shape.rank != 1:
                raise MlengineError(f"{where}: input {col.name!r} has shape {tensor_spec.shape}, expected [batch]")
        extra = sorted(set(inputs) - set(self.input_names.values()))
        if extra:
            raise MlengineError(f"{where}: input {extra[0]!r} is not a raw column of the spec")
        outputs = self._signature.structured_outputs
        for name in self.output_names:
            if not isinstance(outputs, dict) or name not in outputs:
                names = sorted(outputs) if isinstance(outputs, dict) else outputs
                raise MlengineError(f"{where}: no {name!r} output for a {self.spec.task} model (outputs: {names})")
        return {name: spec.dtype for name, spec in inputs.items()}

    def __call__(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The main output for columns of the spec (any numeric dtype is cast): see the class docstring."""
        return self.outputs(columns)[self.output_names[0]]

    def outputs(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the task by name, as numpy arrays (regression predictions are 1-D)."""
        tf = self._tf
        missing = [name for name in self.columns if name not in columns]
        if missing:
            raise MlengineError(f"prediction input: column {missing[0]!r} is missing "
                                f"(expected {', '.join(self.columns)})")
        columns = {self.input_names[name]: _as_dtype(name, columns[name], self._dtypes[self.input_names[name]])
                   for name in self.columns}
        if self._flat_call is not None:
            order, call = self._flat_call
            raw = call([tf.constant(columns[name], dtype=self._dtypes[name]) for name in order])
        else:
            tensors = {name: tf.constant(columns[name], dtype=dtype) for name, dtype in self._dtypes.items()}
            result = self._signature(**tensors)
            raw = {name: result[name].numpy() for name in self.output_names}
        return self._as_outputs(raw)

    def _as_outputs(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, value in raw.items():
            if name == OUTPUT_PREDICTIONS:
                value = value.reshape(-1)
            elif name == OUTPUT_CLASS and value.dtype == object:  # TF strings come back as bytes
                value = np.array([v.decode("utf-8") for v in value], dtype=object)
            out[name] = value
        return out

    def _direct_call(self):
        """The signature's graph function called with flat tensors, skipping the keyword binding.

        Binding keyword tensors to the structured signature costs about 0.35 ms per call, as much
        as running this small graph at batch 1. The flat call goes through TF internals, so it is
        used only when it exists and answers exactly like the public call on a probe batch;
        otherwise the public ``signature(**tensors)`` path is used.
        """
        tf = self._tf
        signature = self._signature
        try:
            atomic = signature._inference_function
            captured = list(signature.captured_inputs)
            order = [tensor.name.split(":")[0] for tensor in signature.inputs[:len(self._dtypes)]]
            if sorted(order) != sorted(self._dtypes):
                return None
            outputs = signature.structured_outputs
            flat_outputs = tf.nest.flatten(outputs)
            positions = {name: next(i for i, t in enumerate(flat_outputs) if t is outputs[name])
                         for name in self.output_names}

            def call(flat: list) -> dict[str, np.ndarray]:
                results = atomic.call_flat(*flat, *captured)
                return {name: results[index].numpy() for name, index in positions.items()}

            probe = {self.input_names[name]: values for name, values in _probe_columns(self.spec).items()}
            expected = self._signature(**{n: tf.constant(probe[n], dtype=d) for n, d in self._dtypes.items()})
            got = call([tf.constant(probe[name], dtype=self._dtypes[name]) for name in order])
            if any(not np.array_equal(expected[name].numpy(), got[name]) for name in self.output_names):
                return None
            return order, call
        except Exception:  # any TF internals that differ from 2.21: keep the public path
            return None


def _as_dtype(name: str, values, dtype) -> np.ndarray:
    """A 1-D array of the signature's dtype (validated serving input passes through uncopied)."""
    array = np.asarray(values)
    if dtype.is_floating or dtype.is_integer:
        try:
            return array.reshape(-1).astype(dtype.as_numpy_dtype, copy=False)
        except (TypeError, ValueError) as err:
            raise MlengineError(f"prediction input: column {name!r} is not {dtype.name}: {err}") from None
    return array.reshape(-1)


def _probe_columns(spec, rows: int = 3) -> dict[str, np.ndarray]:
    """A few in-range rows (low end, middle, high end of each range) to compare call paths."""
    columns = {}
    for col in spec.columns:
        if col.type == "string":
            values = list(col.vocabulary or ("a", "b", "c"))[:rows]
            columns[col.name] = np.array((values * rows)[:rows], dtype=object)
            continue
        low, high = col.range if col.range is not None else (0, 1)
        columns[col.name] = np.linspace(low, high, rows).astype(col.dtypes.numpy)
    return columns


def load_model_dir(model_dir: str | Path, tf_threads: int | None = None, *, fast_path: bool = True
                   ) -> SavedModelRunner:
    """Load ``model_dir`` (raises a one-line MlengineError when it cannot be served).

    ``fast_path=False`` calls only the public ``signature(**tensors)`` API (the reference the
    tests and benchmarks compare the server with).
    """
    from mlengine.components.shared.tf import configure_tf_threads

    configure_tf_threads(tf_threads)
    return SavedModelRunner(model_dir, fast_path=fast_path)


def columns_from_rows(rows: list[dict], spec) -> dict[str, np.ndarray]:
    """Numpy columns (the serving dtypes) from already-valid rows: the in-process prediction input."""
    return {col.name: np.array([row[col.name] for row in rows], dtype=col.dtypes.numpy) for col in spec.columns}
