"""The JSON Schema's errors read like the hand-written checks they replaced: one line, file and field."""

from __future__ import annotations

import copy

import pytest

from mlengine.components.shared.featurespec import FeatureSpecError, spec_from_dict

BASE = {
    "name": "s",
    "label": {"name": "y", "type": "float"},
    "columns": [{"name": "x", "type": "float", "range": [0, 1]}, {"name": "c", "type": "string"}],
    "derived": [{"name": "x2", "op": "product", "inputs": ["x", "x"]}],
    "features": {"numeric": ["x"], "categorical": ["c"], "bucketized": ["x"],
                 "crosses": [{"name": "xc", "inputs": ["x", "c"]}]},
}


def _set(path: list, value):
    raw = copy.deepcopy(BASE)
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


@pytest.mark.parametrize(("path", "value", "expected"), [
    (["name"], "", "s.yaml: name: must be a non-empty string"),
    (["name"], 3, "s.yaml: name: must be a non-empty string"),
    (["columns"], [], "s.yaml: columns: must be a non-empty list"),
    (["columns"], {"x": 1}, "s.yaml: columns: must be a non-empty list"),
    (["columns", 0], "x", "s.yaml: columns[0]: must be a mapping"),
    (["columns", 1, "name"], KeyError, "s.yaml: columns[1]: missing field 'name'"),
    (["columns", 0, "range"], [1], "s.yaml: columns[0].range: must be [min, max] with two finite numbers"),
    (["columns", 0, "range"], ["a", 2], "s.yaml: columns[0].range: must be [min, max] with two finite numbers"),
    (["columns", 1, "vocabulary"], [], "s.yaml: columns[1].vocabulary: must be a non-empty list"),
    (["columns", 1, "vocabulary"], [True], "s.yaml: columns[1].vocabulary[0]: every entry must be a string or"),
    (["derived", 0, "inputs"], "x", "s.yaml: derived[0].inputs: must be a list of names"),
    (["derived", 0, "inputs"], ["x"], "s.yaml: derived[0].inputs: product takes 2 inputs, got 1"),
    (["features", "numeric"], "x", "s.yaml: features.numeric: must be a list of names"),
    (["features", "colour"], [], "s.yaml: features: unknown field 'colour'; allowed: ['bucketized', 'categorical'"),
    (["features", "crosses", 0, "embedding_dim"], 0, "s.yaml: features.crosses[0].embedding_dim: must be a positive "
                                                     "integer, got 0"),
    (["embedding_dim"], 2.5, "s.yaml: embedding_dim: must be a positive integer, got 2.5"),
    (["label_transform"], "sqrt", "s.yaml: label_transform: unknown transform 'sqrt'; expected one of "
                                  "['standardize', 'log1p', 'none']"),
    (["reject_warning_share"], 0, "s.yaml: reject_warning_share: must be a number in (0, 1]"),
    (["benchmark_feature"], 3, "s.yaml: benchmark_feature: must be a feature name or null"),
])
def test_schema_errors_are_one_line_naming_file_and_field(path, value, expected):
    with pytest.raises(FeatureSpecError) as err:
        spec_from_dict(_set(path, value), source="s.yaml")
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_not_a_mapping_at_all():
    with pytest.raises(FeatureSpecError, match=r"^s\.yaml: the spec must be a mapping$"):
        spec_from_dict(["name"], source="s.yaml")


def test_the_valid_base_loads_with_the_new_keys_defaulted():
    spec = spec_from_dict(BASE, source="s.yaml")
    assert (spec.delimiter, spec.reject_warning_share, spec.label_transform) == (",", 0.05, "standardize")
    assert spec_from_dict(spec.to_dict()) == spec
