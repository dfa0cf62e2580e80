"""A class label at ingest: rows outside the vocabulary rejected, class counts in the statistics, a training
split that cannot train a classifier refused in one line, an int label that looks like classes warned about."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mlengine.components.ingest.report import render_statistics_markdown
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.errors import DataError
from tests.ingest_fixtures import ingest, write_csv_rows

SPEC = {
    "name": "churn",
    "label": {"name": "churned", "type": "string", "vocabulary": ["no", "yes", "maybe"]},
    "columns": [
        {"name": "x", "type": "float", "range": [0, 10]},
        {"name": "plan", "type": "string"},
    ],
    "features": {"numeric": ["x"], "categorical": ["plan"]},
}
HEADER = ["x", "plan", "churned"]


def _rows(labels: list[str], seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[f"{rng.uniform(0, 10):.3f}", str(rng.choice(["basic", "pro"])), label] for label in labels]


def test_labels_outside_the_vocabulary_are_rejected_and_classes_are_counted(tmp_path):
    labels = ["no"] * 120 + ["yes"] * 60 + ["maybe"] * 30 + ["perhaps"] * 4 + [""] * 2
    path = write_csv_rows(tmp_path / "churn.csv", HEADER, _rows(labels))
    run = ingest(path, tmp_path / "out", spec=spec_from_dict(SPEC))
    assert run.result.rows_rejected == 6
    assert run.result.reject_reasons == {"column 'churned': not in vocabulary": 4,
                                         "column 'churned': missing value": 2}
    reasons = {r["reason"] for r in run.rejects()}
    assert "column 'churned': value 'perhaps' is not in the vocabulary" in reasons
    stats = run.statistics()
    counts = stats["all"]["columns"]["churned"]["class_counts"]
    assert counts == [{"value": "no", "count": 120}, {"value": "yes", "count": 60}, {"value": "maybe", "count": 30}]
    train = stats["train"]["columns"]["churned"]["class_counts"]
    assert [c["value"] for c in train] == ["no", "yes", "maybe"]
    assert sum(c["count"] for c in train) == run.result.rows_per_split["train"]
    view = render_statistics_markdown(stats, run.result)
    assert "## Classes of the label `churned`" in view and "| no | 120 | 57.1% |" in view


def test_an_int_class_label_is_checked_and_counted_too(tmp_path):
    spec = spec_from_dict({**SPEC, "label": {"name": "churned", "type": "int", "vocabulary": [0, 1]}})
    labels = ["0"] * 50 + ["1"] * 30 + ["2"] * 3
    run = ingest(write_csv_rows(tmp_path / "c.csv", HEADER, _rows(labels)), tmp_path / "out", spec=spec)
    assert run.result.reject_reasons == {"column 'churned': not in vocabulary": 3}
    assert run.statistics()["all"]["columns"]["churned"]["class_counts"] == [
        {"value": 0, "count": 50}, {"value": 1, "count": 30}]


def test_a_vocabulary_that_does_not_match_the_data_fails_in_one_line(tmp_path):
    spec = spec_from_dict({**SPEC, "label": {"name": "churned", "type": "string", "vocabulary": ["No", "Yes"]}})
    path = write_csv_rows(tmp_path / "c.csv", HEADER, _rows(["no"] * 40 + ["yes"] * 20 + ["No"] * 5))
    with pytest.raises(DataError) as err:
        ingest(path, tmp_path / "out", spec=spec)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("<dict>: label.vocabulary ['No', 'Yes'] does not match the data: 60 of 65 rows")
    assert "e.g. 'no', 'yes'" in message


def test_a_one_class_training_split_is_refused_naming_the_classes(tmp_path):
    spec = spec_from_dict({**SPEC, "label": {"name": "churned", "type": "string", "vocabulary": ["no", "yes"]}})
    path = write_csv_rows(tmp_path / "c.csv", HEADER, _rows(["no"] * 50))
    with pytest.raises(DataError, match=r"training split holds one class of label 'churned' only \(no: \d+, yes: 0\)"):
        ingest(path, tmp_path / "out", spec=spec)


def test_a_class_with_no_training_row_is_refused_naming_it(tmp_path):
    path = write_csv_rows(tmp_path / "c.csv", HEADER, _rows(["no"] * 50 + ["yes"] * 40))
    with pytest.raises(DataError) as err:
        ingest(path, tmp_path / "out", spec=spec_from_dict(SPEC))
    assert "no row of class 'maybe' of label 'churned'" in str(err.value)
    assert "remove it from label.vocabulary in <dict>" in str(err.value)


def test_an_int_label_with_two_values_and_no_vocabulary_gets_one_warning(tmp_path, caplog):
    spec = spec_from_dict({**SPEC, "label": {"name": "churned", "type": "int"}})
    path = write_csv_rows(tmp_path / "c.csv", HEADER, _rows(["0"] * 50 + ["1"] * 30))
    with caplog.at_level(logging.WARNING, logger="mlengine.ingest"):
        ingest(path, tmp_path / "out", spec=spec)
    warnings = [r.getMessage() for r in caplog.records if "REGRESSION" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "label 'churned' is an int with only 2 distinct value(s) (0, 1)" in warnings[0]
    assert "`vocabulary: [0, 1]`" in warnings[0]
    caplog.clear()
    many = write_csv_rows(tmp_path / "m.csv", HEADER, _rows([str(v % 40) for v in range(200)]))
    with caplog.at_level(logging.WARNING, logger="mlengine.ingest"):
        ingest(many, tmp_path / "out2", spec=spec)
    assert not [r for r in caplog.records if "REGRESSION" in r.getMessage()]


def test_the_beam_engine_counts_the_classes_as_the_local_one_does(tmp_path):
    labels = ["no"] * 80 + ["yes"] * 50 + ["maybe"] * 30 + ["perhaps"] * 2
    path = write_csv_rows(tmp_path / "churn.csv", HEADER, _rows(labels, seed=2))
    local = ingest(path, tmp_path / "local", spec=spec_from_dict(SPEC)).statistics()
    beam = ingest(path, tmp_path / "beam", spec=spec_from_dict(SPEC), runner="beam").statistics()
    for scope in ("all", "train"):
        assert (beam[scope]["columns"]["churned"]["class_counts"]
                == local[scope]["columns"]["churned"]["class_counts"])
    assert [c["count"] for c in beam["all"]["columns"]["churned"]["class_counts"]] == [80, 50, 30]


def test_a_task_the_spec_does_not_say_is_refused_before_any_row_is_read(tmp_path):
    from mlengine.components.ingest.executor import run as ingest_run
    from mlengine.components.shared.featurespec import FeatureSpecError, spec_from_dict
    from tests.classification_fixtures import IRIS_LIKE_SPEC

    spec = spec_from_dict(IRIS_LIKE_SPEC, source="flowers.yaml")
    outputs = {split: str(tmp_path / split) for split in ("train", "eval", "test")}
    with pytest.raises(FeatureSpecError, match=r"^flowers\.yaml: task: this run expects 'binary', the spec's label "
                                               r"makes it 'multiclass'"):
        ingest_run(str(tmp_path / "never-read.csv"), spec, outputs, str(tmp_path / "rejects"),
                   str(tmp_path / "statistics"), task="binary")
    assert not any((tmp_path / split).exists() for split in outputs)
