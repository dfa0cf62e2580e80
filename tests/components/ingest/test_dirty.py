"""Row-level problems are quarantined one by one, with a reason naming the column."""

from __future__ import annotations

import pytest

from mlengine import synthetic
from mlengine.components.shared.featurespec import spec_from_dict
from tests.ingest_fixtures import ingest, read_csv_rows, write_csv_rows

# the column each generator dirt kind breaks first (in spec order); ragged rows name no column
EXPECTED_REASON = {
    "non_numeric": "column 'pickup_longitude': not a number",
    "empty_cell": "column 'passenger_count': missing value",
    "zero_coordinates": "column 'pickup_longitude': value 0.0 outside [-74.3, -73.6]",
    "nan": "column 'dropoff_longitude': NaN",
    "inf": "column 'fare_amount': infinite",
    "ragged": "ragged row: 5 cells, expected 8",
    "passengers_zero": "column 'passenger_count': value 0 outside [1, 6]",
}


def test_every_dirty_kind_is_rejected_with_its_reason(tmp_path):
    assert set(EXPECTED_REASON) == set(synthetic.DIRTY_KINDS)
    clean = synthetic.write_csv(tmp_path / "clean.csv", 40, seed=5)
    assert clean["rows"] == 40
    header, rows = read_csv_rows(tmp_path / "clean.csv")
    # every other row gets one kind of dirt, made by the generator's own function
    kinds = {}
    for offset, kind in enumerate(synthetic.DIRTY_KINDS):
        index = 2 * offset
        rows[index] = synthetic._dirty(rows[index], kind)
        kinds[index + 2] = kind  # line number: header is line 1
    path = write_csv_rows(tmp_path / "dirty.csv", header, rows)
    run = ingest(path, tmp_path / "out")
    result = run.result
    assert result.rows_read == 40
    assert result.rows_rejected == len(synthetic.DIRTY_KINDS)
    assert result.rows_ok == 40 - len(synthetic.DIRTY_KINDS)
    rejects = {item["row"]: item for item in run.rejects()}
    assert set(rejects) == set(kinds)
    lines = path.read_text(encoding="utf-8").splitlines()
    for line_number, kind in kinds.items():
        item = rejects[line_number]
        assert item["reason"].startswith(EXPECTED_REASON[kind]), (kind, item["reason"])
        assert item["file"] == str(path)
        assert item["raw"] == lines[line_number - 1]
    assert sum(result.reject_reasons.values()) == result.rows_rejected


@pytest.mark.parametrize("chunk_rows", [64, 65_536])
def test_generator_dirty_data_keeps_the_invariant(tmp_path, chunk_rows):
    counts = synthetic.write_csv(tmp_path / "dirty.csv", 5000, seed=11, dirty_fraction=0.05)
    run = ingest(tmp_path / "dirty.csv", tmp_path / "out", chunk_rows=chunk_rows)
    result = run.result
    assert result.rows_read == counts["rows"] == 5000
    assert result.rows_read == result.rows_ok + result.rows_rejected
    assert result.rows_rejected == counts["dirty_rows"] > 150
    assert sum(result.rows_per_split.values()) == result.rows_ok
    rejects = run.rejects()
    assert len(rejects) == result.rows_rejected
    assert sum(result.reject_reasons.values()) == result.rows_rejected
    lines = (tmp_path / "dirty.csv").read_text(encoding="utf-8").splitlines()
    for item in rejects:
        assert set(item) == {"file", "row", "reason", "raw"}
        assert item["raw"] == lines[item["row"] - 1]
        assert item["reason"].startswith(("column '", "ragged row"))
    stats = run.statistics()
    assert stats["all"]["rows"] == result.rows_ok
    assert stats["ingest"]["rows_rejected"] == result.rows_rejected


def test_rejects_do_not_depend_on_chunking(tmp_path):
    synthetic.write_csv(tmp_path / "dirty.csv", 1500, seed=2, dirty_fraction=0.1)
    small = ingest(tmp_path / "dirty.csv", tmp_path / "small", chunk_rows=13)
    large = ingest(tmp_path / "dirty.csv", tmp_path / "large")
    assert small.rejects() == large.rejects()
    assert small.result.reject_reasons == large.result.reject_reasons
    assert small.split_rows("eval") == large.split_rows("eval")


