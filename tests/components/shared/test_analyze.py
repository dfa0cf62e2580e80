"""The analyze pass against numpy, and the preprocessing layer's ids for known inputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlengine.components.shared import analyze as logic
from mlengine.components.shared.derived import add_derived_np
from mlengine.components.shared.featurespec import MAX_CROSS_SIZE, load_spec, spec_from_dict
from mlengine.components.shared.transform_state import TransformState
from mlengine.errors import DataError, MlengineError
from mlengine.synthetic import generate_columns
from tests.model_fixtures import HOUSE_SPEC, house_columns, house_spec, write_parquet_split


@pytest.fixture(scope="module")
def taxi_split(tmp_path_factory):
    spec = load_spec(None)
    columns = generate_columns(5000, seed=11)
    split_dir = write_parquet_split(columns, spec, tmp_path_factory.mktemp("taxi") / "train", parts=3)
    return spec, columns, split_dir


def test_analyze_logs_its_progress_through_logging(taxi_split, caplog):
    spec, _, split_dir = taxi_split
    with caplog.at_level(logging.INFO, logger=logic.__name__):
        logic.analyze(str(split_dir), spec, 4)
    assert caplog.records[-1].name == logic.__name__
    assert caplog.records[-1].getMessage() == "transform: analyzed 5,000 rows from 3 file(s)"


def test_analyze_matches_numpy_on_the_whole_split(taxi_split):
    spec, columns, split_dir = taxi_split
    state = logic.analyze(str(split_dir), spec, 8)
    values = add_derived_np(spec, {k: np.asarray(v, np.float64) for k, v in columns.items()})

    assert state.rows == 5000
    assert state.nbuckets == 8
    for name in [*spec.derived_names, "pickup_latitude", "passenger_count"]:
        stats = state.numeric[name]
        assert stats["raw_mean"] == pytest.approx(values[name].mean(), rel=1e-9, abs=1e-12)
        assert stats["raw_std"] == pytest.approx(values[name].std(), rel=1e-9)
        # scaled features: clipped to the 0.1% / 99.9% quantiles, then the moments of the clipped values
        low, high = np.quantile(values[name], logic.CLIP_QUANTILES)
        assert stats["clip"] == pytest.approx([low, high], rel=1e-12)
        clipped = np.clip(values[name], low, high)
        assert stats["mean"] == pytest.approx(clipped.mean(), rel=1e-9, abs=1e-12)
        assert stats["std"] == pytest.approx(clipped.std(), rel=1e-9)
    assert state.label == {"mean": pytest.approx(columns["fare_amount"].mean(), rel=1e-9),
                           "std": pytest.approx(columns["fare_amount"].std(), rel=1e-9), "transform": "standardize"}
    quantiles = np.linspace(0, 1, 9)[1:-1]
    for name in spec.bucketized:
        # the split is smaller than the sample: boundaries are exact quantiles
        assert state.boundaries[name] == pytest.approx(np.quantile(values[name], quantiles), rel=1e-12)
        assert len(state.boundaries[name]) == 7
    slope, intercept = np.polyfit(values["distance_km"], columns["fare_amount"], 1)
    assert state.benchmark == {"feature": "distance_km", "slope": pytest.approx(slope, rel=1e-9),
                                  "intercept": pytest.approx(intercept, rel=1e-9)}
    assert state.spec == spec
    assert TransformState.from_dict(json.loads(json.dumps(state.to_dict()))) == state  # JSON round trip


def test_bounded_sample_gives_close_quantiles(taxi_split):
    spec, columns, split_dir = taxi_split
    state = logic.analyze(str(split_dir), spec, 4, sample_rows=800, seed=5)
    values = np.asarray(columns["pickup_longitude"])
    boundaries = state.boundaries["pickup_longitude"]
    # each of the 4 buckets holds about a quarter of all rows even though only 800 were sampled
    shares = np.bincount(np.searchsorted(boundaries, values, side="right"), minlength=4) / len(values)
    assert np.all(np.abs(shares - 0.25) < 0.06), shares
    # the exact boundaries are not what a sample gives
    assert boundaries != pytest.approx(list(np.quantile(values, [0.25, 0.5, 0.75])), rel=1e-9)
    # same seed, same sample
    again = logic.analyze(str(split_dir), spec, 4, sample_rows=800, seed=5)
    assert again.boundaries == state.boundaries


def test_reservoir_never_grows_past_capacity_and_samples_uniformly():
    reservoir = logic._Reservoir(["x"], capacity=500, seed=1)
    for start in range(0, 100_000, 7_000):
        reservoir.update({"x": np.arange(start, min(start + 7_000, 100_000), dtype=np.float64)})
    sample = reservoir.sample("x")
    assert reservoir.values["x"].shape == (500,)
    assert len(sample) == 500 and len(np.unique(sample)) == 500
    # uniform over the stream: mean near the middle, both halves represented
    assert abs(sample.mean() - 50_000) < 5_000
    assert 0.4 < (sample < 50_000).mean() < 0.6


def test_equal_quantiles_are_deduplicated_and_nbuckets_checked(tmp_path):
    spec = house_spec()
    columns = house_columns(400)
    columns["sqft"] = np.where(np.arange(400) < 300, 1000.0, columns["sqft"])  # 75% the same value
    split_dir = write_parquet_split(columns, spec, tmp_path / "train")
    state = logic.analyze(str(split_dir), spec, 10)
    edges = state.boundaries["sqft"]
    assert edges == sorted(set(edges)) and len(edges) < 9
    with pytest.raises(MlengineError, match="nbuckets"):
        logic.analyze(str(split_dir), spec, 1)


def test_vocabulary_is_learned_for_string_columns_only(tmp_path):
    spec = house_spec()
    split_dir = write_parquet_split(house_columns(2000), spec, tmp_path / "train")
    state = logic.analyze(str(split_dir), spec, 4)
    # most frequent first: the generator draws cities with probabilities .4/.3/.2/.1
    assert state.vocabularies == {"city": ["springfield", "shelbyville", "ogdenville", "north haverbrook"]}


def test_analyze_errors_name_the_file_and_column(tmp_path):
    spec = house_spec()
    with pytest.raises(DataError, match="no Parquet files"):
        logic.analyze(str(tmp_path), spec, 4)
    split_dir = tmp_path / "train"
    split_dir.mkdir()
    pq.write_table(pa.table({"sqft": [1.0, 2.0]}), split_dir / "part-00000.parquet")
    with pytest.raises(DataError, match=r"part-00000\.parquet: column 'rooms' is missing"):
        logic.analyze(str(split_dir), spec, 4)
    columns = house_columns(10)
    table = pa.table({**{k: v.tolist() for k, v in columns.items()}, "price": [None, *columns["price"][1:].tolist()]})
    pq.write_table(table, split_dir / "part-00000.parquet")
    with pytest.raises(DataError, match="'price' has 1 missing values"):
        logic.analyze(str(split_dir), spec, 4)


def test_save_and_load_round_trip(tmp_path, taxi_split):
    spec, _, split_dir = taxi_split
    state = logic.analyze(str(split_dir), spec, 4)
    state.save(tmp_path / "t")
    assert TransformState.load(tmp_path / "t") == state
    assert state.spec == spec
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(MlengineError, match=r"bad\.json: transform state has no 'spec'"):
        TransformState.load(tmp_path / "bad.json")


# --- preprocessing ---------------------------------------------------------------------------------
def _state_for(raw_spec: dict, boundaries: dict, vocabularies: dict, numeric: dict) -> TransformState:
    return TransformState.from_dict({
        "spec": raw_spec, "nbuckets": 4, "rows": 1, "numeric": numeric, "label": {"mean": 0.0, "std": 1.0},
        "boundaries": boundaries, "vocabularies": vocabularies,
        "benchmark": {"feature": None, "slope": 0.0, "intercept": 0.0}})


def test_preprocessing_ids_for_known_inputs():
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()

    state = _state_for(
        HOUSE_SPEC,
        boundaries={"sqft": [1000.0, 2000.0, 3000.0]},
        vocabularies={"city": ["springfield", "shelbyville"]},
        numeric={"sqft": {"mean": 2000.0, "std": 500.0}, "rooms": {"mean": 3.0, "std": 0.0},
                 "log_sqft": {"mean": 7.0, "std": 2.0}, "condition": {"mean": 2.0, "std": 1.0}},
    )
    layer = state.build_preprocessing()
    inputs = {
        "sqft": tf.constant([500.0, 1000.0, 2500.0, 9000.0]),
        "rooms": tf.constant([1, 8, 0, 9], tf.int64),  # 0 and 9 are out of the [1, 8] range
        "city": tf.constant(["springfield", "shelbyville", "atlantis", ""]),
        "condition": tf.constant([5, 1, 3, 2], tf.int64),  # 3 is not in the vocabulary [1, 2, 5]
        "style": tf.constant(["modern", "ranch", "igloo", "colonial"]),
    }
    out = {k: v.numpy() for k, v in layer(inputs).items()}

    assert out["bucketized/sqft"].tolist() == [0, 1, 2, 3]  # a boundary value goes to the upper bucket
    assert out["categorical/rooms"].tolist() == [1, 8, 0, 0]
    assert out["categorical/city"].tolist() == [1, 2, 0, 0]
    assert out["categorical/condition"].tolist() == [3, 1, 0, 2]
    assert out["categorical/style"].tolist() == [3, 1, 0, 2]
    # city has 2 learned values + OOV = 3 ids, style 3 + OOV = 4: exact cross id = city * 4 + style
    assert out["cross/city_style"].tolist() == [1 * 4 + 3, 2 * 4 + 1, 0, 0 * 4 + 2]
    sqft = np.array([500.0, 1000.0, 2500.0, 9000.0])
    expected = np.stack([(sqft - 2000) / 500, (np.log1p(sqft) - 7) / 2, (np.array([1, 8, 0, 9]) - 3) / 1.0], axis=1)
    np.testing.assert_allclose(out["numeric"], expected, rtol=1e-5)
    features = {f["key"]: f for f in state.sparse_features()}
    assert features["cross/city_style"]["cardinality"] == 12
    assert features["bucketized/sqft"]["cardinality"] == 4 and features["bucketized/sqft"]["dim"] is None


def test_large_crosses_are_hashed_into_bounded_bins():
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()

    raw = {
        "name": "wide-cross", "label": {"name": "y", "type": "float"},
        "columns": [{"name": "a", "type": "int", "range": [0, 999]}, {"name": "b", "type": "int", "range": [0, 999]}],
        "features": {"categorical": ["a", "b"], "crosses": [{"name": "ab", "inputs": ["a", "b"]}]},
    }
    spec_from_dict(raw)  # valid spec
    state = _state_for(raw, {}, {}, {"a": {"mean": 0.0, "std": 1.0}, "b": {"mean": 0.0, "std": 1.0}})
    cross = next(f for f in state.sparse_features() if f["key"] == "cross/ab")
    assert cross["hashed"] and cross["cardinality"] == MAX_CROSS_SIZE  # 1001 * 1001 ids would not fit
    layer = state.build_preprocessing()
    a = np.arange(0, 1000, dtype=np.int64)
    ids = layer({"a": tf.constant(a), "b": tf.constant(a[::-1].copy())})["cross/ab"].numpy()
    again = layer({"a": tf.constant(a), "b": tf.constant(a[::-1].copy())})["cross/ab"].numpy()
    assert ids.min() >= 0 and ids.max() < MAX_CROSS_SIZE
    assert np.array_equal(ids, again)
    assert len(np.unique(ids)) > 990  # few collisions among 1000 distinct pairs


def test_log1p_label_moments_and_outliers_clipped_in_the_model(taxi_split, tmp_path):
    """label_transform log1p: moments of log1p(label); an outlier input is clipped before z-scoring."""
    from mlengine.components.shared.tf import import_tf

    spec, columns, split_dir = taxi_split
    raw = spec.to_dict()
    raw["label_transform"] = "log1p"
    log_spec = spec_from_dict(raw)
    state = logic.analyze(str(split_dir), log_spec, 4)
    assert state.label["transform"] == "log1p"
    assert state.label["mean"] == pytest.approx(np.log1p(columns["fare_amount"]).mean(), rel=1e-9)
    tf, _ = import_tf()
    fares = tf.constant([3.0, 12.5, 80.0])
    decoded = state.decode_label(state.encode_label(fares, tf), tf).numpy()
    np.testing.assert_allclose(decoded, [3.0, 12.5, 80.0], rtol=1e-5)

    layer = state.build_preprocessing()
    base = {c.name: np.asarray(columns[c.name][:2]) for c in spec.columns}
    far = dict(base)
    far["passenger_count"] = np.asarray([6, 10_000])  # the second is an absurd outlier
    out = layer({k: tf.constant(v) for k, v in far.items()})["numeric"].numpy()
    index = list(spec.numeric).index("passenger_count")
    stats = state.numeric["passenger_count"]
    assert out[1, index] == pytest.approx((stats["clip"][1] - stats["mean"]) / stats["std"], rel=1e-5)


def test_log1p_rejects_labels_at_or_below_minus_one(tmp_path):
    spec = load_spec(None)
    columns = generate_columns(200, seed=3)
    columns["fare_amount"][7] = -1.0
    raw = spec.to_dict()
    raw["label_transform"] = "log1p"
    split_dir = write_parquet_split(columns, spec, tmp_path / "train", parts=1)
    with pytest.raises(DataError, match=r"label 'fare_amount' has value -1 <= -1"):
        logic.analyze(str(split_dir), spec_from_dict(raw), 4)
