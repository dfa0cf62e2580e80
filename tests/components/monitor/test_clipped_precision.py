"""The skew monitor compares in the precision the model saw (float32) and treats values
equal to the training extremes as inside, so clipped data (point masses at both ends) and
unshifted populations raise no flag, while shifted ones are still caught."""

import re

import numpy as np
import pytest

from mlengine.components.monitor.executor import STATUS_DRIFT, compare, load_statistics
from mlengine.components.shared.featurespec import load_spec
from mlengine.synthetic import generate_columns
from tests.ingest_fixtures import ingest, write_csv_rows

SPEC = load_spec()
TRAIN_ROWS = 4000
SERVING_ROWS = 2000
UNSHIFTED_SEEDS = (201, 202, 203, 204, 205)
# coordinates clipped to a box inside the population, so both ends of these columns are point masses
# (5% of the rows each); 6 decimals as in the CSV
CLIPPED = {"pickup_longitude": (-74.012345, -73.931234), "pickup_latitude": (40.711111, 40.801234),
           "dropoff_longitude": (-74.021234, -73.921234), "dropoff_latitude": (40.701234, 40.811234)}


def population(rows: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    columns = generate_columns(rows, seed=seed, shift=shift)
    for name, (low, high) in CLIPPED.items():
        columns[name] = np.clip(np.round(columns[name], 6), low, high)
    return columns


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    root = tmp_path_factory.mktemp("clipped")
    columns = population(TRAIN_ROWS, seed=17)
    names = [col.name for col in SPEC.all_columns]
    rows = [[f"{columns[n][i]:.6f}" if SPEC.column(n).type == "float" else str(int(columns[n][i])) for n in names]
            for i in range(TRAIN_ROWS)]
    write_csv_rows(root / "train.csv", names, rows)
    doc, _ = load_statistics(ingest(root / "train.csv", root / "ingest").out / "stats")
    return doc


def served(seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Serving inputs as the serving log holds them: the CSV's 6 decimals, then float32 for float columns."""
    columns = population(SERVING_ROWS, seed=seed, shift=shift)
    out = {}
    for col in SPEC.columns:
        values = columns[col.name]
        out[col.name] = np.round(values, 6).astype(np.float32) if col.type == "float" else values
    return out


def test_the_fixture_really_has_point_masses_at_the_training_extremes(stats):
    for name, (low, high) in CLIPPED.items():
        entry = stats["train"]["columns"][name]
        assert entry["min"] == low and entry["max"] == high, name
        values = served(UNSHIFTED_SEEDS[0])[name]
        # float32 edge values are not equal to the float64 extremes: the bug's trigger
        assert np.count_nonzero(values == np.float32(low)) > 10
        assert np.count_nonzero(values == np.float32(high)) > 10
        assert float(np.float32(low)) != low or float(np.float32(high)) != high


@pytest.mark.parametrize("seed", UNSHIFTED_SEEDS)
def test_unshifted_clipped_populations_raise_no_flag(stats, seed):
    result = compare(stats, served(seed), SPEC)
    flagged = {name: entry["flags"] for name, entry in result["columns"].items() if entry["flags"]}
    assert flagged == {}, flagged
    for name in CLIPPED:
        assert result["columns"][name]["out_of_range_fraction"] == 0.0, name


def test_shifted_populations_are_still_caught(stats):
    result = compare(stats, served(301, shift=1.0), SPEC)
    assert result["status"] == STATUS_DRIFT
    assert {"hourofday"} <= set(result["columns_drifted"])


def test_values_beyond_the_training_range_by_more_than_float32_resolution_are_outside(stats):
    columns = served(UNSHIFTED_SEEDS[0])
    high = CLIPPED["dropoff_latitude"][1]
    values = columns["dropoff_latitude"].copy()
    values[:100] = np.float32(high + 0.01)  # 5% clearly outside
    columns["dropoff_latitude"] = values
    entry = compare(stats, columns, SPEC)["columns"]["dropoff_latitude"]
    assert entry["out_of_range_fraction"] == pytest.approx(100 / SERVING_ROWS)
    assert "out_of_range" in entry["flags"]


def test_integer_columns_compare_over_integer_bins_with_integer_labels(stats):
    entry = compare(stats, served(UNSHIFTED_SEEDS[0]), SPEC)["columns"]["passenger_count"]
    distribution = entry["distribution"]
    assert distribution["kind"] == "histogram"
    assert all(re.fullmatch(r"[<>] \d+|\d+(-\d+)?", label) for label in distribution["labels"]), distribution["labels"]
    assert "1" in distribution["labels"]  # one passenger: the most common value has its own bin
