"""The wide-and-deep network over RAW inputs with the task's head, its SavedModel export.

The model's Keras inputs are the spec's raw columns (1-D: float32, int64 or string) and the
preprocessing layer of the transform runs inside it, so ``model(dict_of_tensors)`` in-process
and the exported ``serving_default`` signature both take exactly what a client sends.

- wide: a linear model over one-hot bucket, categorical and cross ids (an Embedding of width 1
  per id-valued feature, summed);
- deep: z-scored numerics + embeddings of categoricals and crosses -> Dense(relu) layers -> 1;
- regression output: wide + deep = the STANDARDISED label (``state.encode_label``: z-score,
  optionally of log1p); the loss is the MSE on that scale, whatever the label's unit, so one
  learning rate works for fares of 10 and prices of 10,000. ``rmse`` is measured in the label's
  own unit, and the serving signature decodes (``state.decode_label``): predictions come back in
  that unit;
- classification output: logits (one for a binary label, C for a multiclass one) whose bias
  starts at the training split's log prior; cross-entropy loss; the signature returns the class
  (``label``) and the probabilities in vocabulary order.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared.hyperparameters import parse_hidden_units
from mlengine.components.shared.savedmodel import signature_input_names
from mlengine.components.shared.transform_state import NUMERIC_KEY, TransformState
from mlengine.constants import (
    ASYNC_ADAM_EPSILON,
    CLASS_WEIGHTS,
    OUTPUT_CLASS,
    OUTPUT_PREDICTIONS,
    OUTPUT_PROBABILITIES,
    SERVING_MODEL_SUBDIR,
    SPEC_FILE,
)
from mlengine.errors import MlengineError

SIGNATURE_KEY = "serving_default"
OUTPUT_KEY = OUTPUT_PREDICTIONS


def raw_input_signature(spec) -> dict:
    """One 1-D TensorSpec per raw column, keyed and named by its signature input name (``signature_input_names``)."""
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    names = signature_input_names(spec)
    return {names[col.name]: tf.TensorSpec([None], getattr(tf, col.dtypes.tf), name=names[col.name])
            for col in spec.columns}


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


def wide_and_deep_outputs(features: ModelFeatures, hidden_units: list[int], units: int,
                          start: float | list[float] = 0.0):
    """The built-in network: a wide linear part over the ids plus a deep part, ``units`` outputs.

    ``start`` is the output bias at initialisation: one number for every output, or one per output.
    """
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


def make_optimizer(learning_rate: float, *, asynchronous: bool = False):
    """Adam; under asynchronous (parameter-server) updates with ASYNC_ADAM_EPSILON (see its note)."""
    from mlengine.components.shared.tf import import_tf

    _, keras = import_tf()
    if asynchronous:
        return keras.optimizers.Adam(learning_rate=learning_rate, epsilon=ASYNC_ADAM_EPSILON)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def build_model(state: TransformState, hidden_units: list[int], learning_rate: float, *, steps_per_execution: int = 1,
                class_weight: str = "none", model_module=None, hp: dict | None = None, asynchronous: bool = False):
    """A compiled tf-keras network over raw inputs with the task's head and loss.

    The body is the built-in wide-and-deep network, or ``model_module``'s ``build_model(features, hp)``
    (a loaded model module, see components/train/model_module.py) under mlengine's head.
    Regression: one output, the standardised label, MSE on that scale, ``rmse`` in the label's
    unit. Binary: one logit, binary cross-entropy; multiclass: C logits, softmax cross-entropy;
    both with ``log_loss`` (the unweighted mean cross-entropy) and ``accuracy`` as metrics. The
    targets of a class label are class indices (``data.label_target``). ``class_weight``
    "balanced" weighs each class's rows by ``rows / (C * rows of the class)`` in the training
    loss (classification only). ``asynchronous``: the model trains under ParameterServerStrategy
    (workers update the variables without a lock: see ``make_optimizer``).
    """
    from mlengine.components.shared.tf import import_tf

    tf, keras = import_tf()
    if not learning_rate or learning_rate <= 0:
        raise MlengineError(f"learning_rate must be positive, got {learning_rate!r}")
    if class_weight not in CLASS_WEIGHTS:
        raise MlengineError(f"class_weight {class_weight!r}: expected one of {list(CLASS_WEIGHTS)}")
    hidden_units = parse_hidden_units(hidden_units)
    spec = state.spec
    inputs = {col.name: keras.Input(shape=(), dtype=col.dtypes.tf, name=col.name) for col in spec.columns}
    features = model_features(state, state.build_preprocessing()(inputs), keras)
    optimizer = make_optimizer(learning_rate, asynchronous=asynchronous)
    head = classification_head(state, class_weight) if spec.is_classification else None
    # a regression target is standardised (mean 0, std 1), so the head starts at 0 -- unless the label
    # is used as it is ("none"): then it starts at the label mean so the first steps fit the signal
    units = head.units if head else 1
    start = head.start if head else (state.label_mean if state.label_transform == "none" else 0.0)
    if model_module is None:
        output = wide_and_deep_outputs(features, hidden_units, units, start)
    else:  # the user's body, mlengine's head
        from mlengine.components.train.model_module import module_body

        body = module_body(model_module, features, hp or {})
        output = keras.layers.Dense(units, bias_initializer=keras.initializers.Constant(start), name="head")(body)
    model = keras.Model(inputs=inputs, outputs=output, name="wide_and_deep" if model_module is None else "model_module")
    if head:
        model.compile(optimizer=optimizer, loss=head.loss, metrics=head.metrics(),
                      steps_per_execution=steps_per_execution)
        return model

    def standardized_mse(y_true, y_pred):
        target = state.encode_label(tf.reshape(tf.cast(y_true, tf.float32), [-1]), tf)
        return tf.reduce_mean(tf.square(target - tf.reshape(y_pred, [-1])))

    model.compile(optimizer=optimizer, loss=standardized_mse,
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


@dataclass(frozen=True)
class ClassificationHead:
    """The outputs, starting bias, loss and metrics of a class label's model."""

    units: int  # 1 logit (binary) or C logits (multiclass)
    start: list[float]  # the output bias at initialisation: the log prior of the training split
    loss: Any  # (class indices, logits) -> mean weighted cross-entropy
    metrics: Any  # () -> [log_loss, accuracy] metric objects (new ones per model)


