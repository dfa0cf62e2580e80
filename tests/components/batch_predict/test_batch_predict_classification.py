"""Batch prediction of a classifier: ``prediction`` (the class) and ``probabilities`` (list<float32>)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlengine.components.batch_predict.executor import run
from mlengine.errors import MlengineError
from tests.classification_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC, class_probabilities, write_fake_classifier

SPECS = {"string": IRIS_LIKE_SPEC, "int": BINARY_SPEC}


@pytest.fixture(scope="module", params=list(SPECS), ids=lambda kind: f"{kind}-labels")
def classifier(request, tmp_path_factory):
    raw_spec = SPECS[request.param]
    return raw_spec, write_fake_classifier(tmp_path_factory.mktemp(f"batch-{request.param}"), raw_spec)


def write_rows(path, count: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    table = pa.table({"id": np.arange(count, dtype=np.int64) + 1000,
                      "petal_length": rng.uniform(0, 10, count).astype(np.float32),
                      "colour": rng.choice(["red", "blue", "green"], count)})
    pacsv.write_csv(table, path)
    return table


def test_prediction_is_the_class_and_probabilities_a_list_in_vocabulary_order(classifier, tmp_path):
    raw_spec, model_dir = classifier
    classes = raw_spec["label"]["vocabulary"]
    data = write_rows(tmp_path / "rows.csv", 500)
    result = run(str(model_dir), str(tmp_path / "rows.csv"), str(tmp_path / "out"), keep=["id"], batch_rows=128,
                 csv_output=True)
    assert result.rows_read == result.rows_predicted == 500 and result.rows_rejected == 0
    table = pq.ParquetDataset(sorted(str(p) for p in (tmp_path / "out").glob("predictions-*.parquet"))).read()
    assert table.column_names == ["row", "id", "prediction", "probabilities"]
    assert table.schema.field("probabilities").type == pa.list_(pa.float32())
    assert table.schema.field("prediction").type == (pa.string() if raw_spec["label"]["type"] == "string"
                                                     else pa.int64())
    probabilities = np.array(table.column("probabilities").to_pylist(), np.float32)
    assert probabilities.shape == (500, len(classes))
    predictions = table.column("prediction").to_pylist()
    # the argmax of the probabilities is the predicted class on every row
    assert predictions == [classes[i] for i in probabilities.argmax(axis=1)]
    centres = [float(2 * k + 1) for k in range(len(classes))]
    expected = class_probabilities(data.column("petal_length").to_numpy(), centres)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # CSV: one probability column per class, in the vocabulary's order
    csv = pacsv.read_csv(tmp_path / "out" / "predictions-00000.csv")
    assert csv.column_names == ["row", "id", "prediction", *[f"probability_{c}" for c in classes]]
    assert [str(v) for v in csv.column("prediction").to_pylist()] == [str(p) for p in predictions]
    np.testing.assert_allclose(np.column_stack([csv.column(f"probability_{c}").to_numpy() for c in classes]),
                               probabilities, rtol=1e-6)


def test_keep_may_not_take_the_probabilities_name(classifier, tmp_path):
    _, model_dir = classifier
    write_rows(tmp_path / "rows.csv", 5)
    with pytest.raises(MlengineError, match="probabilities"):
        run(str(model_dir), str(tmp_path / "rows.csv"), str(tmp_path / "out"), keep=["probabilities"])
