"""Batch prediction: CSV / Parquet / folders in, predictions equal to in-process predict, rejects with reasons."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlengine.components.batch_predict.executor import run
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.errors import DataError, MlengineError
from mlengine.synthetic import generate_columns, write_csv
from tests.model_fixtures import train_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("batch"), rows=1500, epochs=1)


def _read(out_dir):
    return pq.ParquetDataset(sorted(str(p) for p in out_dir.glob("predictions-*.parquet"))).read()


def test_csv_predictions_equal_in_process_predict_across_batches(tiny_model, tmp_path):
    data = tmp_path / "rows.csv"
    write_csv(data, 1000, 7)
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), keep=["hourofday"], batch_rows=300,
                            csv_output=True)
    assert result.rows_read == 1000 == result.rows_predicted and result.rows_rejected == 0
    table = _read(tmp_path / "out")
    assert table.column_names == ["row", "hourofday", "prediction"]
    assert table.column("row").to_pylist() == list(range(1000))
    written = pacsv.read_csv(data)
    columns = {name: written.column(name).to_numpy() for name in written.column_names}
    expected = load_model_dir(tiny_model)(columns)
    np.testing.assert_allclose(table.column("prediction").to_numpy(), expected, rtol=1e-5, atol=1e-4)
    # a kept feature column comes back typed as the spec says (hourofday: int), not as CSV text
    assert table.schema.field("hourofday").type == pa.int64()
    assert table.column("hourofday").to_pylist() == columns["hourofday"].tolist()
    csv_lines = (tmp_path / "out" / "predictions-00000.csv").read_text().splitlines()
    assert len(csv_lines) == 1001 and csv_lines[0] == '"row","hourofday","prediction"'
    saved = json.loads((tmp_path / "out" / "batch_prediction.json").read_text())
    assert saved["rows_read"] == saved["rows_predicted"] + saved["rows_rejected"]
    assert saved == result.as_dict()


def test_bad_rows_are_rejected_with_reasons_and_counted(tiny_model, tmp_path):
    data = tmp_path / "dirty.csv"
    write_csv(data, 50, 3)
    lines = data.read_text().splitlines()
    header = lines[0].split(",")
    def broken(line: str, column: str, value: str) -> str:
        cells = line.split(",")
        cells[header.index(column)] = value
        return ",".join(cells)
    lines[3] = broken(lines[3], "pickup_latitude", "abc")  # row 2
    lines[6] = broken(lines[6], "passenger_count", "2.5")  # row 5
    lines[9] = broken(lines[9], "dropoff_longitude", "")  # row 8
    lines[12] = broken(lines[12], "pickup_longitude", "-80.0")  # row 11: outside the spec's range
    lines[15] = broken(lines[15], "hourofday", "nan")  # row 14
    lines[18] = "1,2,3"  # row 17: ragged
    data.write_text("\n".join(lines) + "\n")
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), batch_rows=8)
    assert (result.rows_read, result.rows_predicted, result.rows_rejected) == (50, 44, 6)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    rejects.sort(key=lambda r: r["row"])
    assert [r["row"] for r in rejects] == [2, 5, 8, 11, 14, 17]
    assert rejects[5]["reason"] == "ragged row: 3 cells, the header has 8"
    reasons = [r["reason"] for r in rejects]
    assert reasons[0] == "column 'pickup_latitude': not a number: 'abc'"
    assert reasons[1] == "column 'passenger_count': not an integer: 2.5"
    assert reasons[2] == "column 'dropoff_longitude': missing value"
    assert reasons[3] == "column 'pickup_longitude': -80 is outside the range [-74.3, -73.6]"
    assert reasons[4] == "column 'hourofday': not finite: nan"
    rows = _read(tmp_path / "out").column("row").to_pylist()
    assert rows == [i for i in range(50) if i not in (2, 5, 8, 11, 14, 17)]
    # the rows after the ragged line keep their own numbers: same predictions as their raw rows
    clean = tmp_path / "clean.csv"
    write_csv(clean, 50, 3)
    written = pacsv.read_csv(clean)
    expected = load_model_dir(tiny_model)({n: written.column(n).to_numpy() for n in written.column_names})
    predicted = _read(tmp_path / "out").column("prediction").to_numpy()
    np.testing.assert_allclose(predicted, expected[rows], rtol=1e-5, atol=1e-4)


def test_parquet_folder_input_and_errors(tiny_model, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for index in range(2):
        columns = generate_columns(120, 20 + index)
        pq.write_table(pa.table(columns), folder / f"part-{index}.parquet")
    result = run(str(tiny_model), str(folder), str(tmp_path / "out"), keep=["passenger_count"],)
    assert result.rows_read == 240 and result.rows_rejected == 0
    table = _read(tmp_path / "out")
    expected = np.concatenate([load_model_dir(tiny_model)(generate_columns(120, 20 + i)) for i in range(2)])
    np.testing.assert_allclose(table.column("prediction").to_numpy(), expected, rtol=1e-5, atol=1e-4)

    no_column = tmp_path / "short.parquet"
    pq.write_table(pa.table({"pickup_latitude": [40.7]}), no_column)
    with pytest.raises(DataError, match=r"short.parquet: has no column 'pickup_longitude'"):
        run(str(tiny_model), str(no_column), str(tmp_path / "x"))
    with pytest.raises(MlengineError, match="'row'"):
        run(str(tiny_model), str(folder), str(tmp_path / "y"), keep=["row"])


def test_cli_runs_batch_predict_and_refuses_abbreviations(tiny_model, tmp_path, capsys):
    from mlengine.cli import main

    data = tmp_path / "rows.csv"
    write_csv(data, 20, 1)
    assert main(["batch-predict", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rows_read"] == 20 and printed["rows_rejected"] == 0
    with pytest.raises(SystemExit):
        main(["batch-predict", "--mod", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "p")])


def test_component_compiles_with_a_description_for_every_input(tmp_path):
    import yaml
    from kfp import compiler

    from mlengine.components.batch_predict.component import batch_predict as component

    compiler.Compiler().compile(component, str(tmp_path / "batch_predict.yaml"))
    doc = yaml.safe_load((tmp_path / "batch_predict.yaml").read_text())
    inputs = doc["root"]["inputDefinitions"]
    described = {**inputs.get("parameters", {}), **inputs.get("artifacts", {})}
    assert set(described) == {"model", "data_uri", "keep_columns", "csv_output"}
    assert all(value.get("description") for value in described.values())


def test_s3_prefix_of_csv_shards_streams_like_local_files(tiny_model, tmp_path, s3_env):
    import io

    from mlengine.components.shared import storage

    client = storage.s3_client(storage.s3_settings_from_env())
    if not client.bucket_exists("batch"):
        client.make_bucket("batch")
    write_csv(tmp_path / "all.csv", 60, 9)
    lines = (tmp_path / "all.csv").read_bytes().splitlines()
    for index, rows in enumerate((lines[1:25], lines[25:])):
        body = b"\n".join([lines[0], *rows]) + b"\n"
        client.put_object("batch", f"in/part-{index}.csv", io.BytesIO(body), len(body))
    result = run(str(tiny_model), "s3://batch/in/", str(tmp_path / "out"))
    assert result.rows_read == 60 and result.rows_rejected == 0 and len(result.files) == 2
    table = _read(tmp_path / "out")
    assert table.column("row").to_pylist() == list(range(60))  # numbered on across the two objects
    written = pacsv.read_csv(tmp_path / "all.csv")
    expected = load_model_dir(tiny_model)({n: written.column(n).to_numpy() for n in written.column_names})
    np.testing.assert_allclose(table.column("prediction").to_numpy(), expected, rtol=1e-5, atol=1e-4)


def test_rows_per_second_counts_prediction_time_not_the_model_load(tiny_model, tmp_path, monkeypatch):
    """The result's durations are differences of the clock readings run takes (a fake clock: nothing real is
    timed); the model load's readings are left out of rows_per_second."""
    from mlengine.components.batch_predict import executor

    real_load = load_model_dir
    readings: list[float] = []
    skipped = [0.0]  # what the load moves the fake clock by

    def fake_clock() -> float:  # every reading moves it by 1
        readings.append(len(readings) + skipped[0])
        return readings[-1]

    def slow_load(model_dir, *args, **kwargs):  # the load "takes" 1000 units of that clock
        model = real_load(model_dir, *args, **kwargs)
        skipped[0] += 1000.0
        return model

    monkeypatch.setattr("mlengine.components.shared.savedmodel.load_model_dir", slow_load)
    monkeypatch.setattr(executor, "_clock", fake_clock)
    data = tmp_path / "rows.csv"
    write_csv(data, 200, 4)
    result = run(str(tiny_model), str(data), str(tmp_path / "out"))
    assert len(readings) == 4  # start, after the load, prediction start, end
    start, loaded, predicting, end = readings
    assert loaded - start > skipped[0] > end - predicting  # the load is between the first two readings only
    assert (result.load_seconds, result.predict_seconds, result.seconds) == (loaded - start, end - predicting,
                                                                             end - start)
    assert result.rows_per_second == result.rows_read / (end - predicting) and result.rows_read == 200


