"""Request validation against the feature spec (no TensorFlow, no server): every bad kind is named."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlengine.components.deploy.validation import RequestError, RequestValidator
from mlengine.components.shared.featurespec import load_spec, spec_from_dict

SPEC = load_spec(None)  # the taxi spec: 4 float columns with ranges, 3 int columns with ranges
GOOD = {"pickup_longitude": -73.98, "pickup_latitude": 40.75, "dropoff_longitude": -73.95,
        "dropoff_latitude": 40.78, "passenger_count": 2, "dayofweek": 3, "hourofday": 10}


def rows(count: int = 3, **changes) -> list[dict]:
    out = [dict(GOOD, pickup_latitude=40.70 + 0.01 * i) for i in range(count)]
    for key, value in changes.items():
        out[-1][key] = value
    return out


def v2_inputs(items: list[dict], **overrides) -> list:
    types = {"float": "FP32", "int": "INT64", "string": "BYTES"}
    inputs = []
    for col in SPEC.columns:
        item = {"name": col.name, "shape": [len(items)], "datatype": types[col.type],
                "data": [row[col.name] for row in items]}
        item.update(overrides.get(col.name, {}))
        inputs.append(SimpleNamespace(**item))
    return inputs


@pytest.fixture(scope="module")
def validator():
    return RequestValidator(SPEC, max_instances=50)


def test_good_v1_rows_become_typed_columns(validator):
    columns, count = validator.v1_columns({"instances": rows(3)})
    assert count == 3
    assert list(columns) == SPEC.column_names
    assert columns["pickup_latitude"].dtype == np.float32
    assert columns["passenger_count"].dtype == np.int64
    np.testing.assert_allclose(columns["pickup_latitude"], [40.70, 40.71, 40.72], rtol=1e-6)
    assert columns["hourofday"].tolist() == [10, 10, 10]


def test_integral_floats_are_accepted_for_int_columns(validator):
    columns, _ = validator.v1_columns({"instances": rows(2, passenger_count=3.0)})
    assert columns["passenger_count"].tolist() == [2, 3]
    assert columns["passenger_count"].dtype == np.int64


@pytest.mark.parametrize(("body", "field", "index", "words"), [
    ([1, 2], "instances", None, "JSON object"),
    ({}, "instances", None, "exactly one of 'instances' (rows) or 'inputs' (columns)"),
    ({"instances": rows(1), "inputs": {}}, "instances", None, "exactly one of"),
    ({"instances": {"a": 1}}, "instances", None, "must be a list"),
    ({"instances": []}, "instances", None, "empty"),
    ({"instances": rows(51)}, "instances", None, "limit of 50"),
    ({"instances": rows(2), "extra": 1}, "extra", None, "unknown top-level field"),
    ({"instances": rows(2), "signature_name": "other"}, "signature_name", None, "not served"),
    ({"instances": [GOOD, 7]}, None, 1, "expected an object"),
    ({"instances": [GOOD, {k: v for k, v in GOOD.items() if k != "hourofday"}]}, "hourofday", 1, "missing"),
    ({"instances": [GOOD, dict(GOOD, tip=1.0)]}, "tip", 1, "unknown feature"),
    ({"instances": rows(3, pickup_latitude="40.7")}, "pickup_latitude", 2, "expected a number"),
    ({"instances": rows(3, pickup_latitude=True)}, "pickup_latitude", 2, "boolean"),
    ({"instances": rows(3, pickup_latitude=None)}, "pickup_latitude", 2, "null"),
    ({"instances": rows(3, pickup_latitude=[40.7])}, "pickup_latitude", 2, "list"),
    ({"instances": rows(3, pickup_latitude=float("nan"))}, "pickup_latitude", 2, "not a finite number"),
    ({"instances": rows(3, dropoff_longitude=float("inf"))}, "dropoff_longitude", 2, "not a finite number"),
    ({"instances": rows(3, pickup_latitude=95.0)}, "pickup_latitude", 2, "outside the range [40.5, 41.0]"),
    ({"instances": rows(3, passenger_count=0)}, "passenger_count", 2, "outside the range"),
    ({"instances": rows(3, passenger_count=2.5)}, "passenger_count", 2, "expected an integer"),
    ({"instances": rows(3, hourofday=10**30)}, "hourofday", 2, "int64"),
    ({"instances": rows(3, pickup_latitude=10**400)}, "pickup_latitude", 2, "too large"),
])
def test_every_bad_v1_kind_names_field_and_index(validator, body, field, index, words):
    with pytest.raises(RequestError) as caught:
        validator.v1_columns(body)
    error = caught.value
    assert words in str(error)
    assert error.field == field
    assert error.index == index
    if index is not None:
        assert f"instances[{index}]" in str(error)
    assert "\n" not in str(error)
    assert error.to_json() == {"error": str(error), "field": field, "index": index}


def test_columnar_v1_inputs_give_the_same_columns(validator):
    row_columns, _ = validator.v1_columns({"instances": rows(3)})
    columnar = {name: [row[name] for row in rows(3)] for name in SPEC.column_names}
    columns, count = validator.v1_columns({"inputs": columnar, "signature_name": "serving_default"})
    assert count == 3
    for name in SPEC.column_names:
        assert columns[name].dtype == row_columns[name].dtype
        np.testing.assert_array_equal(columns[name], row_columns[name])


@pytest.mark.parametrize(("change", "field", "index", "words"), [
    (lambda c: c.pop("hourofday"), "hourofday", None, "inputs.hourofday: missing feature"),
    (lambda c: c.update(tip=[1, 2, 3]), "tip", None, "unknown feature"),
    (lambda c: c.update(dayofweek=3), "dayofweek", None, "expected a list"),
    (lambda c: c.update(dayofweek=[1, 2]), "dayofweek", None, "2 values, but other features have 3"),
    (lambda c: c.update(pickup_latitude=[40.7, 40.8, 99.0]), "pickup_latitude", 2, "inputs.pickup_latitude[2]: 99.0"),
    (lambda c: c.update(passenger_count=[1, True, 2]), "passenger_count", 1, "boolean"),
])
def test_bad_columnar_v1_inputs(validator, change, field, index, words):
    columnar = {name: [row[name] for row in rows(3)] for name in SPEC.column_names}
    change(columnar)
    with pytest.raises(RequestError) as caught:
        validator.v1_columns({"inputs": columnar})
    assert words in str(caught.value)
    assert (caught.value.field, caught.value.index) == (field, index)
    with pytest.raises(RequestError, match="'inputs' must be an object of columns"):
        validator.v1_columns({"inputs": [1, 2]})


def test_the_first_bad_instance_is_reported(validator):
    body = {"instances": rows(5)}
    body["instances"][1]["dayofweek"] = 9
    body["instances"][3]["dayofweek"] = 0
    with pytest.raises(RequestError, match=r"instances\[1\]\.dayofweek: 9 is outside the range \[1, 7\]"):
        validator.v1_columns(body)


def test_good_v2_inputs_become_typed_columns(validator):
    columns, count = validator.v2_columns(v2_inputs(rows(4)))
    assert count == 4
    assert columns["dayofweek"].dtype == np.int64
    assert columns["dropoff_latitude"].dtype == np.float32
    # [N, 1] shapes with nested data are accepted too
    nested = v2_inputs(rows(2), hourofday={"shape": [2, 1], "data": [[1], [2]]})
    columns, _ = validator.v2_columns(nested)
    assert columns["hourofday"].tolist() == [1, 2]


@pytest.mark.parametrize(("inputs", "field", "index", "words"), [
    (lambda: v2_inputs(rows(2))[1:], "pickup_longitude", None, "missing"),
    (lambda: [*v2_inputs(rows(2)), SimpleNamespace(name="tip", shape=[2], datatype="FP32", data=[1, 2])],
     "tip", None, "unknown feature"),
    (lambda: [*v2_inputs(rows(2)), v2_inputs(rows(2))[0]], "pickup_longitude", None, "given twice"),
    (lambda: v2_inputs(rows(2), hourofday={"datatype": "FP32"}), "hourofday", None, "INT64 or INT32"),
    (lambda: v2_inputs(rows(2), pickup_latitude={"datatype": "BYTES"}), "pickup_latitude", None, "FP32 or FP64"),
    (lambda: v2_inputs(rows(2), pickup_latitude={"shape": [3]}), "pickup_latitude", None, "does not match"),
    (lambda: v2_inputs(rows(2), pickup_latitude={"shape": [1, 2]}), "pickup_latitude", None, "[N] or [N, 1]"),
    (lambda: v2_inputs(rows(2), pickup_latitude={"data": "40.7"}), "pickup_latitude", None, "list of values"),
    (lambda: v2_inputs(rows(2), pickup_latitude={"shape": [1], "data": [40.7]}), "pickup_latitude", None,
     "other features have 2"),
    (lambda: v2_inputs(rows(3), dropoff_latitude={"data": [40.7, 41.5, 40.6]}), "dropoff_latitude", 1,
     "outside the range"),
    (lambda: v2_inputs(rows(3), dayofweek={"data": [1, "2", 3]}), "dayofweek", 1, "expected a number"),
    (lambda: v2_inputs(rows(2), pickup_latitude={"data": [40.7, math.nan]}), "pickup_latitude", 1, "finite"),
    (lambda: v2_inputs([]), "pickup_longitude", None, "empty"),
])
def test_every_bad_v2_kind_names_field(validator, inputs, field, index, words):
    with pytest.raises(RequestError) as caught:
        validator.v2_columns(inputs())
    assert words in str(caught.value)
    assert caught.value.field == field
    assert caught.value.index == index
    if index is not None:
        assert f"inputs.{field}[{index}]" in str(caught.value)


def test_string_columns_and_columns_without_range():
    spec = spec_from_dict({"name": "s", "label": {"name": "y", "type": "float"},
                           "columns": [{"name": "city", "type": "string"}, {"name": "x", "type": "float"},
                                       {"name": "n", "type": "int"}],
                           "features": {"numeric": ["x"], "categorical": ["city"]}})
    checker = RequestValidator(spec)
    columns, _ = checker.v1_columns({"instances": [{"city": "Paris", "x": 1e30, "n": 2**60},
                                                   {"city": "Rome", "x": -2, "n": -3}]})
    assert columns["city"].tolist() == ["Paris", "Rome"]
    assert columns["n"].tolist() == [2**60, -3]  # exact beyond the float64 fast path
    with pytest.raises(RequestError, match=r"instances\[1\]\.city: expected a string"):
        checker.v1_columns({"instances": [{"city": "Paris", "x": 1, "n": 1}, {"city": 3, "x": 1, "n": 1}]})
    with pytest.raises(RequestError, match=r"instances\[0\]\.x: 1e\+300 is too large for float32"):
        checker.v1_columns({"instances": [{"city": "Paris", "x": 1e300, "n": 1}]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
feature_value = st.one_of(st.floats(), st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
                          st.text(max_size=5), st.floats(min_value=40.4, max_value=41.1))
instance = st.dictionaries(st.sampled_from([*SPEC.column_names, "extra"]), feature_value, max_size=9)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(json_values, st.fixed_dictionaries({"instances": st.lists(instance, max_size=4)}),
                      st.fixed_dictionaries({"instances": st.lists(st.just(GOOD) | instance, min_size=1, max_size=4)})))
def test_fuzz_v1_bodies_either_validate_or_raise_request_error(body):
    checker = RequestValidator(SPEC)
    try:
        columns, count = checker.v1_columns(body)
    except RequestError as err:
        assert str(err) and "\n" not in str(err)
        return
    # accepted: every column is finite, typed and inside its spec range
    assert count == len(body["instances"])
    for col in SPEC.columns:
        values = columns[col.name]
        assert len(values) == count
        assert np.isfinite(values.astype(np.float64)).all()
        assert (values >= col.range[0]).all() and (values <= col.range[1]).all()


# --- the bulk path's typed decoder: never accepts what v1_columns refuses, never differs from it ---------
def same_columns(left: dict, right: dict) -> bool:
    return list(left) == list(right) and all(
        left[name].dtype == right[name].dtype and left[name].tolist() == right[name].tolist() for name in left)


def test_typed_decoder_gives_the_columns_of_the_full_checks(validator):
    for body in ({"instances": rows(5)}, {"instances": rows(1), "signature_name": "serving_default"},
                 {"inputs": {name: [row[name] for row in rows(4)] for name in SPEC.column_names}}):
        typed = validator.v1_from_json(orjson.dumps(body))
        assert typed is not None, body
        columns, count, columnar = typed
        expected, expected_count = validator.v1_columns(body)
        assert same_columns(columns, expected) and count == expected_count and columnar == ("inputs" in body)


@pytest.mark.parametrize("body", [
    {"instances": rows(2, passenger_count=3.0)},  # accepted by v1_columns, but as a conversion
    {"instances": rows(2, passenger_count=True)},
    {"instances": rows(2, pickup_latitude="40.7")},
    {"instances": rows(2, pickup_latitude=95.0)},
    {"instances": rows(2, extra=1)},
    {"instances": [{k: v for k, v in GOOD.items() if k != "dayofweek"}]},
    {"instances": []},
    {"instances": rows(51)},  # over max_instances
    {"instances": rows(1), "signature_name": "other"},
    {"instances": rows(1), "inputs": {}},
    {"inputs": {**{name: [GOOD[name]] * 2 for name in SPEC.column_names}, "hourofday": [1]}},  # ragged columns
    [GOOD],
])
def test_typed_decoder_leaves_everything_else_to_the_full_checks(validator, body):
    assert validator.v1_from_json(orjson.dumps(body)) is None


def test_typed_decoder_on_strings_unbounded_ints_and_duplicate_keys():
    spec = spec_from_dict({"name": "s", "label": {"name": "y", "type": "float"},
                           "columns": [{"name": "city", "type": "string"}, {"name": "x", "type": "float"},
                                       {"name": "n", "type": "int"}, {"name": "trip-km", "type": "float"}],
                           "features": {"numeric": ["x", "trip-km"], "categorical": ["city"]}})
    checker = RequestValidator(spec)
    body = (b'{"instances": [{"city": "Paris", "x": 1e30, "n": 1152921504606846976, "trip-km": 1}, '
            b'{"city": "Rome", "x": -2, "n": -3, "trip-km": 2.5}]}')
    columns, count, _ = checker.v1_from_json(body)
    assert same_columns(columns, checker.v1_columns(orjson.loads(body))[0]) and count == 2
    assert columns["n"].tolist() == [2**60, -3] and columns["city"].dtype == object
    assert columns["trip-km"].tolist() == [1.0, 2.5]  # a column name that is no Python identifier
    # the last of a duplicate key wins, as in orjson
    duplicate = b'{"instances": [{"city": "A", "x": 1, "x": 2, "n": 1, "trip-km": 0}]}'
    assert same_columns(checker.v1_from_json(duplicate)[0], checker.v1_columns(orjson.loads(duplicate))[0])
    for refused in (b'{"instances": [{"city": "P", "x": 1e300, "n": 1, "trip-km": 0}]}',  # too large for float32
                    b'{"instances": [{"city": "' + b"a" * 5000 + b'", "x": 1, "n": 1, "trip-km": 0}]}',
                    b'{"instances": [{"city": "P", "x": 1, "n": 9223372036854775808, "trip-km": 0}]}',
                    b'{"instances": [{"city": "P", "x": NaN, "n": 1, "trip-km": 0}]}', b'{"instances": ['):
        assert checker.v1_from_json(refused) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(json_values, st.fixed_dictionaries({"instances": st.lists(instance, max_size=4)}),
                      st.fixed_dictionaries({"instances": st.lists(st.just(GOOD) | instance, min_size=1, max_size=4)}),
                      st.fixed_dictionaries({"inputs": st.dictionaries(
                          st.sampled_from([*SPEC.column_names, "extra"]), st.lists(feature_value, max_size=3))})))
def test_fuzz_typed_decoder_accepts_only_what_the_full_checks_accept_unchanged(body):
    checker = RequestValidator(SPEC)
    typed = checker.v1_from_json(json.dumps(body).encode())  # NaN and ints past 64 bits written as they are
    if typed is None:
        return
    columns, count, _ = typed
    expected, expected_count = checker.v1_columns(body)  # raises if the typed decoder let a bad body through
    assert same_columns(columns, expected) and count == expected_count
