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

from mlengine.components.shared.hyperparameters import parse_hidden_units
from mlengine.components.shared.transform_state import NUMERIC_KEY, TransformState
from mlengine.constants import SERVING_MODEL_SUBDIR, SPEC_FILE
from mlengine.errors import MlengineError

SIGNATURE_KEY = "serving_default"
OUTPUT_KEY = "predictions"


def raw_input_signature(spec) -> dict:
    """One 1-D TensorSpec per raw column, named like the column."""
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    return {col.name: tf.TensorSpec([None], getattr(tf, col.dtypes.tf), name=col.name) for col in spec.columns}


def _layer_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def build_model(state: TransformState, hidden_units: list[int], learning_rate: float, *, steps_per_execution: int = 1):
    """A compiled tf-keras wide-and-deep regressor over the raw inputs of the transform's spec."""
    from mlengine.components.shared.tf import import_tf

    _, keras = import_tf()
    if not learning_rate or learning_rate <= 0:
        raise MlengineError(f"learning_rate must be positive, got {learning_rate!r}")
    hidden_units = parse_hidden_units(hidden_units)
    spec = state.spec
    inputs = {col.name: keras.Input(shape=(), dtype=col.dtypes.tf, name=col.name) for col in spec.columns}
    processed = state.build_preprocessing()(inputs)

    wide_terms = []
    deep_parts = [processed[NUMERIC_KEY]] if NUMERIC_KEY in processed else []
    for feature in state.sparse_features():
        ids = processed[feature["key"]]
        name = _layer_name(feature["key"])
        wide_terms.append(keras.layers.Embedding(feature["cardinality"], 1, embeddings_initializer="zeros",
                                                 name=f"wide_{name}")(ids))
        if feature["dim"]:
            deep_parts.append(keras.layers.Embedding(feature["cardinality"], feature["dim"],
                                                     name=f"deep_{name}")(ids))
    label_mean = state.label_mean
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
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()

    @tf.function
    def serve(**features):
        predictions = model(features, training=False)
        return {OUTPUT_KEY: tf.reshape(tf.cast(predictions, tf.float32), [-1])}

    return serve.get_concrete_function(**raw_input_signature(spec))


def export_serving_model(model, state: TransformState, model_dir: str) -> str:
    """Write ``model_dir/serving`` (SavedModel), ``transform.json`` and ``feature_spec.yaml``."""
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    spec = state.spec
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    serving_dir = directory / SERVING_MODEL_SUBDIR
    if serving_dir.exists():
        shutil.rmtree(serving_dir)
    tf.saved_model.save(model, str(serving_dir), signatures={SIGNATURE_KEY: serving_function(model, spec)})
    state.save(directory)
    spec.save(directory / SPEC_FILE)
    return str(serving_dir)
