"""The Beam analyze pass against the single-process one on the same split (in-process FnApiRunner).

Exact (to float rounding): row count, moments, label, benchmark line, vocabularies. Bucket
boundaries and clip bounds: within the KLL sketch's stated rank error of the exact quantiles.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlengine.components.shared import analyze as local_analyze
from mlengine.components.shared.derived import add_derived_np
from mlengine.components.shared.featurespec import load_spec
from mlengine.components.shared.sketches import kll_rank_error
from mlengine.components.shared.transform_state import TransformState
from mlengine.components.transform.beam import analyze_beam
from mlengine.components.transform.executor import run
from mlengine.constants import TRANSFORM_FILE
from mlengine.errors import DataError, MlengineError
from mlengine.synthetic import generate_columns
from tests.model_fixtures import house_columns, house_spec, write_parquet_split

ROWS = 6000  # past the sketch's exact size (k=2000): the sketch really compacts


def _within_rank_error(data: np.ndarray, value: float, level: float) -> bool:
    ordered = np.sort(data)
    below = np.searchsorted(ordered, value, side="left") / len(ordered)
    at_or_below = np.searchsorted(ordered, value, side="right") / len(ordered)
    error = kll_rank_error()
    return below - error <= level <= at_or_below + error


@pytest.fixture(scope="module")
def taxi(tmp_path_factory):
    spec = load_spec(None)
    columns = generate_columns(ROWS, seed=5)
    split_dir = write_parquet_split(columns, spec, tmp_path_factory.mktemp("taxi") / "train", parts=3)
    local = local_analyze.analyze(str(split_dir), spec, 8)
    beam = run(split_dir, spec, 8, tmp_path_factory.mktemp("state"), runner="beam").state
    return spec, columns, local, beam


def test_same_moments_label_benchmark_as_the_single_process_pass(taxi):
    _, _, local, beam = taxi
    assert beam.rows == local.rows == ROWS
    assert beam.nbuckets == local.nbuckets
    assert beam.spec.to_dict() == local.spec.to_dict()
    assert beam.label["transform"] == local.label["transform"] == "standardize"
    assert beam.label["mean"] == pytest.approx(local.label["mean"], rel=1e-12)
    assert beam.label["std"] == pytest.approx(local.label["std"], rel=1e-9)
    assert beam.benchmark["feature"] == local.benchmark["feature"] == "distance_km"
    assert beam.benchmark["slope"] == pytest.approx(local.benchmark["slope"], rel=1e-9)
    assert beam.benchmark["intercept"] == pytest.approx(local.benchmark["intercept"], rel=1e-9)
    assert set(beam.numeric) == set(local.numeric)
    for name, expected in local.numeric.items():
        got = beam.numeric[name]
        assert set(got) == set(expected)
        raw = ("raw_mean", "raw_std") if "raw_mean" in expected else ("mean", "std")
        for key in raw:
            assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (name, key)


def test_boundaries_and_clip_bounds_within_the_sketch_error(taxi):
    spec, columns, local, beam = taxi
    values = add_derived_np(spec, {k: np.asarray(v, np.float64) for k, v in columns.items()})
    levels = np.linspace(0, 1, 9)[1:-1]
    for name in spec.bucketized:
        assert len(beam.boundaries[name]) == len(local.boundaries[name]) == len(levels)
        assert beam.boundaries[name] == sorted(beam.boundaries[name])
        for value, level in zip(beam.boundaries[name], levels, strict=True):
            assert _within_rank_error(values[name], value, level), (name, level)
    for name in spec.numeric:
        low, high = beam.numeric[name]["clip"]
        assert _within_rank_error(values[name], low, local_analyze.CLIP_QUANTILES[0])
        assert _within_rank_error(values[name], high, local_analyze.CLIP_QUANTILES[1])
        # the moments after clipping (over every row) move by a sliver of the spread at most
        expected = np.clip(values[name], low, high)
        assert beam.numeric[name]["mean"] == pytest.approx(expected.mean(), rel=1e-9, abs=1e-12)
        assert beam.numeric[name]["std"] == pytest.approx(expected.std(), rel=1e-9)
        assert abs(beam.numeric[name]["mean"] - local.numeric[name]["mean"]) <= 0.01 * local.numeric[name]["std"]


def test_vocabularies_exact_and_the_artifact_loads(tmp_path):
    spec = house_spec()
    split_dir = write_parquet_split(house_columns(ROWS, seed=8), spec, tmp_path / "train", parts=2)
    local = local_analyze.analyze(str(split_dir), spec, 4)
    beam = run(split_dir, spec, 4, tmp_path / "state", runner="beam").state
    assert beam.vocabularies == local.vocabularies
    assert beam.vocabularies["city"] and len(beam.vocabularies["city"]) == 4
    saved = json.loads((tmp_path / "state" / TRANSFORM_FILE).read_text(encoding="utf-8"))
    assert TransformState.from_dict(saved).to_dict() == beam.to_dict()
    assert beam.sparse_features() == local.sparse_features()


def test_non_finite_feature_names_the_file_on_the_beam_path(tmp_path):
    spec = load_spec(None)
    columns = generate_columns(200, seed=1)
    split_dir = write_parquet_split(columns, spec, tmp_path / "train", parts=2)
    bad = split_dir / "part-00001.parquet"
    table = pq.read_table(bad)
    lat = table.column("pickup_latitude").to_numpy().copy()
    lat[3] = np.nan
    pq.write_table(table.set_column(table.schema.get_field_index("pickup_latitude"), "pickup_latitude",
                                    pa.array(lat)), bad)
    with pytest.raises(DataError) as err:
        analyze_beam(str(split_dir), spec, 4, tmp_path / "state")
    assert str(err.value).startswith(f"{bad}: feature 'pickup_latitude' has non-finite values")
    assert "\n" not in str(err.value)


def test_unknown_runner_and_bad_nbuckets(tmp_path):
    with pytest.raises(MlengineError, match="unknown runner 'dataflow'; the runners that exist: local, beam"):
        run(tmp_path, load_spec(None), 8, tmp_path / "state", runner="dataflow")
    with pytest.raises(MlengineError, match="nbuckets must be an integer of at least 2"):
        analyze_beam(str(tmp_path), load_spec(None), 1, tmp_path / "state")
