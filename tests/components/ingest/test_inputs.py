"""Fatal input problems (one-line DataError naming the file) and multi-file inputs."""

from __future__ import annotations

import gzip
import shutil

import pytest

from mlengine import synthetic
from mlengine.constants import SPLITS
from mlengine.errors import DataError
from tests.ingest_fixtures import ingest

HEADER = ",".join(synthetic.COLUMNS)


@pytest.fixture
def taxi_csv(tmp_path):
    path = tmp_path / "data" / "taxi.csv"
    synthetic.write_csv(path, 300, seed=9)
    return path


def _fatal(uri, tmp_path) -> str:
    with pytest.raises(DataError) as info:
        ingest(uri, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    message = _fatal(tmp_path / "nope.csv", tmp_path)
    assert message == f"{tmp_path / 'nope.csv'}: no such file"


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    message = _fatal(tmp_path / "empty.csv", tmp_path)
    assert message.startswith(f"{tmp_path / 'empty.csv'}: empty file")


def test_header_missing_a_column(tmp_path):
    (tmp_path / "wrong.csv").write_text(HEADER.replace("dayofweek", "weekday") + "\n1,2,3,4,5,6,7,8\n")
    message = _fatal(tmp_path / "wrong.csv", tmp_path)
    assert message == f"{tmp_path / 'wrong.csv'}: header is missing column 'dayofweek'"


def test_no_header_at_all(tmp_path, taxi_csv):
    lines = taxi_csv.read_text().splitlines()[1:]
    (tmp_path / "headless.csv").write_text("\n".join(lines) + "\n")
    message = _fatal(tmp_path / "headless.csv", tmp_path)
    assert message.startswith(f"{tmp_path / 'headless.csv'}: missing header: line 1 looks like data")


def test_duplicate_header_column(tmp_path):
    (tmp_path / "dup.csv").write_text(HEADER + ",hourofday\n")
    message = _fatal(tmp_path / "dup.csv", tmp_path)
    assert message == f"{tmp_path / 'dup.csv'}: header has a duplicate column 'hourofday'"


def test_folder_without_csv(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("not data")
    message = _fatal(tmp_path / "docs", tmp_path)
    assert message.startswith(f"{tmp_path / 'docs'}: folder has no CSV files")


def test_glob_matching_nothing(tmp_path, taxi_csv):
    message = _fatal(f"{taxi_csv.parent}/part-*.csv", tmp_path)
    assert message == f"{taxi_csv.parent}/part-*.csv: glob matched nothing"


def test_header_only_file_is_one_line_error_at_ingest(tmp_path):
    # it used to "succeed" here and fail in transform with an internal artifact path
    (tmp_path / "header.csv").write_text(HEADER + "\n")
    with pytest.raises(DataError) as err:
        ingest(tmp_path / "header.csv", tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'header.csv'}: no data rows after the header")
    assert "\n" not in message


def test_bad_shard_fails_before_any_output(tmp_path, taxi_csv):
    shutil.copy(taxi_csv, taxi_csv.parent / "a.csv")
    (taxi_csv.parent / "z.csv").write_text("a,b\n1,2\n")
    message = _fatal(taxi_csv.parent, tmp_path)
    assert message.startswith(f"{taxi_csv.parent / 'z.csv'}: header is missing columns")
    assert not (tmp_path / "out" / "train").exists()


def test_folder_glob_and_gzip_shards(tmp_path, taxi_csv):
    single = ingest(taxi_csv, tmp_path / "single")
    shards = tmp_path / "shards"
    shards.mkdir()
    lines = taxi_csv.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    (shards / "part-0.csv").write_text("\n".join([header, *rows[:100]]) + "\n")
    with gzip.open(shards / "part-1.csv.gz", "wt") as handle:
        handle.write("\n".join([header, *rows[100:200]]) + "\n")
    # the columns of the last shard in another order, plus an extra column that is ignored
    order = list(reversed(range(len(synthetic.COLUMNS))))
    shuffled = [",".join(["extra", *[header.split(",")[i] for i in order]])]
    shuffled += [",".join(["x", *[row.split(",")[i] for i in order]]) for row in rows[200:]]
    (shards / "part-2.csv").write_text("\n".join(shuffled) + "\n")
    (shards / "notes.txt").write_text("ignored")
    folder = ingest(shards, tmp_path / "folder")
    assert folder.result.files == [str(shards / n) for n in ("part-0.csv", "part-1.csv.gz", "part-2.csv")]
    assert folder.result.rows_ok == 300
    globbed = ingest(f"{shards}/part-[02].csv", tmp_path / "glob")
    assert globbed.result.files == [str(shards / "part-0.csv"), str(shards / "part-2.csv")]
    assert globbed.result.rows_ok == 200
    for split in SPLITS:
        assert folder.split_rows(split) == single.split_rows(split)
        assert globbed.split_rows(split) <= single.split_rows(split)
    # rejects name the shard and the line within it
    (shards / "part-3.csv").write_text(header + "\n" + rows[0] + "\n" + rows[1].replace(",", ";", 1) + "\n")
    run = ingest(shards / "part-3.csv", tmp_path / "bad")
    [item] = run.rejects()
    assert (item["file"], item["row"]) == (str(shards / "part-3.csv"), 3)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    message = _fatal(tmp_path / "broken.csv.gz", tmp_path)
    assert message.startswith(f"{tmp_path / 'broken.csv.gz'}: not a valid gzip file")