def class_weights(state: TransformState, mode: str = "none") -> list[float]:
    """Per-class loss weights: all 1 ("none"), or ``rows / (C * rows of class k)`` ("balanced")."""
    counts = state.class_counts or [1] * state.spec.num_classes
    if mode != "balanced":
        return [1.0] * len(counts)
    total = sum(counts)
    return [total / (len(counts) * max(count, 1)) for count in counts]


def log_prior_bias(state: TransformState, weights: list[float] | None = None) -> list[float]:
    """The output bias at which the untrained head predicts the (weighted) training class prior.

    Binary: one logit, ``log(p1 / p0)``; multiclass: ``log(p_k)`` (softmax ignores a shared shift).
    A class seen in no training row gets a tiny share (ingest refuses such a split anyway).
    """
    counts = state.class_counts or [1] * state.spec.num_classes
    weights = weights or [1.0] * len(counts)
    mass = [max(count, 0.5) * weight for count, weight in zip(counts, weights, strict=True)]
    total = sum(mass)
    prior = [m / total for m in mass]
    if len(prior) == 2:
        return [math.log(prior[1] / prior[0])]
    return [math.log(p) for p in prior]


def classification_head(state: TransformState, class_weight: str = "none") -> ClassificationHead:
    """The head of a binary or multiclass label (see ``build_model``)."""
    from mlengine.components.shared.tf import import_tf

    tf, keras = import_tf()
    binary = state.spec.num_classes == 2
    weights = class_weights(state, class_weight)
    weight_table = tf.constant(weights, tf.float32)

    def cross_entropy(y_true, y_pred):
        """Per-row cross-entropy of the class indices under the logits (natural log)."""
        labels = tf.reshape(tf.cast(y_true, tf.int64), [-1])
        if binary:
            return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32),
                                                           logits=tf.reshape(y_pred, [-1]))
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=y_pred)

    def predicted_class(y_pred):
        if binary:
            return tf.cast(tf.reshape(y_pred, [-1]) > 0.0, tf.int64)
        return tf.argmax(y_pred, axis=1)

    def weighted_cross_entropy(y_true, y_pred):
        per_row = cross_entropy(y_true, y_pred)
        if class_weight == "none":
            return tf.reduce_mean(per_row)
        row_weights = tf.gather(weight_table, tf.reshape(tf.cast(y_true, tf.int64), [-1]))
        return tf.reduce_mean(per_row * row_weights)

    class LogLoss(keras.metrics.Mean):
        """The unweighted mean cross-entropy: what evaluation reports and tuning minimises."""

        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(cross_entropy(y_true, y_pred), sample_weight)

    class Accuracy(keras.metrics.Mean):
        def update_state(self, y_true, y_pred, sample_weight=None):
            hits = tf.equal(predicted_class(y_pred), tf.reshape(tf.cast(y_true, tf.int64), [-1]))
            return super().update_state(tf.cast(hits, tf.float32), sample_weight)

    start = log_prior_bias(state, weights)
    return ClassificationHead(units=1 if binary else state.spec.num_classes, start=start,
                              loss=weighted_cross_entropy,
                              metrics=lambda: [LogLoss(name="log_loss"), Accuracy(name="accuracy")])


