"""The serving log's optional ``prediction`` object (a classifier's class and probability).

Lines without it (every regression log, every log written before) read as before; with it, the
reader hands each row's prediction back in the rows' order, sampling included.
"""

from __future__ import annotations

import json

import numpy as np

from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.components.shared.serving_log import ServingInputLog, read_serving_log
from tests.classification_fixtures import IRIS_LIKE_SPEC

SPEC = spec_from_dict(IRIS_LIKE_SPEC)


def columns(count: int) -> dict[str, np.ndarray]:
    return {"petal_length": np.arange(count, dtype=np.float32) / 2,
            "colour": np.array(["red", "blue"] * (count // 2), dtype=object)}


def test_a_line_without_predictions_is_the_same_bytes_as_before(tmp_path):
    with ServingInputLog(tmp_path) as log:
        log.log_columns(columns(2), 2)
    lines = next(tmp_path.glob("serving-*.jsonl")).read_bytes().splitlines()
    assert [sorted(json.loads(line)) for line in lines] == [["instance", "ts"]] * 2
    assert lines[1].endswith(b',"instance":{"petal_length":0.5,"colour":"blue"}}')
    data = read_serving_log(tmp_path, SPEC)
    assert data.rows == 2 and data.predictions == [None, None]
    assert data.summary()["rows_with_prediction"] == 0


def test_predictions_follow_their_rows_through_sampling_and_files(tmp_path):
    count = 400
    labels = [SPEC.classes[i % 3] for i in range(count)]
    with ServingInputLog(tmp_path, sample_rate=0.5, seed=3, max_lines_per_file=50) as log:
        written = log.log_columns(columns(count), count,
                                  predictions={"label": labels, "probability": [i / count for i in range(count)]})
    assert 100 < written < 300 and len(list(tmp_path.glob("serving-*.jsonl"))) > 1
    data = read_serving_log(tmp_path, SPEC)
    assert data.rows == written and data.malformed == 0
    # each kept row still carries its own prediction: row i has petal_length i / 2 and label classes[i % 3]
    rows = np.round(data.columns["petal_length"] * 2).astype(int)
    assert [p["label"] for p in data.predictions] == [SPEC.classes[i % 3] for i in rows]
    np.testing.assert_allclose([p["probability"] for p in data.predictions], rows / count)
    assert data.summary()["rows_with_prediction"] == written


def test_old_and_new_lines_mix_in_one_log(tmp_path):
    with ServingInputLog(tmp_path) as log:
        log.log_columns(columns(2), 2)
        log.log_columns(columns(2), 2, predictions={"label": ["setosa", "virginica"], "probability": [0.9, 0.8]})
    data = read_serving_log(tmp_path, SPEC)
    assert data.predictions == [None, None, {"label": "setosa", "probability": 0.9},
                                {"label": "virginica", "probability": 0.8}]
    limited = read_serving_log(tmp_path, SPEC, limit=1)
    assert limited.predictions == [{"label": "virginica", "probability": 0.8}]
