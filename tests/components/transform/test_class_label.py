"""The analyze pass on a class label: class counts instead of label moments, on both engines."""

from __future__ import annotations

import numpy as np
import pytest

from mlengine.components.shared.analyze import analyze
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.components.transform.beam import analyze_beam
from mlengine.errors import DataError
from tests.classifier_fixtures import IRIS_LIKE_SPEC, classification_columns
from tests.model_fixtures import write_parquet_split


def test_both_engines_count_the_classes_in_vocabulary_order(tmp_path):
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    columns = classification_columns(IRIS_LIKE_SPEC, 300, seed=3)
    split = write_parquet_split(columns, spec, tmp_path / "train", parts=2)
    expected = [int(np.sum(columns["species"] == c)) for c in spec.classes]
    local = analyze(str(split), spec, 4)
    beam = analyze_beam(str(split), spec, 4, tmp_path / "state")
    for state in (local, beam):
        assert state.class_counts == expected and state.label == {"class_counts": expected, "transform": "none"}
        assert state.benchmark["class_prior"] == pytest.approx([c / 300 for c in expected])


def test_a_label_outside_the_vocabulary_names_the_file(tmp_path):
    spec = spec_from_dict(IRIS_LIKE_SPEC)
    columns = classification_columns(IRIS_LIKE_SPEC, 20)
    columns["species"][3] = "rose"
    split = write_parquet_split(columns, spec, tmp_path / "train")
    with pytest.raises(DataError, match=r"part-00000\.parquet: label 'species': value 'rose' is not one of"):
        analyze(str(split), spec, 4)
