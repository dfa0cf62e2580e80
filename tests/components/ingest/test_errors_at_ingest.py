"""Errors surface at ingest, the step that knows; delimiter hint and the ``delimiter:`` option."""

from __future__ import annotations

import logging

import pytest
import yaml

from mlengine.components.shared.featurespec import FeatureSpecError, load_spec, spec_from_dict
from mlengine.errors import DataError
from tests.ingest_fixtures import ingest, write_csv_rows

SPEC = {
    "name": "small",
    "label": {"name": "y", "type": "float", "range": [0, 100]},
    "columns": [
        {"name": "x", "type": "float", "range": [0, 10]},
        {"name": "city", "type": "string", "vocabulary": ["paris", "lyon"]},
    ],
    "features": {"numeric": ["x"], "categorical": ["city"]},
}
HEADER = ["x", "city", "y"]


def test_every_row_rejected_is_one_line_with_the_top_reasons_and_counts(tmp_path):
    rows = [["50", "paris", "1"]] * 5 + [["1", "rome", "1"]] * 3 + [["1", "paris", "-4"]] * 2 + [["1", "x"]]
    path = write_csv_rows(tmp_path / "bad.csv", HEADER, rows)
    with pytest.raises(DataError) as err:
        ingest(path, tmp_path / "out", spec=spec_from_dict(SPEC))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: 0 of 11 rows passed validation; top reasons: ")
    # most frequent first, with their counts; the fourth reason is summarised
    assert ("column 'x': outside range (5), column 'city': not in vocabulary (3), "
            "column 'y': outside range (2) and 1 more") in message
    assert "rejects.jsonl" in message


def test_a_large_rejected_share_warns_and_the_share_is_configurable(tmp_path, caplog):
    rows = [[str(x), "paris", "1"] for x in range(8)] + [["50", "paris", "1"]] * 2  # 20% rejected
    path = write_csv_rows(tmp_path / "some.csv", HEADER, rows)
    with caplog.at_level(logging.WARNING, logger="mlengine.ingest"):
        result = ingest(path, tmp_path / "a", spec=spec_from_dict(SPEC)).result
    assert result.rows_ok == 8
    [warning] = [r.getMessage() for r in caplog.records if r.name == "mlengine.ingest"]
    assert "20.0% of 10 rows rejected" in warning and "column 'x': outside range (2)" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mlengine.ingest"):
        ingest(path, tmp_path / "b", spec=spec_from_dict({**SPEC, "reject_warning_share": 0.25}))
    assert [r for r in caplog.records if r.name == "mlengine.ingest"] == []


@pytest.mark.parametrize(("delimiter", "word", "shown"), [(";", "semicolon", ";"), ("\t", "tab", "\\t")])
def test_a_one_column_header_with_another_delimiter_suggests_the_option(tmp_path, delimiter, word, shown):
    path = tmp_path / "semi.csv"
    path.write_text(delimiter.join(HEADER) + "\n" + delimiter.join(["1", "paris", "2"]) + "\n")
    with pytest.raises(DataError) as err:
        ingest(path, tmp_path / "out", spec=spec_from_dict(SPEC))
    message = str(err.value)
    assert "header is missing columns 'x', 'city', 'y'" in message
    assert f"contains {word}s: set `delimiter: \"{shown}\"` in the feature spec" in message


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_the_delimiter_option_is_honoured(tmp_path, delimiter):
    lines = [delimiter.join(HEADER)] + [delimiter.join([f"{i % 10}.5", ("paris", "lyon")[i % 2], str(i)])
                                        for i in range(40)]
    lines.append(delimiter.join(["1", '"paris"', "3"]))  # a quoted cell takes the careful path
    lines.append(delimiter.join(["1", "paris"]))  # ragged with this delimiter
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    spec = spec_from_dict({**SPEC, "delimiter": delimiter})
    run = ingest(path, tmp_path / "out", spec=spec)
    assert (run.result.rows_ok, run.result.rows_rejected) == (41, 1)
    assert run.rejects()[0]["reason"].startswith("ragged row: 2 cells, expected 3")
    assert run.statistics()["all"]["columns"]["x"]["max"] == 9.5


def test_delimiter_in_the_spec_is_validated():
    with pytest.raises(FeatureSpecError, match=r"^s\.yaml: delimiter: must be one character"):
        spec_from_dict({**SPEC, "delimiter": ";;"}, source="s.yaml")
    with pytest.raises(FeatureSpecError, match=r"^s\.yaml: delimiter: '\"' cannot be a delimiter"):
        spec_from_dict({**SPEC, "delimiter": '"'}, source="s.yaml")


def test_a_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "spec.yaml"
    text = yaml.safe_dump(SPEC, sort_keys=False).replace("name: small", "name: [small")
    path.write_text(text)
    with pytest.raises(FeatureSpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not valid YAML at line ")
    assert "column" in message and "\n" not in message
    line = int(message.split("at line ")[1].split(",")[0])
    assert 1 <= line <= len(text.splitlines())
