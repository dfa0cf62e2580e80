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


def test_the_runner_gives_probabilities_and_classes_on_both_call_paths(tmp_path):
    from mlengine.components.shared.savedmodel import load_model_dir

    directory = write_fake_classifier(tmp_path / "model")
    columns = {"petal_length": np.array([0.9, 3.2, 4.8], np.float64), "colour": np.array(["a", "b", "c"], object)}
    fast, public = load_model_dir(directory), load_model_dir(directory, fast_path=False)
    assert fast._flat_call is not None  # the fast path is the one under test here
    for runner in (fast, public):
        out = runner.outputs(columns)
        np.testing.assert_allclose(out[OUTPUT_PROBABILITIES], class_probabilities(columns["petal_length"], [1, 3, 5]),
                                   rtol=1e-5)
        assert out[OUTPUT_CLASS].tolist() == ["setosa", "versicolor", "virginica"]
        assert runner(columns).shape == (3, 3)  # the main output of a classifier: the probabilities


def test_a_classification_spec_with_a_regression_signature_is_refused(tmp_path):
    import pytest

    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.shared.savedmodel import load_model_dir
    from mlengine.constants import SPEC_FILE
    from mlengine.errors import MlengineError
    from tests.classification_fixtures import IRIS_LIKE_SPEC

    directory = write_fake_classifier(tmp_path / "model")
    regression = {**IRIS_LIKE_SPEC, "label": {"name": "species", "type": "float"}}
    spec_from_dict(regression).save(directory / SPEC_FILE)
    with pytest.raises(MlengineError, match=r"no 'predictions' output for a regression model"):
        load_model_dir(directory)
