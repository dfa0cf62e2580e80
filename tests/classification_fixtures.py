"""A hand-built classification model directory with the serving contract of a trained one.

``serving_default`` takes the spec's raw columns and returns ``label`` (the class, in the
vocabulary's type) and ``probabilities`` (float32 [batch, C], vocabulary order), computed by a
fixed rule on one numeric column: class k's logit is ``-(x - centre_k)**2 / scale``. Tests of the
consumers (serving, batch prediction, evaluation, monitoring) use it without training a network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.constants import OUTPUT_CLASS, OUTPUT_PROBABILITIES, SERVING_MODEL_SUBDIR, SPEC_FILE

# a small spec: one numeric, one string column, a label of three string classes
IRIS_LIKE_SPEC = {
    "name": "flowers",
    "label": {"name": "species", "type": "string", "vocabulary": ["setosa", "versicolor", "virginica"]},
    "columns": [
        {"name": "petal_length", "type": "float", "range": [0, 10]},
        {"name": "colour", "type": "string"},
    ],
    "features": {"numeric": ["petal_length"], "categorical": ["colour"]},
}
BINARY_SPEC = {
    **IRIS_LIKE_SPEC,
    "name": "sold",
    "label": {"name": "sold", "type": "int", "vocabulary": [0, 1]},
}


def class_probabilities(x: np.ndarray, centres: list[float], scale: float = 1.0) -> np.ndarray:
    """The rule the fake model applies, in numpy: what the tests expect it to return."""
    logits = -np.square(np.asarray(x, np.float64)[:, None] - np.asarray(centres)[None, :]) / scale
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def write_fake_classifier(model_dir: str | Path, raw_spec: dict | None = None, *, feature: str = "petal_length",
                          centres: list[float] | None = None, scale: float = 1.0) -> Path:
    """Write ``model_dir/serving`` and ``feature_spec.yaml`` for a classification spec; returns model_dir."""
    import tensorflow as tf

    spec = spec_from_dict(raw_spec or IRIS_LIKE_SPEC)
    assert spec.is_classification, "the fake classifier needs a classification spec"
    centres = centres or [float(2 * k + 1) for k in range(spec.num_classes)]
    assert len(centres) == spec.num_classes
    classes = list(spec.classes)
    class_dtype = tf.string if spec.label.type == "string" else tf.int64
    signature = {col.name: tf.TensorSpec([None], getattr(tf, col.dtypes.tf), name=col.name) for col in spec.columns}

    class FakeClassifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.centres = tf.Variable(centres, dtype=tf.float32)
            self.classes = tf.constant(classes, dtype=class_dtype)

        @tf.function(input_signature=[signature])
        def serve(self, features):
            x = tf.cast(features[feature], tf.float32)
            logits = -tf.square(x[:, None] - self.centres[None, :]) / scale
            probabilities = tf.nn.softmax(logits, axis=1)
            label = tf.gather(self.classes, tf.argmax(probabilities, axis=1))
            return {OUTPUT_CLASS: label, OUTPUT_PROBABILITIES: probabilities}

    module = FakeClassifier()


    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    concrete = tf.function(lambda **cols: module.serve(cols)).get_concrete_function(**signature)
    tf.saved_model.save(module, str(directory / SERVING_MODEL_SUBDIR), signatures={"serving_default": concrete})
    spec.save(directory / SPEC_FILE)
    return directory
