"""The feature spec: the built-in taxi spec, another dataset's spec, and every validation error."""

import copy

import pytest
import yaml

from mlengine.components.shared.featurespec import FeatureSpecError, load_spec, spec_from_dict
from mlengine.constants import DEFAULT_SPEC_PATH

HOUSE_SPEC = {
    "name": "house-prices",
    "label": {"name": "price", "type": "float", "range": [0, 10_000_000]},
    "columns": [
        {"name": "area_m2", "type": "float", "range": [5, 2000]},
        {"name": "rooms", "type": "int", "range": [1, 20]},
        {"name": "city", "type": "string", "vocabulary": ["paris", "lyon", "lille"]},
        {"name": "heating", "type": "string", "default": "gas"},
    ],
    "derived": [{"name": "area_per_room", "op": "ratio", "inputs": ["area_m2", "rooms"]}],
    "features": {
        "numeric": ["area_m2", "area_per_room"],
        "bucketized": ["area_m2"],
        "categorical": ["city", "heating", "rooms"],
        "crosses": [{"name": "city_rooms", "inputs": ["city", "rooms"], "embedding_dim": 4}],
    },
    "benchmark_feature": "area_m2",
}


def test_builtin_taxi_spec_declares_the_lecture_columns():
    spec = load_spec()
    assert spec.column_names == [
        "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
        "passenger_count", "dayofweek", "hourofday",
    ]
    assert spec.label.name == "fare_amount"
    assert [c.name for c in spec.crosses] == ["pickup_cell", "dropoff_cell", "day_hour"]
    assert spec.categorical_cardinality("dayofweek") == 8  # 7 days + the out-of-range id 0
    assert spec.benchmark_feature == "distance_km"


def test_another_dataset_spec_loads_and_round_trips(tmp_path):
    path = tmp_path / "house.yaml"
    path.write_text(yaml.safe_dump(HOUSE_SPEC))
    spec = load_spec(path)
    assert spec.column("city").vocabulary == ("paris", "lyon", "lille")
    assert spec.categorical_cardinality("city") == 4
    assert spec.categorical_cardinality("heating", vocabulary=["gas", "oil"]) == 3
    again = spec_from_dict(yaml.safe_load(spec.to_yaml()))
    assert again == spec


def _broken(mutate):
    raw = copy.deepcopy(HOUSE_SPEC)
    mutate(raw)
    return raw


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.pop("label"), "missing field 'label'"),
        (lambda r: r["columns"][0].update(type="decimal"), "columns[0].type: unknown type 'decimal'"),
        (lambda r: r["columns"][0].update(range=[10, 5]), "columns[0].range: min 10 is greater than max 5"),
        (lambda r: r["columns"][0].update(range=[0, float("inf")]), "columns[0].range: must be [min, max]"),
        (lambda r: r["columns"][2].update(vocabulary=["a", "a"]), "columns[2].vocabulary: has duplicate"),
        (lambda r: r["columns"][0].update(colour="red"), "columns[0]: unknown field 'colour'"),
        (lambda r: r["derived"][0].update(op="sqrt"), "derived[0].op: unknown op 'sqrt'"),
        (lambda r: r["derived"][0].update(inputs=["area_m2", "floor"]), "'floor' is not a numeric column"),
        (lambda r: r["features"]["numeric"].append("garden"), "features.numeric: 'garden' is not a numeric column"),
        (lambda r: r["features"]["categorical"].append("nowhere"), "'nowhere' is not a raw column"),
        (lambda r: r["features"]["crosses"][0].update(inputs=["city"]), "a cross needs at least two inputs"),
        (lambda r: r["features"]["crosses"][0].update(inputs=["city", "area_per_room"]),
         "'area_per_room' is not a bucketized or categorical feature"),
        (lambda r: r["columns"].append({"name": "price", "type": "float"}), "name 'price' is used twice"),
        (lambda r: r.update(benchmark_feature="city"), "benchmark_feature: 'city' is not a numeric"),
        (lambda r: r["label"].update(type="string", range=None),
         "label.type: a regression label must be float or int; a class label needs a vocabulary"),
        (lambda r: r.update(features={}), "features: declares no feature at all"),
    ],
)
def test_invalid_specs_fail_with_one_line_naming_the_field(mutate, expected):
    with pytest.raises(FeatureSpecError) as err:
        spec_from_dict(_broken(mutate), source="house.yaml")
    message = str(err.value)
    assert expected in message
    assert message.startswith("house.yaml: ")
    assert "\n" not in message


def test_missing_and_unparsable_spec_files_name_the_file(tmp_path):
    with pytest.raises(FeatureSpecError, match=r"nope\.yaml: feature spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(FeatureSpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(bad)


def test_default_spec_file_is_packaged():
    assert DEFAULT_SPEC_PATH.is_file()


@pytest.mark.parametrize(
    ("label", "task", "classes"),
    [
        ({"name": "price", "type": "float"}, "regression", ()),
        ({"name": "price", "type": "int"}, "regression", ()),
        ({"name": "sold", "type": "string", "vocabulary": ["no", "yes"]}, "binary", ("no", "yes")),
        ({"name": "sold", "type": "int", "vocabulary": [0, 1]}, "binary", (0, 1)),
        ({"name": "band", "type": "string", "vocabulary": ["low", "mid", "high"]}, "multiclass",
         ("low", "mid", "high")),
    ],
)
def test_the_label_says_the_task_and_the_class_order(label, task, classes):
    raw = copy.deepcopy(HOUSE_SPEC)
    raw["label"] = label
    spec = spec_from_dict(raw)
    assert (spec.task, spec.classes, spec.num_classes) == (task, classes, len(classes))
    assert spec.is_classification == (task != "regression")
    again = spec_from_dict(spec.to_dict())  # the saved spec keeps the task and the class order
    assert (again.task, again.classes) == (task, classes)
    assert spec_from_dict({**raw, "task": task}).task == task  # an explicit task that agrees is accepted


@pytest.mark.parametrize(
    ("label", "task", "expected"),
    [
        ({"name": "sold", "type": "string", "vocabulary": ["no", "yes"]}, "multiclass",
         "task: 'multiclass' contradicts the label's vocabulary of 2 classes (that is 'binary')"),
        ({"name": "sold", "type": "string", "vocabulary": ["no", "yes"]}, "regression",
         "task: 'regression' contradicts the label's vocabulary of 2 classes"),
        ({"name": "price", "type": "float"}, "binary", "label.vocabulary: task 'binary' needs the label's classes"),
        ({"name": "sold", "type": "float", "vocabulary": [0, 1]}, None, "label.type: a class label"),
        ({"name": "sold", "type": "string", "vocabulary": ["yes"]}, None,
         "label.vocabulary: a class label needs at least 2"),
        ({"name": "sold", "type": "string", "vocabulary": ["no", "yes"]}, "ordinal", "task: unknown task 'ordinal'"),
    ],
)
def test_a_task_that_contradicts_the_label_is_one_line_naming_the_field(label, task, expected):
    raw = copy.deepcopy(HOUSE_SPEC)
    raw["label"] = label
    if task is not None:
        raw["task"] = task
    with pytest.raises(FeatureSpecError) as err:
        spec_from_dict(raw, source="house.yaml")
    message = str(err.value)
    assert message.startswith("house.yaml: ") and expected in message and "\n" not in message
