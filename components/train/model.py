"""The wide-and-deep regressor over RAW inputs, its SavedModel export and loading.

The model's Keras inputs are the spec's raw columns (1-D: float32, int64 or string) and the
preprocessing layer of the transform runs inside it, so ``model(dict_of_tensors)`` in-process
and the exported ``serving_default`` signature both take exactly what a client sends.

- wide: a linear model over one-hot bucket, categorical and cross ids (an Embedding of width 1
  per id-valued feature, summed);
- deep: z-scored numerics + embeddings of categoricals and crosses -> Dense(relu) layers -> 1;
- output: wide + deep = the STANDARDISED label (``state.encode_label``: z-score, optionally of
  log1p); the loss is the MSE on that scale, whatever the label's unit, so one learning rate
  works for fares of 10 and prices of 10,000. ``rmse`` is measured in the label's own unit, and
  the serving signature decodes (``state.decode_label``): predictions come back in that unit.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class ModelFeatures:
    """What a model body sees: the transformed features, as the model-module contract names them."""

    numeric: Any  # float tensor [batch, n] of the z-scored numeric and derived features; None without any
    ids: dict[str, Any]  # name -> int tensor [batch] of every bucketized, categorical and crossed feature
    cardinality: dict[str, int]  # name -> number of ids (ids are in [0, cardinality))
    keras: Any  # the Keras module the model is built with
    embedding_dim: dict[str, int] = field(default_factory=dict)  # name -> the spec's embedding size (0: none)


def model_features(state: TransformState, processed: dict, keras) -> ModelFeatures:
    """The preprocessing layer's outputs as a :class:`ModelFeatures`."""
    sparse = state.sparse_features()
    return ModelFeatures(
        numeric=processed.get(NUMERIC_KEY),
        ids={feature["key"]: processed[feature["key"]] for feature in sparse},
        cardinality={feature["key"]: int(feature["cardinality"]) for feature in sparse},
        keras=keras,
        embedding_dim={feature["key"]: int(feature["dim"] or 0) for feature in sparse},
    )


def wide_and_deep_outputs(features: ModelFeatures, hidden_units: list[int], units: int, start: float = 0.0):
    """The built-in network: a wide linear part over the ids plus a deep part, ``units`` outputs."""
    keras = features.keras
    wide_terms = []
    deep_parts = [features.numeric] if features.numeric is not None else []
    for key, ids in features.ids.items():
        name = _layer_name(key)
        wide_terms.append(keras.layers.Embedding(features.cardinality[key], units, embeddings_initializer="zeros",
                                                 name=f"wide_{name}")(ids))
        if features.embedding_dim.get(key):
            deep_parts.append(keras.layers.Embedding(features.cardinality[key], features.embedding_dim[key],
                                                     name=f"deep_{name}")(ids))
    deep = deep_parts[0] if len(deep_parts) == 1 else keras.layers.Concatenate(name="deep_inputs")(deep_parts)
    for index, units_here in enumerate(hidden_units):
        deep = keras.layers.Dense(units_here, activation="relu", name=f"hidden_{index}")(deep)
    output = keras.layers.Dense(units, bias_initializer=keras.initializers.Constant(start), name="deep_out")(deep)
    if wide_terms:
        output = keras.layers.Add(name="wide_and_deep")([output, *wide_terms])
    return output


def build_model(state: TransformState, hidden_units: list[int], learning_rate: float, *, steps_per_execution: int = 1,
                model_module=None, hp: dict | None = None):
    """A compiled tf-keras network over raw inputs whose output is the standardised label.

    The body is the built-in wide-and-deep network, or ``model_module``'s ``build_model(features, hp)``
    (a loaded model module, see components/train/model_module.py) under mlengine's head.
    """
    from mlengine.components.shared.tf import import_tf

    tf, keras = import_tf()
    if not learning_rate or learning_rate <= 0:
        raise MlengineError(f"learning_rate must be positive, got {learning_rate!r}")
    hidden_units = parse_hidden_units(hidden_units)
    spec = state.spec
    inputs = {col.name: keras.Input(shape=(), dtype=col.dtypes.tf, name=col.name) for col in spec.columns}
    features = model_features(state, state.build_preprocessing()(inputs), keras)
    # the target is standardised (mean 0, std 1), so the head starts at 0 -- unless the label is
    # used as it is ("none"): then it starts at the label mean so the first steps fit the signal
    start = state.label_mean if state.label_transform == "none" else 0.0
    if model_module is None:
        output = wide_and_deep_outputs(features, hidden_units, 1, start)
    else:  # the user's body, mlengine's head
        from mlengine.components.train.model_module import module_body

        body = module_body(model_module, features, hp or {})
        output = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(start), name="head")(body)
    model = keras.Model(inputs=inputs, outputs=output, name="wide_and_deep" if model_module is None else "model_module")

    def standardized_mse(y_true, y_pred):
        target = state.encode_label(tf.reshape(tf.cast(y_true, tf.float32), [-1]), tf)
        return tf.reduce_mean(tf.square(target - tf.reshape(y_pred, [-1])))

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=standardized_mse,
                  metrics=[_label_unit_rmse(state)], steps_per_execution=steps_per_execution)
    return model


def _label_unit_rmse(state: TransformState):
    """RMSE of the decoded predictions against the raw label: the figure evaluation reports."""
    from mlengine.components.shared.tf import import_tf

    tf, keras = import_tf()

    class LabelUnitRMSE(keras.metrics.RootMeanSquaredError):
        def update_state(self, y_true, y_pred, sample_weight=None):
            decoded = state.decode_label(tf.reshape(tf.cast(y_pred, tf.float32), [-1]), tf)
            return super().update_state(tf.reshape(tf.cast(y_true, tf.float32), [-1]), decoded, sample_weight)

    return LabelUnitRMSE(name="rmse")


def predict_label(model, state: TransformState, features):
    """In-process predictions in the label's unit (what the serving signature returns)."""
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    return state.decode_label(tf.reshape(tf.cast(model(features, training=False), tf.float32), [-1]), tf)


def serving_function(model, state: TransformState):
    """The concrete ``serving_default`` function: raw 1-D columns -> {"predictions": float32 [batch]}, label unit."""
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()

    @tf.function
    def serve(**features):
        return {OUTPUT_KEY: predict_label(model, state, features)}

    return serve.get_concrete_function(**raw_input_signature(state.spec))


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
    tf.saved_model.save(model, str(serving_dir), signatures={SIGNATURE_KEY: serving_function(model, state)})
    state.save(directory)
    spec.save(directory / SPEC_FILE)
    return str(serving_dir)
