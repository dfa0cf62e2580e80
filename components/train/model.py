"""The wide-and-deep regressor over RAW inputs, its SavedModel export and loading.

The model's Keras inputs are the spec's raw columns (1-D: float32, int64 or string) and the
preprocessing layer of the transform runs inside it, so ``model(dict_of_tensors)`` in-process
and the exported ``serving_default`` signature both take exactly what a client sends.

- wide: a linear model over one-hot bucket, categorical and cross ids (an Embedding of width 1
  per id-valued feature, summed);
- deep: z-scored numerics + embeddings of categoricals and crosses -> Dense(relu) layers -> 1;
- output: wide + deep, the deep head's bias starting at the label mean.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from mlengine.components.transform import logic as transform
from mlengine.constants import SERVING_MODEL_SUBDIR, SPEC_FILE
from mlengine.errors import MlengineError

SIGNATURE_KEY = "serving_default"
OUTPUT_KEY = "predictions"
_TF_DTYPES = {"float": "float32", "int": "int64", "string": "string"}
_NUMPY_DTYPES = {"float": np.float32, "int": np.int64, "string": object}


def parse_hidden_units(value: str | list[int]) -> list[int]:
    """``"64,32"`` or ``[64, 32]`` -> ``[64, 32]``; every entry a positive integer."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(" ", "").split(",")]
        if not value.strip() or any(not p for p in parts):
            raise MlengineError(f"hidden_units: expected comma-separated positive integers like '64,32', got {value!r}")
        try:
            units = [int(p) for p in parts]
        except ValueError:
            raise MlengineError(
                f"hidden_units: expected comma-separated positive integers like '64,32', got {value!r}") from None
    elif isinstance(value, list | tuple):
        units = list(value)
        if not units or not all(isinstance(u, int | np.integer) and not isinstance(u, bool) for u in units):
            raise MlengineError(f"hidden_units: expected a non-empty list of positive integers, got {value!r}")
        units = [int(u) for u in units]
    else:
        raise MlengineError(f"hidden_units: expected a string like '64,32' or a list of integers, got {value!r}")
    if any(u < 1 for u in units):
        raise MlengineError(f"hidden_units: every layer needs at least 1 unit, got {value!r}")
    return units


def raw_input_signature(spec) -> dict:
    """One 1-D TensorSpec per raw column, named like the column."""
    from mlengine.components.train.tfenv import import_tf

    tf, _ = import_tf()
    return {col.name: tf.TensorSpec([None], getattr(tf, _TF_DTYPES[col.type]), name=col.name) for col in spec.columns}


def _layer_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _label_mean(state: dict) -> float:
    """The training label mean: recorded by analyze, else where the benchmark line passes the feature mean."""
    if "label" in state:
        return float(state["label"]["mean"])
    bench = state["benchmark"]
    if bench.get("feature"):
        return float(bench["slope"]) * float(state["numeric"][bench["feature"]]["mean"]) + float(bench["intercept"])
    return float(bench["intercept"])


def build_model(state: dict, hidden_units: list[int], learning_rate: float, *, steps_per_execution: int = 1):
    """A compiled tf-keras wide-and-deep regressor over the raw inputs of the transform's spec."""
    from mlengine.components.train.tfenv import import_tf

    _, keras = import_tf()
    if not learning_rate or learning_rate <= 0:
        raise MlengineError(f"learning_rate must be positive, got {learning_rate!r}")
    hidden_units = parse_hidden_units(hidden_units)
    spec = transform.spec_of(state)
    inputs = {col.name: keras.Input(shape=(), dtype=_TF_DTYPES[col.type], name=col.name) for col in spec.columns}
    processed = transform.build_preprocessing(state)(inputs)

    wide_terms = []
    deep_parts = [processed[transform.NUMERIC_KEY]] if transform.NUMERIC_KEY in processed else []
    for feature in transform.sparse_features(state):
        ids = processed[feature["key"]]
        name = _layer_name(feature["key"])
        wide_terms.append(keras.layers.Embedding(feature["cardinality"], 1, embeddings_initializer="zeros",
                                                 name=f"wide_{name}")(ids))
        if feature["dim"]:
            deep_parts.append(keras.layers.Embedding(feature["cardinality"], feature["dim"],
                                                     name=f"deep_{name}")(ids))
    label_mean = _label_mean(state)
    deep = deep_parts[0] if len(deep_parts) == 1 else keras.layers.Concatenate(name="deep_inputs")(deep_parts)
    for index, units in enumerate(hidden_units):
        deep = keras.layers.Dense(units, activation="relu", name=f"hidden_{index}")(deep)
    # starting at the label mean, the first steps fit the signal instead of the offset
    output = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(label_mean), name="deep_out")(deep)
    if wide_terms:
        output = keras.layers.Add(name="wide_and_deep")([output, *wide_terms])
    model = keras.Model(inputs=inputs, outputs=output, name="wide_and_deep")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")], steps_per_execution=steps_per_execution)
    return model