def class_probabilities(state: TransformState, logits, tf):
    """The head's output -> float32 probabilities [batch, C] in vocabulary order (binary: [1 - p, p])."""
    logits = tf.cast(logits, tf.float32)
    if state.spec.num_classes == 2:
        positive = tf.math.sigmoid(tf.reshape(logits, [-1]))
        return tf.stack([1.0 - positive, positive], axis=1)
    return tf.nn.softmax(logits, axis=1)


def predict_outputs(model, state: TransformState, features) -> dict:
    """In-process predictions with the serving signature's outputs (TF tensors).

    Regression: ``{"predictions": float32 [batch]}`` in the label's unit. Classification:
    ``{"label": [batch] class in the vocabulary's dtype (string or int64), "probabilities":
    float32 [batch, C]}``; the label is the class of the highest probability.
    """
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    raw = model(features, training=False)
    spec = state.spec
    if not spec.is_classification:
        return {OUTPUT_PREDICTIONS: state.decode_label(tf.reshape(tf.cast(raw, tf.float32), [-1]), tf)}
    probabilities = class_probabilities(state, raw, tf)
    classes = tf.constant(list(spec.classes), dtype=tf.string if spec.label.type == "string" else tf.int64)
    return {OUTPUT_CLASS: tf.gather(classes, tf.argmax(probabilities, axis=1)), OUTPUT_PROBABILITIES: probabilities}


def predict_label(model, state: TransformState, features):
    """In-process predictions: regression values in the label's unit, or the predicted classes."""
    outputs = predict_outputs(model, state, features)
    return outputs[OUTPUT_CLASS if state.spec.is_classification else OUTPUT_PREDICTIONS]


def serving_function(model, state: TransformState):
    """The concrete ``serving_default`` function: raw 1-D columns -> the task's outputs (``predict_outputs``).

    Its inputs are named by ``signature_input_names`` (a column named ``class`` or ``a.b`` is
    not a valid Python parameter name: the signature calls it ``class_`` / ``a_b``).
    """
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    input_names = signature_input_names(state.spec)

    @tf.function
    def serve(**inputs):
        return predict_outputs(model, state, {column: inputs[name] for column, name in input_names.items()})

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
