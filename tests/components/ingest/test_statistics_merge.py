"""Ingest keeps statistics of the train split and of the other rows, and merges them for "all":
the merge must give what one accumulator fed every row gives (the same sample rows, counts and
range; moments equal up to rounding)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from mlengine.components.ingest.convert import mix64
from mlengine.components.ingest.statistics import StatisticsAccumulator
from mlengine.components.shared.featurespec import spec_from_dict
from tests.components.ingest.test_dirty import VALUES_SPEC

ROWS = 3000
CHUNK = 256


def _columns(rows: int, seed: int) -> tuple[dict, dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = {
        "x": rng.uniform(0, 10, rows),
        "n": rng.integers(0, 101, rows),
        "k": rng.integers(-50, 50, rows),
        "color": pa.array(rng.choice(["red", "green"], rows)),
        "tag": pa.array(rng.choice([f"t{i}" for i in range(40)], rows)),
        "y": rng.normal(3.0, 2.0, rows),
    }
    missing = {name: rng.random(rows) < 0.05 for name in values}
    keys = mix64(np.arange(rows, dtype=np.uint64) + np.uint64(seed))
    return values, missing, keys


def _feed(accumulator: StatisticsAccumulator, values: dict, missing: dict, keys: np.ndarray,
          rows: np.ndarray) -> None:
    for start in range(0, len(rows), CHUNK):
        part = rows[start:start + CHUNK]
        accumulator.update({name: v[part] if isinstance(v, np.ndarray) else v.take(pa.array(part))
                            for name, v in values.items()},
                           {name: m[part] for name, m in missing.items()}, keys[part])


def _assert_same(merged, direct, path=""):
    if isinstance(direct, dict):
        assert merged.keys() == direct.keys(), path
        for key in direct:
            _assert_same(merged[key], direct[key], f"{path}/{key}")
    elif isinstance(direct, list):
        assert len(merged) == len(direct), path
        for index, (left, right) in enumerate(zip(merged, direct, strict=True)):
            _assert_same(left, right, f"{path}[{index}]")
    elif isinstance(direct, float) and path.rsplit("/", 1)[-1] in ("mean", "std"):
        assert math.isclose(merged, direct, rel_tol=1e-12, abs_tol=1e-12), path
    else:
        assert merged == direct, path


@pytest.mark.parametrize("sample_size", [500, 10_000])  # a bottom-k sample smaller than the data, and all rows
def test_merge_of_disjoint_scopes_equals_one_accumulator_over_all_rows(sample_size):
    spec = spec_from_dict(VALUES_SPEC)
    values, missing, keys = _columns(ROWS, seed=3)
    in_first = np.random.default_rng(4).random(ROWS) < 0.8
    first, second = StatisticsAccumulator(spec, sample_size), StatisticsAccumulator(spec, sample_size)
    _feed(first, values, missing, keys, np.flatnonzero(in_first))
    _feed(second, values, missing, keys, np.flatnonzero(~in_first))
    direct = StatisticsAccumulator(spec, sample_size)
    _feed(direct, values, missing, keys, np.arange(ROWS))

    merged = StatisticsAccumulator(spec, sample_size).merge(first).merge(second).to_dict()
    expected = direct.to_dict()
    assert merged["rows"] == ROWS and merged["sample_rows"] == min(sample_size, ROWS)
    assert merged["columns"]["tag"]["distinct"] == 40  # value counts added, not replaced
    _assert_same(merged, expected)
    # the scopes themselves are left as they were
    assert first.to_dict()["rows"] == int(in_first.sum())


def test_merge_with_an_empty_scope_changes_nothing():
    spec = spec_from_dict(VALUES_SPEC)
    values, missing, keys = _columns(400, seed=5)
    alone = StatisticsAccumulator(spec, 100)
    _feed(alone, values, missing, keys, np.arange(400))
    merged = StatisticsAccumulator(spec, 100).merge(alone).merge(StatisticsAccumulator(spec, 100))
    _assert_same(merged.to_dict(), alone.to_dict())
