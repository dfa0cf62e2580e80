"""Splits that mean something: each split's size and distinct rows reported, a lumpy or tiny split
refused with the reason and the fix, a key column or the row position as what is hashed, the same
split on every engine and worker count."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import numpy as np
import pytest
import yaml

from mlengine.components.ingest.splits import DISTINCT_K, DistinctSketch
from mlengine.components.shared.featurespec import FeatureSpecError, spec_from_dict
from mlengine.constants import SPLITS
from mlengine.errors import DataError
from tests.ingest_fixtures import ingest, write_csv_rows

SPEC = {
    "name": "churn",
    "label": {"name": "y", "type": "float"},
    "columns": [{"name": "customer_id", "type": "int"}, {"name": "x", "type": "float"}],
    "features": {"numeric": ["x"]},
}
HEADER = ["customer_id", "x", "y"]
MIN_ROWS = 10  # the spec's default split.min_rows


def _spec(**split):
    return spec_from_dict({**SPEC, "split": split} if split else SPEC)


def _customers(path, customers: int, rows_each: int, seed: int = 1):
    """``rows_each`` distinct rows per customer, shuffled."""
    rng = random.Random(seed)
    rows = [[str(c), f"{rng.random():.6f}", f"{rng.random():.6f}"] for c in range(customers) for _ in range(rows_each)]
    rng.shuffle(rows)
    return write_csv_rows(path, HEADER, rows)


def _copies(path, distinct: int = 24, total: int = 1316, seed: int = 2):
    """The issue's public dataset in miniature: ``total`` rows, only ``distinct`` of them different."""
    rng = random.Random(seed)
    base = [[str(i), f"{rng.random():.6f}", f"{rng.random():.6f}"] for i in range(distinct)]
    return write_csv_rows(path, HEADER, [base[rng.randrange(distinct)] for _ in range(total)])


def _split_tuples(run, split):
    return [tuple(row.values()) for row in run.split_table(split).to_pylist()]


def test_mostly_copies_is_an_error_naming_the_split_the_distinct_rows_and_the_fixes(tmp_path):
    path = _copies(tmp_path / "copies.csv")
    with pytest.raises(DataError) as err:
        ingest(path, tmp_path / "out", spec=_spec(), min_split_rows=MIN_ROWS)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: the ") and "of 1,316 rows" in message
    assert "but only " in message and "the data has only 24 distinct rows" in message
    assert "identical rows always share a split" in message
    assert "split: {key: COLUMN}" in message and "split: {duplicates: by_position}" in message


def test_by_position_spreads_the_copies_and_passes(tmp_path, caplog):
    path = _copies(tmp_path / "copies.csv")
    with caplog.at_level(logging.INFO, logger="mlengine.ingest"):
        run = ingest(path, tmp_path / "out", spec=_spec(duplicates="by_position"), min_split_rows=MIN_ROWS)
    rows = run.result.rows_per_split
    assert all(abs(rows[s] / 1316 - share) < 0.04 for s, share in zip(SPLITS, (0.8, 0.1, 0.1), strict=True)), rows
    # copies of one row now sit in several splits: the leakage this choice accepts
    assert set(_split_tuples(run, "train")) & set(_split_tuples(run, "test"))
    assert run.result.distinct_per_split["test"] <= 24 < rows["test"]
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest: splits")]
    assert line.startswith("ingest: splits by row position: train ")
    unique = run.result.distinct_per_split["test"]
    assert f"test {rows['test']:,} rows (" in line and "intended 10%" in line
    assert f"{unique:,} distinct, {100 * unique / rows['test']:.0f}%)" in line


def test_a_key_keeps_each_customers_rows_in_one_split(tmp_path):
    path = _customers(tmp_path / "customers.csv", customers=300, rows_each=5)
    run = ingest(path, tmp_path / "out", spec=_spec(key="customer_id"), min_split_rows=MIN_ROWS)
    seen: dict[str, str] = {}
    for split in SPLITS:
        for customer in run.split_table(split).column("customer_id").to_pylist():
            assert seen.setdefault(customer, split) == split, customer
    assert len(seen) == 300
    # without the key the same customers are spread over the splits (rows are all distinct)
    plain = ingest(path, tmp_path / "plain", spec=_spec(), min_split_rows=MIN_ROWS)
    owners = {}
    for split in SPLITS:
        for customer in plain.split_table(split).column("customer_id").to_pylist():
            owners.setdefault(customer, set()).add(split)
    assert any(len(splits) > 1 for splits in owners.values())


def test_a_key_with_few_values_is_a_lumpy_split_and_an_error(tmp_path):
    path = _customers(tmp_path / "few.csv", customers=4, rows_each=300)
    with pytest.raises(DataError, match=r"split by key 'customer_id' and a few keys hold most rows; fix: a key"):
        ingest(path, tmp_path / "out", spec=_spec(key="customer_id"), min_split_rows=MIN_ROWS)


