"""The fake classifier follows the classification serving contract the consumers rely on."""

import numpy as np

from mlengine.constants import OUTPUT_CLASS, OUTPUT_PROBABILITIES, SERVING_MODEL_SUBDIR
from tests.classification_fixtures import BINARY_SPEC, class_probabilities, write_fake_classifier


def test_the_fake_classifier_returns_classes_and_probabilities_in_vocabulary_order(tmp_path):
    import tensorflow as tf

    directory = write_fake_classifier(tmp_path / "model")
    serve = tf.saved_model.load(str(directory / SERVING_MODEL_SUBDIR)).signatures["serving_default"]
    x = np.array([1.0, 3.1, 5.0, 9.0], np.float32)
    out = serve(petal_length=tf.constant(x), colour=tf.constant(["a", "b", "c", "d"]))
    probabilities = out[OUTPUT_PROBABILITIES].numpy()
    assert probabilities.shape == (4, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, class_probabilities(x, [1.0, 3.0, 5.0]), rtol=1e-5)
    assert [v.decode() for v in out[OUTPUT_CLASS].numpy()] == ["setosa", "versicolor", "virginica", "virginica"]


def test_an_int_vocabulary_gives_int64_classes(tmp_path):
    import tensorflow as tf

    directory = write_fake_classifier(tmp_path / "model", BINARY_SPEC, centres=[1.0, 4.0])
    serve = tf.saved_model.load(str(directory / SERVING_MODEL_SUBDIR)).signatures["serving_default"]
    out = serve(petal_length=tf.constant([0.5, 3.9], tf.float32), colour=tf.constant(["a", "b"]))
    assert out[OUTPUT_CLASS].dtype == tf.int64 and out[OUTPUT_CLASS].numpy().tolist() == [0, 1]
