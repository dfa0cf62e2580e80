"""A model module under a classification head: the user's body, mlengine's logits, loss and signature."""

from pathlib import Path

import numpy as np

from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.constants import OUTPUT_CLASS, OUTPUT_PROBABILITIES
from tests.classification_fixtures import IRIS_LIKE_SPEC
from tests.classifier_fixtures import classification_columns, train_tiny_classifier

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "models" / "mlp_batchnorm.py"


def test_a_model_module_trains_a_multiclass_classifier_that_serves_classes(tmp_path):
    model_dir, _, _ = train_tiny_classifier(tmp_path, IRIS_LIKE_SPEC, rows=900, epochs=6,
                                                 model_module=str(EXAMPLE))
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    columns = classification_columns(IRIS_LIKE_SPEC, 300, seed=7)
    runner = load_model_dir(model_dir)
    outputs = runner.outputs({name: columns[name] for name in spec.column_names})
    probabilities = outputs[OUTPUT_PROBABILITIES]
    assert probabilities.shape == (300, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert outputs[OUTPUT_CLASS].tolist() == [spec.classes[i] for i in probabilities.argmax(axis=1)]
    truth = columns[spec.label.name]
    accuracy = float(np.mean(outputs[OUTPUT_CLASS] == truth))
    majority = max(np.mean(truth == cls) for cls in spec.classes)
    assert accuracy > majority + 0.2, (accuracy, majority)
    variables = {v.name for v in __import__("tensorflow").saved_model.load(str(model_dir / "serving")).variables}
    assert any("head" in name for name in variables)  # mlengine's head on the module's body