def test_predictions_run_with_huge_pages_off_and_the_flag_is_put_back(tiny_model, tmp_path, monkeypatch):
    """Arrow's buffers come and go batch after batch: fresh huge pages would be zeroed for each (hugepages.py)."""
    import sys

    from mlengine.components.batch_predict import outputs
    from mlengine.components.shared.hugepages import huge_pages_disabled

    if not sys.platform.startswith("linux"):
        pytest.skip("prctl(PR_SET_THP_DISABLE) is Linux's")
    real_predict, seen = outputs.predict, []

    def watched(*args, **kwargs):
        seen.append(huge_pages_disabled())
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(outputs, "predict", watched)
    data = tmp_path / "rows.csv"
    write_csv(data, 300, 4)
    before = huge_pages_disabled()  # False unless a parent process turned them off
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), batch_rows=100)
    assert result.rows_predicted == 300 and seen == [True, True, True]
    assert huge_pages_disabled() is before


def test_keep_columns_typed_from_parquet_and_csv_strings_for_non_features(tiny_model, tmp_path):
    data = tmp_path / "rows.csv"
    write_csv(data, 30, 2)
    text = data.read_text().splitlines()
    text = [text[0] + ",id"] + [f"{line},k{i:03d}" for i, line in enumerate(text[1:])]
    data.write_text("\n".join(text) + "\n")
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), keep="id, pickup_latitude,passenger_count")
    assert result.kept_columns == ["id", "pickup_latitude", "passenger_count"]
    table = _read(tmp_path / "out")
    assert table.schema.field("id").type == pa.string() and table.column("id").to_pylist()[:2] == ["k000", "k001"]
    assert table.schema.field("pickup_latitude").type == pa.float32()
    assert table.schema.field("passenger_count").type == pa.int64()
    written = pacsv.read_csv(data)
    np.testing.assert_allclose(table.column("pickup_latitude").to_numpy(),
                               written.column("pickup_latitude").to_numpy().astype(np.float32))


