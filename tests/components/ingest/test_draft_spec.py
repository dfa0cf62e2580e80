"""`mlengine spec` drafts a feature spec from a sample that loads and ingests its own data."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from mlengine import cli as mlengine_cli
from mlengine.components.ingest.draft_spec import ColumnDraft, draft_spec, widened_range, write_draft
from mlengine.components.shared.featurespec import load_spec
from mlengine.errors import MlengineError
from mlengine.synthetic import write_csv
from tests.ingest_fixtures import ingest


@pytest.fixture(scope="module")
def taxi_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("draft") / "trips.csv"
    write_csv(path, 2000, seed=5)
    return path


@pytest.fixture(scope="module")
def house_csv(tmp_path_factory):
    """Semicolons, an id column, strings with empty cells, a named target column."""
    rng = random.Random(1)
    lines = ["id;city;area;rooms;heating;year;price"]
    for i in range(600):
        city = rng.choice(["paris", "lyon", "lille"])
        area = round(rng.uniform(20, 200), 1)
        lines.append(f"h{i:05d};{city};{area};{rng.randint(1, 6)};{rng.choice(['gas', 'oil', ''])};"
                     f"{rng.randint(1900, 2020)};{round(area * 3000 + rng.gauss(0, 5000), 2)}")
    path = tmp_path_factory.mktemp("draft") / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_taxi_draft_has_the_right_types_label_and_ranges(taxi_csv, tmp_path):
    out = tmp_path / "spec.yaml"
    summary = write_draft(str(taxi_csv), out)
    spec = load_spec(out)
    assert summary["label"] == spec.label.name == "fare_amount"  # a target-like name
    types = {c.name: c.type for c in spec.columns}
    assert types == {"pickup_longitude": "float", "pickup_latitude": "float", "dropoff_longitude": "float",
                     "dropoff_latitude": "float", "passenger_count": "int", "dayofweek": "int", "hourofday": "int"}
    assert spec.column("dayofweek").range == (1, 7) and spec.column("hourofday").range == (0, 23)
    assert set(spec.categorical) == {"passenger_count", "dayofweek", "hourofday"}
    assert "pickup_latitude" in spec.numeric and spec.benchmark_feature in spec.numeric
    text = out.read_text()
    assert "# bucketized: [" in text and "# crosses:" in text  # suggestions stay comments
    # the data the spec was drafted from passes its own spec, with the statistics inside the ranges
    run = ingest(taxi_csv, tmp_path / "ingest", spec=spec)
    assert run.result.rows_rejected == 0 and run.result.rows_ok == 2000
    for col in spec.columns:
        stats = run.statistics()["all"]["columns"][col.name]
        low, high = col.range
        assert low <= stats["min"] and stats["max"] <= high, col.name
        if col.type == "float":  # a margin on both sides
            assert low < stats["min"] and stats["max"] < high, col.name


def test_house_draft_detects_delimiter_identifier_vocabulary_and_defaults(house_csv, tmp_path):
    text, summary = draft_spec(str(house_csv))
    assert summary["delimiter"] == ";" and summary["label"] == "price" and summary["left_out"] == ["id"]
    raw = yaml.safe_load(text)
    assert raw["delimiter"] == ";"
    columns = {c["name"]: c for c in raw["columns"]}
    assert "id" not in columns  # identifiers are not features and clients need not send them
    assert set(columns["city"]["vocabulary"]) == {"paris", "lyon", "lille"}
    assert columns["heating"]["default"] == "missing" and "missing" in columns["heating"]["vocabulary"]
    assert columns["year"]["type"] == "int" and "year" in raw["features"]["numeric"]  # 121 values: numeric
    assert raw["benchmark_feature"] == "area"
    out = tmp_path / "house.yaml"
    out.write_text(text)
    run = ingest(house_csv, tmp_path / "ingest", spec=load_spec(out))
    assert (run.result.rows_ok, run.result.rows_rejected) == (600, 0)


def test_the_label_can_be_chosen_and_a_string_label_is_a_class_label(house_csv):
    _, summary = draft_spec(str(house_csv), label="area")
    assert summary["label"] == "area" and summary["task"] == "regression"
    text, summary = draft_spec(str(house_csv), label="city")
    assert summary["task"] == "multiclass" and summary["classes"] == ["lille", "lyon", "paris"]  # sorted
    label_line = next(line for line in text.splitlines() if line.startswith("label:"))
    assert "a class label (multiclass, 3 classes): vocabulary SORTED" in label_line
    with pytest.raises(MlengineError, match=r"--label 'id': a string label is a class label, and this one has more"):
        draft_spec(str(house_csv), label="id")
    with pytest.raises(MlengineError, match=r"--label 'nope': not a column of .*houses\.csv"):
        draft_spec(str(house_csv), label="nope")


def _survival_csv(path, label_values=("0", "1")):
    rng = random.Random(3)
    lines = ["passenger_id,age,fare,sex,survived"]
    for i in range(300):
        sex = rng.choice(["male", "female"])
        fare = round(rng.uniform(5, 100), 2)
        alive = (sex == "female") != (rng.random() < 0.2)
        lines.append(f"p{i:04d},{rng.randint(1, 80)},{fare},{sex},{label_values[int(alive)]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_int_label_with_two_values_is_drafted_as_a_binary_class_label_and_trains_as_one(tmp_path):
    path = _survival_csv(tmp_path / "titanic.csv")
    text, summary = draft_spec(str(path))
    assert summary["label"] == "survived" and summary["task"] == "binary" and summary["classes"] == [0, 1]
    raw = yaml.safe_load(text)
    assert raw["label"] == {"name": "survived", "type": "int", "vocabulary": [0, 1]}
    label_line = next(line for line in text.splitlines() if line.startswith("label:"))
    assert "a class label (binary): vocabulary SORTED" in label_line and "other labels are rejected" in label_line
    out = tmp_path / "spec.yaml"
    out.write_text(text)
    spec = load_spec(out)
    assert spec.is_classification and spec.classes == (0, 1)
    run = ingest(path, tmp_path / "ingest", spec=spec)
    assert run.result.rows_rejected == 0
    assert sum(c["count"] for c in run.statistics()["all"]["columns"]["survived"]["class_counts"]) == 300


def test_a_string_label_is_suggested_by_its_name_and_a_binary_one_gets_a_benchmark_feature(tmp_path):
    path = _survival_csv(tmp_path / "t.csv", label_values=("no", "yes"))
    text, summary = draft_spec(str(path))
    assert summary["label"] == "survived" and summary["classes"] == ["no", "yes"]
    raw = yaml.safe_load(text)
    assert raw["label"]["vocabulary"] == ["no", "yes"] and raw["label"]["type"] == "string"
    assert "sex" in raw["features"]["categorical"] and raw["benchmark_feature"] in ("age", "fare")


def test_an_int_label_with_many_values_stays_a_regression_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,rooms\n" + "".join(f"{i},{i % 20}\n" for i in range(200)))
    text, summary = draft_spec(str(path), label="rooms")
    assert summary["task"] == "regression"
    assert "20 distinct values: a regression label (give it a vocabulary" in text


@pytest.mark.parametrize(("low", "high", "kind", "expected"), [
    (21.0, 199.1, "float", [3, 217]),  # 10% of the span each side, 3 significant digits
    (0.5, 80.0, "float", [0, 88]),  # never negative data stays never negative
    (-3.0, 7.0, "int", [-4, 8]),
    (0.00001, 0.00003, "float", [0.000008, 0.000032]),
])
def test_widened_ranges(low, high, kind, expected):
    draft = ColumnDraft("x", kind, minimum=low, maximum=high)
    assert widened_range(draft) == pytest.approx(expected)


def test_cli_writes_the_draft_and_refuses_to_overwrite_an_edited_spec(taxi_csv, tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    assert mlengine_cli.main(["spec", "--data", str(taxi_csv), "--out", str(out), "--label", "fare_amount"]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    assert load_spec(out).label.name == "fare_amount"
    assert mlengine_cli.main(["spec", "--data", str(taxi_csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mlengine spec: error: {out}: already exists (your edits?); pass --force to overwrite"
    assert mlengine_cli.main(["spec", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "b.yaml")]) == 2
    assert "none.csv" in capsys.readouterr().err


def test_nan_cells_keep_a_column_numeric_and_an_empty_column_is_left_out(tmp_path):
    lines = ["a,b,gone,y"] + [f"{i % 7}.5,{'NaN' if i % 10 == 0 else i},,{i}" for i in range(200)]
    path = tmp_path / "nan.csv"
    path.write_text("\n".join(lines) + "\n")
    text, summary = draft_spec(str(path), label="y")
    columns = {c["name"]: c for c in yaml.safe_load(text)["columns"]}
    assert columns["b"]["type"] == "int" and "20 NaN/inf cells" in text
    assert "gone" not in columns and summary["left_out"] == ["gone"]


def test_a_sorted_file_gets_ranges_vocabularies_and_types_from_every_row_not_the_sample(tmp_path):
    # sorted by the label, as diamonds.csv is by price: its first rows alone would miss the top end
    lines = ["grade,kind,size,price"]
    for i in range(3000):
        kind = "rare" if i == 2990 else ("a", "b")[i % 2]
        size = f"{i / 7:.2f}" if i > 2900 else str(i // 10)  # fractions only near the end
        lines.append(f"{i % 5},{kind},{size},{i * 3 + 100}")
    path = tmp_path / "sorted.csv"
    path.write_text("\n".join(lines) + "\n")
    text, summary = draft_spec(str(path), sample_rows=100)
    raw = yaml.safe_load(text)
    columns = {c["name"]: c for c in raw["columns"]}
    assert summary["label"] == "price" and raw["label"]["range"][1] >= 2999 * 3 + 100
    assert "rare" in columns["kind"]["vocabulary"]
    assert columns["size"]["type"] == "float"
    out = tmp_path / "spec.yaml"
    out.write_text(text)
    run = ingest(path, tmp_path / "ingest", spec=load_spec(out))
    assert (run.result.rows_ok, run.result.rows_rejected) == (3000, 0)


def test_a_coordinate_named_y_is_not_taken_for_the_label_when_a_price_is_there(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,y,z,price\n" + "".join(f"{i},{i + 1},{i + 2},{i * 10}\n" for i in range(50)))
    assert draft_spec(str(path))[1]["label"] == "price"