def serving_function(model, spec):
    """The concrete ``serving_default`` function: raw 1-D columns -> {"predictions": float32 [batch]}."""
    from mlengine.components.train.tfenv import import_tf

    tf, _ = import_tf()

    @tf.function
    def serve(**features):
        predictions = model(features, training=False)
        return {OUTPUT_KEY: tf.reshape(tf.cast(predictions, tf.float32), [-1])}

    return serve.get_concrete_function(**raw_input_signature(spec))


def export_serving_model(model, state: dict, model_dir: str) -> str:
    """Write ``model_dir/serving`` (SavedModel), ``transform.json`` and ``feature_spec.yaml``."""
    from mlengine.components.train.tfenv import import_tf

    tf, _ = import_tf()
    spec = transform.spec_of(state)
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    serving_dir = directory / SERVING_MODEL_SUBDIR
    if serving_dir.exists():
        shutil.rmtree(serving_dir)
    tf.saved_model.save(model, str(serving_dir), signatures={SIGNATURE_KEY: serving_function(model, spec)})
    transform.save_transform(state, str(directory))
    spec.save(directory / SPEC_FILE)
    return str(serving_dir)


class ServingModel:
    """A loaded SavedModel: call it with numpy columns, get float32 predictions [batch]."""

    def __init__(self, model_dir: str):
        from mlengine.components.train.tfenv import import_tf

        tf, _ = import_tf()
        self._tf = tf
        directory = Path(model_dir)
        serving_dir = directory / SERVING_MODEL_SUBDIR if (directory / SERVING_MODEL_SUBDIR).is_dir() else directory
        if not (serving_dir / "saved_model.pb").is_file():
            raise MlengineError(f"{serving_dir}: no SavedModel (saved_model.pb) here")
        # the loaded object must stay referenced: signatures hold only weak references to variables
        self._loaded = tf.saved_model.load(str(serving_dir))
        if SIGNATURE_KEY not in self._loaded.signatures:
            raise MlengineError(f"{serving_dir}: SavedModel has no {SIGNATURE_KEY!r} signature")
        self._signature = self._loaded.signatures[SIGNATURE_KEY]
        self.input_specs = dict(self._signature.structured_input_signature[1])

    @property
    def column_names(self) -> list[str]:
        return list(self.input_specs)

    def __call__(self, columns: dict) -> np.ndarray:
        tf = self._tf
        tensors = {}
        for name, tensor_spec in self.input_specs.items():
            if name not in columns:
                raise MlengineError(f"prediction input: column {name!r} is missing "
                                    f"(expected {', '.join(self.input_specs)})")
            try:
                if tensor_spec.dtype == tf.string:
                    value = np.asarray(columns[name], dtype=object).reshape(-1)
                else:
                    value = np.asarray(columns[name]).reshape(-1).astype(tensor_spec.dtype.as_numpy_dtype)
            except (TypeError, ValueError) as err:
                raise MlengineError(
                    f"prediction input: column {name!r} is not {tensor_spec.dtype.name}: {err}") from None
            tensors[name] = tf.constant(value, dtype=tensor_spec.dtype)
        return self._signature(**tensors)[OUTPUT_KEY].numpy()


def load_serving_model(model_dir: str) -> ServingModel:
    """Load ``model_dir/serving`` (or a SavedModel dir); returns a numpy-in, numpy-out callable."""
    return ServingModel(model_dir)