@pytest.mark.parametrize(("threads", "prefetch"), [(1, 1), (2, 1), (4, 3)])
def test_same_predictions_and_row_order_at_any_thread_and_prefetch_setting(tiny_model, tmp_path, threads, prefetch):
    data = tmp_path / "dirty.csv"
    write_csv(data, 700, 11, dirty_fraction=0.05)
    baseline = run(str(tiny_model), str(data), str(tmp_path / "base"), batch_rows=64, threads=1, prefetch=1)
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), batch_rows=64, threads=threads,
                 prefetch=prefetch)
    assert (result.rows_read, result.rows_rejected) == (baseline.rows_read, baseline.rows_rejected)
    assert result.rows_rejected > 0
    want, got = _read(tmp_path / "base"), _read(tmp_path / "out")
    rows = got.column("row").to_numpy()
    assert (np.diff(rows) > 0).all() and rows.tolist() == want.column("row").to_pylist()
    np.testing.assert_array_equal(got.column("prediction").to_numpy(), want.column("prediction").to_numpy())
    assert (tmp_path / "out" / "rejects.jsonl").read_text() == (tmp_path / "base" / "rejects.jsonl").read_text()


@pytest.mark.parametrize("distinct_bad", [1, 3, 12])
def test_numbers_parse_the_same_with_few_or_many_distinct_bad_cells(distinct_bad):
    """The cast-and-retry path (few distinct bad cells) and the regex path (many) agree cell by cell."""
    from mlengine.components.batch_predict.executor import _parse_dirty, parse_numbers

    rng = np.random.default_rng(distinct_bad)
    cells = [f"{x:.4f}" for x in rng.normal(size=3000)]
    bad = ["", *(f"n/a-{i}" for i in range(distinct_bad - 1))]
    dirty = [int(i) for i in rng.choice(np.arange(10, len(cells)), 50, replace=False)]
    for index in dirty:
        cells[index] = bad[index % len(bad)]
    cells[7], cells[8] = "nan", "-inf"  # numbers, not finite
    values, blank, junk = parse_numbers(pa.array(cells))
    want = _parse_dirty(pa.array(cells))
    for got, expected in zip((values, blank, junk), want, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert np.isnan(values[7]) and blank.any() and junk.any() == (distinct_bad > 1)
    assert sorted(np.flatnonzero(blank | junk).tolist()) == sorted(dirty)
    # blanks around a number: the regex path, which trims them
    values, blank, junk = parse_numbers(pa.array([*cells[:5], " 2.5", "x"]))
    assert values[5] == 2.5 and not blank[5] and junk.tolist() == [False] * 6 + [True]


def _readers_counted(monkeypatch) -> list:
    """Every CSV reader batch prediction opens (one per byte range read)."""
    from mlengine.components.batch_predict import executor

    opened: list = []

    class Counted(executor._CsvReader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(kwargs.get("where", "whole"))

    monkeypatch.setattr(executor, "_CsvReader", Counted)
    return opened


def _bom_dirty_csv(path, rows: int, seed: int):
    """A generated CSV (CRLF line ends) with dirty and ragged rows, a BOM, and a ragged last line."""
    write_csv(path, rows, seed, dirty_fraction=0.05)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"1,2,3\r\n")
    return path


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_a_csv_read_in_byte_ranges_gives_what_one_reader_gives(tiny_model, tmp_path, monkeypatch, threads):
    data = _bom_dirty_csv(tmp_path / "dirty.csv", 900, 13)
    baseline = run(str(tiny_model), str(data), str(tmp_path / "base"), batch_rows=64, threads=1, keep=["hourofday"])
    opened = _readers_counted(monkeypatch)
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), batch_rows=64, threads=threads,
                 keep=["hourofday"], piece_bytes=2000)
    assert len(opened) > 10 and all(where.startswith("bytes ") for where in opened)  # it was cut
    assert (result.rows_read, result.rows_predicted, result.rows_rejected) == (
        baseline.rows_read, baseline.rows_predicted, baseline.rows_rejected)
    assert result.rows_read == 901 and result.rows_rejected > 40
    want, got = _read(tmp_path / "base"), _read(tmp_path / "out")
    assert got.equals(want)  # the same rows, kept values and predictions
    groups = {name: pq.ParquetFile(tmp_path / name / "predictions-00000.parquet").metadata for name in ("base", "out")}
    sizes = {name: [m.row_group(i).num_rows for i in range(m.num_row_groups)] for name, m in groups.items()}
    assert sizes["out"] == sizes["base"] and len(sizes["base"]) > 10  # the same batches, not one per range
    assert (tmp_path / "out" / "rejects.jsonl").read_text() == (tmp_path / "base" / "rejects.jsonl").read_text()
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects] == sorted(r["row"] for r in rejects)  # in row order
    assert rejects[-1] == {"file": str(data), "row": 900, "file_row": 900,
                           "reason": "ragged row: 3 cells, the header has 8"}
    assert sum(r["reason"].startswith("ragged row") for r in rejects) > 2


