"""HyperParameters: one typed value, defaults in one place, fixed values checked early."""

from __future__ import annotations

import json

import pytest

from mlengine.components.shared.hyperparameters import (
    HyperParameterError,
    HyperParameters,
    explicit_values,
    parse_hidden_units,
)
from mlengine.errors import MlengineError


@pytest.mark.parametrize(("value", "expected"),
                         [("64,32", [64, 32]), (" 8 ", [8]), ([16, 4], [16, 4]), ("128, 64, 1", [128, 64, 1])])
def test_parse_hidden_units(value, expected):
    assert parse_hidden_units(value) == expected


@pytest.mark.parametrize("value", ["", "64,,32", "64,x", "0,8", "-4", [], [8, "x"], [True], 3.5, None])
def test_parse_hidden_units_rejects_bad_input(value):
    with pytest.raises(MlengineError, match="hidden_units"):
        parse_hidden_units(value)


def test_defaults_and_normalised_values():
    default = HyperParameters()
    assert default.to_dict() == {"nbuckets": 16, "hidden_units": "64,32", "learning_rate": 0.003, "batch_size": 512,
                                 "class_weight": "none"}
    custom = HyperParameters(nbuckets=8, hidden_units="128, 64", learning_rate=1, batch_size=64)
    assert custom.hidden_units == "128,64" and custom.layers == [128, 64] and isinstance(custom.learning_rate, float)


@pytest.mark.parametrize(("values", "message"), [
    ({"nbuckets": 1}, "nbuckets must be at least 2"),
    ({"nbuckets": 2.5}, "nbuckets must be an integer"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"learning_rate": 0}, "learning_rate must be a positive number"),
    ({"learning_rate": "fast"}, "learning_rate must be a positive number"),
    ({"hidden_units": "64,x"}, "hidden_units"),
    ({"epochs": 3}, "unknown hyperparameter 'epochs'"),
])
def test_bad_values_are_one_line_errors_naming_the_hyperparameter(values, message):
    with pytest.raises(HyperParameterError, match=message):
        HyperParameters.from_dict(values)
    with pytest.raises(HyperParameterError, match=message):
        explicit_values(values)


def test_kfp_struct_numbers_are_accepted_for_integer_fields():
    """A KFP dict parameter arrives as a protobuf Struct: {"nbuckets": 8} becomes 8.0."""
    assert HyperParameters.from_dict({"nbuckets": 8.0, "batch_size": 256.0}).nbuckets == 8
    assert explicit_values({"nbuckets": None, "batch_size": 256}) == {"batch_size": 256}


def test_the_artifact_round_trips_and_names_what_was_fixed(tmp_path):
    values = HyperParameters(nbuckets=8)
    path = values.save(tmp_path / "hp.json", fixed=["nbuckets"], source="tune")
    assert HyperParameters.load(path) == values
    payload = json.loads(path.read_text())
    assert payload["fixed"] == ["nbuckets"] and payload["values"]["nbuckets"] == 8
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(HyperParameterError, match=r"bad\.json: expected a JSON object"):
        HyperParameters.load(tmp_path / "bad.json")
    with pytest.raises(HyperParameterError, match=r"missing\.json: hyperparameters file not found"):
        HyperParameters.load(tmp_path / "missing.json")