def test_bad_utf8_rejects_only_that_row(tmp_path):
    synthetic.write_csv(tmp_path / "clean.csv", 50, seed=1)
    lines = (tmp_path / "clean.csv").read_bytes().split(b"\r\n")
    lines[10] = lines[10].replace(b",", b",\xff\xfe", 1)  # line 11 of the file
    (tmp_path / "bad.csv").write_bytes(b"\r\n".join(lines))
    run = ingest(tmp_path / "bad.csv", tmp_path / "out")
    assert run.result.rows_read == 50
    assert run.result.rows_rejected == 1
    [item] = run.rejects()
    assert item["row"] == 11
    assert "UTF-8" in item["reason"]
    assert "\\xff\\xfe" in item["raw"]


VALUES_SPEC = {
    "name": "values",
    "label": {"name": "y", "type": "float"},
    "columns": [
        {"name": "x", "type": "float", "range": [0, 10]},
        {"name": "n", "type": "int", "range": [0, 100], "default": 7},
        {"name": "k", "type": "int"},
        {"name": "color", "type": "string", "vocabulary": ["red", "green"]},
        {"name": "tag", "type": "string", "default": "none"},
    ],
    "features": {"numeric": ["x", "n"], "categorical": ["color"]},
}
VALUE_CASES = [
    # (x, n, k, color, tag, y) -> None when accepted, else the start of the reason
    (["1.5", "3", "4", "red", "a", "1"], None),
    ([" 2 ", " 5 ", "+6", " green ", " b ", "2"], None),  # spaces and signs
    (["1e0", "3.0", "-7", "red", "", "3"], None),  # 3.0 is an integral int; tag takes its default
    (["1", "", "1_000", "red", "c", "4"], None),  # n takes its default 7; Python reads 1_000
    (["11", "3", "4", "red", "a", "1"], "column 'x': value 11 outside [0, 10]"),
    (["-0.5", "3", "4", "red", "a", "1"], "column 'x': value -0.5 outside [0, 10]"),
    (["", "3", "4", "red", "a", "1"], "column 'x': missing value"),
    (["abc", "3", "4", "red", "a", "1"], "column 'x': not a number: 'abc'"),
    (["NaN", "3", "4", "red", "a", "1"], "column 'x': NaN value"),
    (["1", "2.5", "4", "red", "a", "1"], "column 'n': non-integer value '2.5'"),
    (["1", "101", "4", "red", "a", "1"], "column 'n': value 101 outside [0, 100]"),
    (["1", "3", "0x10", "red", "a", "1"], "column 'k': not a number: '0x10'"),
    (["1", "3", "inf", "red", "a", "1"], "column 'k': infinite value 'inf'"),
    (["1", "3", "99999999999999999999", "red", "a", "1"], "column 'k': value 99999999999999999999 does not fit"),
    (["1", "3", "4", "blue", "a", "1"], "column 'color': value 'blue' is not in the vocabulary"),
    (["1", "3", "4", "", "a", "1"], "column 'color': missing value"),
    (["1", "3", "4", "red", "a", "-inf"], "column 'y': infinite value '-inf'"),
    (["1", "3", "4", "red", "a"], "ragged row: 5 cells, expected 6"),
    (["1", "3", "4", "red", "a", "1", "extra"], "ragged row: 7 cells, expected 6"),
]


@pytest.mark.parametrize("chunk_rows", [1, 1000])
def test_value_checks(tmp_path, chunk_rows):
    """Each cell problem alone; chunk_rows=1 puts every row on its own (the pyarrow fast path)."""
    spec = spec_from_dict(VALUES_SPEC)
    header = ["x", "n", "k", "color", "tag", "y"]
    path = write_csv_rows(tmp_path / "values.csv", header, [cells for cells, _ in VALUE_CASES])
    run = ingest(path, tmp_path / "out", spec=spec, chunk_rows=chunk_rows)
    rejects = {item["row"]: item["reason"] for item in run.rejects()}
    for offset, (cells, expected) in enumerate(VALUE_CASES):
        line = offset + 2
        if expected is None:
            assert line not in rejects, (cells, rejects.get(line))
        else:
            assert rejects.get(line, "").startswith(expected), (cells, rejects.get(line))
    accepted = sum(expected is None for _, expected in VALUE_CASES)
    assert run.result.rows_ok == accepted
    table = run.split_table("train").to_pylist() + run.split_table("eval").to_pylist() + \
        run.split_table("test").to_pylist()
    by_label = {row["y"]: row for row in table}
    assert by_label[2.0] == {"x": 2.0, "n": 5, "k": 6, "color": "green", "tag": "b", "y": 2.0}
    assert by_label[3.0]["n"] == 3 and by_label[3.0]["tag"] == "none"
    assert by_label[4.0]["n"] == 7 and by_label[4.0]["k"] == 1000
    stats = run.statistics()["all"]["columns"]
    assert stats["n"]["missing"] == 1 and stats["tag"]["missing"] == 1
    assert "mean" not in stats["tag"] and stats["tag"]["top_values"][0]["count"] == 1
    assert {item["value"] for item in stats["color"]["top_values"]} == {"red", "green"}