# cells of a number column, each read as text by one reader and as doubles in byte ranges
# (the quoted ones last: from the first range holding a quote, one reader reads the rest as text)
NUMBER_CELLS = ["1.5", " -73.95 ", "+40.7", ".5", "5.", "1e1", "40.7e0", "nan", "-inf", "Infinity", "1e400", "",
                "NA", "null", "N/A", "abc", "  ", "1.5e", "0x10", "4O.7", "١٢", "+-1", '""', '"40.75"']


def test_numbers_read_as_doubles_in_byte_ranges_give_what_text_gives(tiny_model, tmp_path, monkeypatch):
    from mlengine.components.batch_predict import executor

    data = tmp_path / "cells.csv"
    write_csv(data, 1200, 29)
    lines = data.read_bytes().decode().split("\r\n")
    header = lines[0].split(",")
    for row in range(len(NUMBER_CELLS) * 2):  # a float and an int column, from row 400 on (the first ranges clean)
        cells = lines[400 + row * 15].split(",")
        column = "pickup_latitude" if row % 2 == 0 else "passenger_count"
        cells[header.index(column)] = NUMBER_CELLS[row // 2]
        lines[400 + row * 15] = ",".join(cells)
    data.write_bytes("\r\n".join(lines).encode())
    baseline = run(str(tiny_model), str(data), str(tmp_path / "text"), batch_rows=64, threads=1,
                   keep=["passenger_count"])
    doubles: list[list[str]] = []  # each byte range reader's columns read as doubles

    class Recorded(executor._CsvReader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if kwargs.get("where", "").startswith("bytes "):
                doubles.append(list(kwargs.get("doubles", [])))

    monkeypatch.setattr(executor, "_CsvReader", Recorded)
    result = run(str(tiny_model), str(data), str(tmp_path / "doubles"), batch_rows=64, threads=2,
                 keep=["passenger_count"], piece_bytes=3000)
    numeric = [c.name for c in load_model_dir(tiny_model).spec.columns if c.type != "string"]
    assert doubles[0] == numeric  # the first ranges: every number column straight as doubles
    assert not {"pickup_latitude", "passenger_count"} & set(doubles[-1])  # once a range found junk: as text
    assert "dropoff_latitude" in doubles[-1]  # a column with none stays doubles
    assert (result.rows_read, result.rows_rejected) == (baseline.rows_read, baseline.rows_rejected)
    assert result.rows_rejected >= 20  # the blanks, the junk and the non-finite cells
    assert _read(tmp_path / "doubles").equals(_read(tmp_path / "text"))
    rejects = (tmp_path / "doubles" / "rejects.jsonl").read_text()
    assert rejects == (tmp_path / "text" / "rejects.jsonl").read_text()
    for reason in ["'pickup_latitude': not a number: 'NA'", "'passenger_count': missing value",
                   "'pickup_latitude': not finite: inf", "'passenger_count': not a number: '  '"]:
        assert reason in rejects


def test_gzip_and_small_csv_files_are_read_by_one_reader(tiny_model, tmp_path, monkeypatch):
    import gzip

    data = tmp_path / "rows.csv"
    write_csv(data, 400, 17, dirty_fraction=0.05)
    packed = tmp_path / "rows.csv.gz"
    packed.write_bytes(gzip.compress(data.read_bytes()))
    opened = _readers_counted(monkeypatch)
    baseline = run(str(tiny_model), str(data), str(tmp_path / "plain"), batch_rows=64, threads=4)
    assert opened == ["whole"]  # under MIN_PIECE_BYTES: not worth cutting
    result = run(str(tiny_model), str(packed), str(tmp_path / "gz"), batch_rows=64, threads=4, piece_bytes=1000)
    assert opened == ["whole", "whole"]  # a gzip stream cannot start mid-way
    assert result.rows_rejected == baseline.rows_rejected > 0
    assert _read(tmp_path / "gz").equals(_read(tmp_path / "plain"))


def test_a_bad_block_in_a_byte_range_names_the_file_and_the_range(tiny_model, tmp_path):
    data = tmp_path / "rows.csv"
    write_csv(data, 300, 19)
    lines = data.read_bytes().split(b"\r\n")
    lines[250] = b"-73.9,40.7,-73.9,40.7,1,3,\xff\xfe,8.9"  # not UTF-8: Arrow cannot convert the block
    data.write_bytes(b"\r\n".join(lines))
    with pytest.raises(DataError, match=r"rows.csv: malformed CSV after data row \d+ \(bytes \d+-\d+\)"):
        run(str(tiny_model), str(data), str(tmp_path / "out"), threads=2, piece_bytes=1000)
    with pytest.raises(DataError, match=r"rows.csv: malformed CSV after data row \d+: .*invalid UTF8"):
        run(str(tiny_model), str(data), str(tmp_path / "out"), threads=1)


def test_a_quoted_cell_spanning_a_cut_is_read_whole(tiny_model, tmp_path, monkeypatch):
    data = tmp_path / "quoted.csv"
    write_csv(data, 400, 23)
    lines = data.read_bytes().split(b"\r\n")
    lines[150] = lines[150].rsplit(b",", 1)[0] + b',"8.5\r\nkept in one cell"'  # fare_amount: not a feature
    data.write_bytes(b"\r\n".join(lines))
    content = data.read_bytes()
    header_end = content.index(b"\n") + 1
    inside = content.index(b'"8.5\r\n') + len(b'"8.5\r')  # the quoted newline: aim the first cut just before it
    baseline = run(str(tiny_model), str(data), str(tmp_path / "base"), batch_rows=64, threads=1)
    assert (baseline.rows_read, baseline.rows_rejected) == (400, 0)
    opened = _readers_counted(monkeypatch)
    result = run(str(tiny_model), str(data), str(tmp_path / "out"), batch_rows=64, threads=2,
                 piece_bytes=inside - header_end)
    assert (result.rows_read, result.rows_rejected) == (400, 0)  # not 401 rows with a ragged one
    # the first range holds the quote: one reader from there (ranges read ahead meanwhile are dropped)
    assert opened[-1] == f"from byte {header_end}" and opened.count(opened[-1]) == 1
    assert _read(tmp_path / "out").equals(_read(tmp_path / "base"))
    # a quote in a later range: the ranges before it are read in parallel, one reader from that range on
    opened.clear()
    result = run(str(tiny_model), str(data), str(tmp_path / "later"), batch_rows=64, threads=2, piece_bytes=1500)
    assert (result.rows_read, result.rows_rejected) == (400, 0)
    tail = int(opened[-1].removeprefix("from byte "))
    assert header_end < tail < inside and all(w.startswith("bytes ") for w in opened[:-1])
    assert _read(tmp_path / "later").equals(_read(tmp_path / "base"))