def test_a_handful_of_evaluation_rows_is_an_error_unless_the_spec_lowers_min_rows(tmp_path):
    path = _customers(tmp_path / "small.csv", customers=60, rows_each=1)
    with pytest.raises(DataError, match=r"split has \d+ of 60 rows .*: fewer than split\.min_rows 10, too few to "
                                        r"evaluate on; fix: more data, or a lower split\.min_rows in the spec"):
        ingest(path, tmp_path / "out", spec=_spec(), min_split_rows=MIN_ROWS)
    run = ingest(path, tmp_path / "ok", spec=_spec(min_rows=0))
    assert sum(run.result.rows_per_split.values()) == 60


def test_statistics_record_the_distinct_rows_of_every_split(tmp_path):
    path = _copies(tmp_path / "copies.csv", distinct=200, total=1000)
    run = ingest(path, tmp_path / "out", spec=_spec(duplicates="by_position"))
    recorded = run.statistics()["ingest"]["distinct_per_split"]
    assert recorded == run.result.distinct_per_split
    for split in SPLITS:
        assert recorded[split] == len(set(_split_tuples(run, split)))


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path):
    path = _copies(tmp_path / "copies.csv")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    done = subprocess.run([sys.executable, "-m", "mlengine.cli", "ingest", "--data", str(path), "--spec", str(spec),
                           "--out", str(tmp_path / "out"), "--workers", "1"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("mlengine ingest: error: ")]
    assert "distinct rows" in line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("split", [{"key": "customer_id"}, {"duplicates": "by_position"}])
def test_every_worker_count_and_beam_split_alike(tmp_path, split):
    """Byte ranges cut mid-file (small pieces, 2 and 4 workers) and Beam's whole files: the same rows per split."""
    data = tmp_path / "data"
    _customers(data / "a.csv", customers=400, rows_each=4, seed=3)
    _copies(data / "b.csv", distinct=50, total=300, seed=4)
    spec = _spec(**split)
    runs = {workers: ingest(data, tmp_path / f"w{workers}", spec=spec, workers=workers,
                            piece_bytes=2048 if workers > 1 else 0) for workers in (1, 2, 4)}
    runs["beam"] = ingest(data, tmp_path / "beam", spec=spec, runner="beam")
    for split_name in SPLITS:
        expected = sorted(_split_tuples(runs[1], split_name))
        for name, run in runs.items():
            assert sorted(_split_tuples(run, split_name)) == expected, (name, split_name)
    assert runs["beam"].result.distinct_per_split == runs[1].result.distinct_per_split
    assert json.loads((runs[4].out / "stats" / "statistics.json").read_text())["ingest"]["distinct_per_split"] == \
        runs[1].result.distinct_per_split


def test_the_distinct_sketch_is_exact_below_k_and_close_past_it_whatever_the_merge_order():
    rng = np.random.default_rng(5)
    small = rng.integers(0, 2**63, 1000, dtype=np.uint64)
    assert DistinctSketch().update(np.concatenate([small, small[:300]])).estimate() == 1000
    large = rng.integers(0, 2**63, 50_000, dtype=np.uint64) * np.uint64(2)  # uniform 64-bit keys
    parts = np.array_split(large, 7)
    forward = DistinctSketch()
    for part in parts:
        forward.merge(DistinctSketch().update(part))
    backward = DistinctSketch()
    for part in reversed(parts):
        backward.update(part)
    assert forward.estimate() == backward.estimate()
    assert abs(forward.estimate() - 50_000) < 4 * 50_000 / np.sqrt(DISTINCT_K)


@pytest.mark.parametrize(("split", "message"), [
    ({"key": "nope"}, r"split\.key: 'nope' is not a raw column"),
    ({"key": "y"}, r"split\.key: 'y' is not a raw column \(the label cannot be the key\)"),
    ({"key": "customer_id", "duplicates": "by_position"}, r"split\.duplicates: 'by_position' does nothing with"),
    ({"duplicates": "apart"}, r"split\.duplicates: unknown choice 'apart'"),
    ({"min_rows": -1}, r"split\.min_rows: must be an integer >= 0"),
])
def test_bad_split_options_are_one_line_naming_the_field(split, message):
    with pytest.raises(FeatureSpecError, match=message):
        _spec(**split)


def test_the_split_choice_survives_the_saved_spec():
    spec = _spec(key="customer_id", min_rows=50)
    assert spec_from_dict(yaml.safe_load(spec.to_yaml())) == spec
    assert "split" not in _spec().to_dict()  # the defaults are not written out
