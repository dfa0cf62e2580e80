"""The synthetic taxi generator: deterministic, the documented formula, a known noise floor."""

import csv

import numpy as np
import pytest

from mlengine.cli import main
from mlengine.components.shared.derived import add_derived_np, derived_tf
from mlengine.components.shared.featurespec import load_spec
from mlengine.synthetic import COLUMNS, DIRTY_KINDS, fare_formula, generate_columns, write_csv


def test_same_seed_same_file_and_header(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_csv(a, 500, seed=7)
    write_csv(b, 500, seed=7)
    write_csv(c, 500, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    with a.open() as handle:
        assert tuple(next(csv.reader(handle))) == COLUMNS


def test_noise_is_the_documented_floor_and_the_formula_explains_the_rest():
    columns = generate_columns(50_000, seed=3, noise_std=1.0)
    residual = columns["fare_amount"] - fare_formula(columns)
    assert residual.std() == pytest.approx(1.0, abs=0.02)
    assert abs(residual.mean()) < 0.02
    # a trip of 10 km at a quiet daytime hour costs about 2.50 + 15.60
    quiet = {k: np.array([v]) for k, v in {
        "pickup_latitude": 40.75, "pickup_longitude": -73.98, "dropoff_latitude": 40.75 + 10 / 111.0,
        "dropoff_longitude": -73.98, "passenger_count": 1, "dayofweek": 1, "hourofday": 11}.items()}
    assert fare_formula(quiet)[0] == pytest.approx(2.5 + 1.56 * 10, abs=0.05)


def test_generated_values_respect_the_default_spec_ranges():
    spec = load_spec()
    columns = generate_columns(20_000, seed=1)
    for column in spec.all_columns:
        low, high = column.range
        assert columns[column.name].min() >= low, column.name
        assert columns[column.name].max() <= high, column.name


def test_shift_moves_the_population():
    base = generate_columns(20_000, seed=1)
    shifted = generate_columns(20_000, seed=1, shift=1.0)
    spec = load_spec()
    base_km = add_derived_np(spec, base)["distance_km"].mean()
    shifted_km = add_derived_np(spec, shifted)["distance_km"].mean()
    assert shifted_km > base_km * 1.3


def test_dirty_rows_are_counted(tmp_path):
    counts = write_csv(tmp_path / "d.csv", 5000, seed=2, dirty_fraction=0.1)
    assert counts["rows"] == 5000
    assert 350 < counts["dirty_rows"] < 650
    assert len(DIRTY_KINDS) == 7


def test_numpy_and_tensorflow_derived_ops_agree():
    columns = generate_columns(1000, seed=4)
    spec = load_spec()
    expected = add_derived_np(spec, columns)
    for derived in spec.derived:
        got = derived_tf(derived.op, [columns[name] for name in derived.inputs]).numpy()
        np.testing.assert_allclose(got, expected[derived.name], rtol=1e-5, atol=1e-5)


def test_cli_generate_rejects_bad_arguments_with_one_line(tmp_path, capsys):
    assert main(["generate", "--rows", "0", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mlengine generate: error: --rows must be at least 1, got 0"