def test_quotes_blank_lines_and_line_numbers(tmp_path):
    spec = spec_from_dict(VALUES_SPEC)
    text = (
        "x,n,k,color,tag,y\n"
        '1,2,3,red,"a, quoted tag",1\n'       # line 2: ok, the comma is inside quotes
        "\n"                                   # line 3: blank, skipped
        '1,2,3,red,"unterminated,1\n'          # line 4: rejected
        '"2",2,3,"green",plain,2\r\n'          # line 5: ok, quoted number
        "\r\n"                                 # line 6: blank
        "1,2,3,red,x\ry,3\n"                   # line 7: bare CR inside a line
        "7,2,3,red,b,4"                        # line 8: ok, no final newline
    )
    (tmp_path / "q.csv").write_text(text, encoding="utf-8", newline="")
    run = ingest(tmp_path / "q.csv", tmp_path / "out", spec=spec)
    result = run.result
    assert (result.rows_read, result.rows_ok, result.rows_rejected, result.blank_lines) == (5, 3, 2, 2)
    rejects = {item["row"]: item for item in run.rejects()}
    assert set(rejects) == {4, 7}
    assert rejects[4]["raw"] == '1,2,3,red,"unterminated,1'
    assert rejects[4]["reason"].startswith("malformed CSV")
    tags = {row["tag"] for split in ("train", "eval", "test") for row in run.split_table(split).to_pylist()}
    assert tags == {"a, quoted tag", "plain", "b"}


def test_long_raw_text_is_truncated(tmp_path):
    spec = spec_from_dict(VALUES_SPEC)
    long_tag = "t" * 5000
    path = write_csv_rows(tmp_path / "long.csv", ["x", "n", "k", "color", "tag", "y"],
                          [["1", "2", "3", "purple", long_tag, "1"], ["1", "2", "3", "red", "a", "1"]])
    [item] = ingest(path, tmp_path / "out", spec=spec).rejects()
    assert len(item["raw"]) == 1000
    assert item["raw"].startswith("1,2,3,purple,ttt")


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_blank_lines_in_quote_free_data_are_skipped_and_later_line_numbers_stay_exact(tmp_path, chunk_rows, ending):
    """No quote and no bare CR: the chunks go to the typed whole-chunk parse first, which must not
    take a blank line for a row of missing values."""
    spec = spec_from_dict(VALUES_SPEC)
    text = ("x,n,k,color,tag,y\n"
            "1,2,3,red,a,1\n"          # line 2
            "\n"                       # line 3: blank
            "2,2,3,green,b,2\n"        # line 4
            "\n\n"                     # lines 5-6: blank
            "3,2,3,red,c,3\n"          # line 7
            "4,2,3,purple,d,4\n"       # line 8: rejected (not a color of the spec)
            "5,2,3,red,e,5\n")         # line 9
    (tmp_path / "b.csv").write_text(text.replace("\n", ending), encoding="utf-8", newline="")
    run = ingest(tmp_path / "b.csv", tmp_path / "out", spec=spec, chunk_rows=chunk_rows)
    result = run.result
    assert (result.rows_read, result.rows_ok, result.rows_rejected, result.blank_lines) == (5, 4, 1, 3)
    assert [item["row"] for item in run.rejects()] == [8]
    tags = {row["tag"] for split in ("train", "eval", "test") for row in run.split_table(split).to_pylist()}
    assert tags == {"a", "b", "c", "e"}
