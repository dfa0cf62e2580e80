"""Ingest of clean generated taxi data: counts, splits, Parquet schema, statistics."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlengine import synthetic
from mlengine.components.ingest.executor import run as run_ingest
from mlengine.components.ingest.report import render_statistics_markdown
from mlengine.components.ingest.statistics import QUANTILE_LEVELS
from mlengine.components.shared.featurespec import SplitSpec, load_spec
from mlengine.constants import SPEC_FILE, SPLIT_FRACTIONS, SPLITS
from tests.ingest_fixtures import ingest, read_csv_rows

ROWS = 4000


@pytest.fixture(scope="module")
def taxi_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("taxi") / "taxi.csv"
    counts = synthetic.write_csv(path, ROWS, seed=3)
    assert counts == {"rows": ROWS, "dirty_rows": 0}
    return path


@pytest.fixture(scope="module")
def clean_run(taxi_csv, tmp_path_factory):
    # 4,000 rows: the spec's own split.min_rows holds
    return ingest(taxi_csv, tmp_path_factory.mktemp("clean"), min_split_rows=SplitSpec().min_rows)


def test_counts_and_split_fractions(clean_run):
    result = clean_run.result
    assert result.rows_read == ROWS
    assert result.rows_ok == ROWS
    assert result.rows_rejected == 0
    assert result.reject_reasons == {}
    assert sum(result.rows_per_split.values()) == ROWS
    for split in SPLITS:
        share = result.rows_per_split[split] / ROWS
        assert abs(share - SPLIT_FRACTIONS[split]) < 0.03, (split, share)
        assert clean_run.split_table(split).num_rows == result.rows_per_split[split]
    assert clean_run.rejects() == []
    assert result.to_dict()["rows_read"] == ROWS


def test_parquet_schema_is_typed_in_spec_order(clean_run):
    spec = load_spec()
    expected_types = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    for split in SPLITS:
        parts = sorted(clean_run.split_dir(split).glob("part-*.parquet"))
        assert parts and parts[0].name == "part-00000.parquet"
        schema = pq.read_schema(parts[0])
        assert schema.names == [*spec.column_names, spec.label.name]
        for col in spec.all_columns:
            assert schema.field(col.name).type == expected_types[col.type], col.name


def test_parquet_holds_exactly_the_csv_values(clean_run, taxi_csv):
    header, rows = read_csv_rows(taxi_csv)
    spec = load_spec()
    order = [header.index(name) for name in [*spec.column_names, spec.label.name]]
    casts = [float if spec.column(name).type == "float" else int for name in [*spec.column_names, spec.label.name]]
    from_csv = sorted(tuple(cast(row[i]) for cast, i in zip(casts, order, strict=True)) for row in rows)
    from_parquet = sorted(row for split in SPLITS for row in clean_run.split_rows(split))
    assert from_parquet == from_csv


def test_split_does_not_depend_on_chunking_or_sharding(clean_run, taxi_csv, tmp_path):
    rechunked = ingest(taxi_csv, tmp_path / "small_chunks", chunk_rows=97)
    assert rechunked.result.rows_per_split == clean_run.result.rows_per_split
    for split in SPLITS:
        assert rechunked.split_rows(split) == clean_run.split_rows(split)
    # the same rows cut into shards (each with its own header), rows reversed within shards
    header, rows = read_csv_rows(taxi_csv)
    shards = tmp_path / "shards"
    shards.mkdir()
    for index in range(3):
        part = rows[index::3][::-1]
        (shards / f"part-{index}.csv").write_text(
            "\n".join([",".join(header)] + [",".join(r) for r in part]) + "\n", encoding="utf-8")
    sharded = ingest(shards, tmp_path / "sharded", chunk_rows=500)
    assert len(sharded.result.files) == 3
    for split in SPLITS:
        assert sharded.split_rows(split) == clean_run.split_rows(split)


def test_split_seed_changes_the_assignment(clean_run, taxi_csv, tmp_path):
    reseeded = ingest(taxi_csv, tmp_path / "seed7", split_seed=7)
    assert reseeded.result.rows_ok == ROWS
    assert reseeded.split_rows("train") != clean_run.split_rows("train")


def test_statistics_match_the_generator(clean_run):
    stats = clean_run.statistics()
    assert stats["all"]["rows"] == ROWS
    assert stats["train"]["rows"] == clean_run.result.rows_per_split["train"]
    columns = stats["all"]["columns"]
    assert set(columns) == set(synthetic.COLUMNS)
    day = columns["dayofweek"]
    assert day["mean"] == pytest.approx(4.0, abs=0.15)  # uniform over 1..7
    assert day["std"] == pytest.approx(2.0, abs=0.1)
    assert (day["min"], day["max"]) == (1, 7)
    assert {item["value"] for item in day["top_values"]} == set(range(1, 8))
    assert sum(item["count"] for item in day["top_values"]) == ROWS
    passengers = columns["passenger_count"]
    assert passengers["quantiles"]["p50"] == 1.0  # 70% of trips have one passenger
    assert passengers["mean"] == pytest.approx(1.64, abs=0.08)
    assert "top_values" not in columns["pickup_latitude"]  # a float is not categorical
    for name, entry in columns.items():
        assert entry["count"] == ROWS and entry["missing"] == 0
        histogram = entry["histogram"]
        # over the data's own range (not the spec's), every row counted (the sample holds them all)
        assert histogram["source"] == "sample"
        assert sum(histogram["counts"]) + histogram["underflow"] + histogram["overflow"] == ROWS, name
        width = histogram["edges"][1] - histogram["edges"][0]
        assert entry["min"] - 0.5 <= histogram["edges"][0] and histogram["edges"][-1] <= entry["max"] + width, name
        assert histogram["integer"] == (load_spec().column(name).type == "int")
        assert list(entry["quantiles"]) == list(QUANTILE_LEVELS)


def test_small_data_quantiles_are_exact(clean_run):
    stats = clean_run.statistics()
    assert stats["all"]["sample_exact"] is True
    fares = np.concatenate([clean_run.split_table(s).column("fare_amount").to_numpy() for s in SPLITS])
    for name, level in QUANTILE_LEVELS.items():
        assert stats["all"]["columns"]["fare_amount"]["quantiles"][name] == pytest.approx(np.quantile(fares, level))
    assert stats["all"]["columns"]["fare_amount"]["mean"] == pytest.approx(fares.mean())
    assert stats["all"]["columns"]["fare_amount"]["std"] == pytest.approx(fares.std())
    train = clean_run.split_table("train").column("hourofday").to_numpy()
    assert stats["train"]["columns"]["hourofday"]["mean"] == pytest.approx(train.mean())


def test_statistics_dir_carries_the_spec(clean_run):
    saved = load_spec(clean_run.out / "stats" / SPEC_FILE)
    assert saved == load_spec()


def test_run_writes_the_markdown_view_and_logs_progress(taxi_csv, tmp_path, caplog):
    view = tmp_path / "view" / "statistics.md"
    with caplog.at_level(logging.INFO, logger="mlengine.ingest"):
        done = ingest(taxi_csv, tmp_path / "out", statistics_view_path=str(view))
    assert done.result.statistics_view_path == str(view)
    text = view.read_text(encoding="utf-8")
    assert text == render_statistics_markdown(done.statistics(), done.result)
    assert f"rows read: **{ROWS:,}**" in text
    for name in synthetic.COLUMNS:
        assert f"| {name} |" in text and f"### {name}" in text
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"{ROWS:,} rows read (0 rejected) from taxi.csv" in line for line in lines)
    assert any(line.startswith(f"ingest: done: {ROWS:,} rows read") for line in lines)


def test_rerun_replaces_old_parts(taxi_csv, tmp_path):
    first = ingest(taxi_csv, tmp_path / "out")
    stale = tmp_path / "out" / "train" / "part-00042.parquet"
    stale.write_bytes(b"old")
    second = ingest(taxi_csv, tmp_path / "out")
    assert not stale.exists()
    assert second.result.rows_per_split == first.result.rows_per_split


def test_output_dirs_must_name_every_split(taxi_csv, tmp_path):
    with pytest.raises(ValueError, match="test"):
        run_ingest(str(taxi_csv), load_spec(), {"train": str(tmp_path / "a"), "eval": str(tmp_path / "b")},
                   str(tmp_path / "r"), str(tmp_path / "s"))
