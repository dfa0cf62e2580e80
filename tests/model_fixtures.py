"""Build small trained models for tests (transform, train, evaluate, serving, tuning...).

Data is written straight to Parquet with pyarrow, so these helpers do not depend on the ingest
component. Layout under ``workdir``: ``data/{train,eval,test}/part-*.parquet``, ``transform/``
(transform.json) and ``model/`` (serving/, transform.json, feature_spec.yaml, history.json,
checkpoints/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlengine.constants import PARQUET_PART_PATTERN, SPLIT_FRACTIONS, SPLITS


def write_parquet_split(columns: dict[str, np.ndarray], spec, split_dir: Path, parts: int = 1) -> Path:
    """Write numpy columns as typed Parquet parts (float64 / int64 / string), like ingest does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    split_dir.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(columns.values())))
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    for index in range(parts):
        start, stop = bounds[index], bounds[index + 1]
        table = pa.table({
            col.name: pa.array(np.asarray(columns[col.name][start:stop]).tolist() if col.type == "string"
                               else columns[col.name][start:stop], type=types[col.type])
            for col in spec.all_columns
        })
        pq.write_table(table, split_dir / PARQUET_PART_PATTERN.format(index=index))
    return split_dir


def write_splits(columns: dict[str, np.ndarray], spec, data_dir: Path, train_parts: int = 2) -> dict[str, Path]:
    """Split numpy columns 80/10/10 in order and write data_dir/{train,eval,test}."""
    rows = len(next(iter(columns.values())))
    train_end = int(rows * SPLIT_FRACTIONS["train"])
    eval_end = train_end + int(rows * SPLIT_FRACTIONS["eval"])
    ranges = {"train": (0, train_end), "eval": (train_end, eval_end), "test": (eval_end, rows)}
    out = {}
    for split in SPLITS:
        start, stop = ranges[split]
        part = {name: values[start:stop] for name, values in columns.items()}
        out[split] = write_parquet_split(part, spec, data_dir / split, parts=train_parts if split == "train" else 1)
    return out


def write_taxi_splits(workdir: Path, rows: int = 3000, seed: int = 7) -> dict[str, Path]:
    """Synthetic taxi rows split and written under workdir/data."""
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.synthetic import generate_columns

    return write_splits(generate_columns(rows, seed), load_spec(None), Path(workdir) / "data")


def train_tiny_model(workdir: Path, rows: int = 3000, epochs: int = 1, nbuckets: int = 4) -> Path:
    """Generate taxi data, analyze, train a small model; return its model_dir (with serving/)."""
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.train.trainer import TrainConfig, train

    workdir = Path(workdir)
    splits = write_taxi_splits(workdir, rows=rows)
    state = analyze(str(splits["train"]), load_spec(None), nbuckets)
    state.save(workdir / "transform")
    config = TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                         transform_dir=str(workdir / "transform"), model_dir=str(workdir / "model"),
                         hidden_units=[16, 8], learning_rate=0.02, batch_size=64, epochs=epochs)
    train(config)
    return workdir / "model"


# --- a second, non-taxi data set: the code must train it with no change ----------------------------
HOUSE_SPEC = {
    "name": "house-prices",
    "label": {"name": "price", "type": "float"},
    "columns": [
        {"name": "sqft", "type": "float", "range": [300, 6000]},
        {"name": "rooms", "type": "int", "range": [1, 8]},
        {"name": "city", "type": "string"},  # vocabulary learned by the analyze pass
        {"name": "condition", "type": "int", "vocabulary": [1, 2, 5]},
        {"name": "style", "type": "string", "vocabulary": ["ranch", "colonial", "modern"]},
    ],
    "derived": [{"name": "log_sqft", "op": "log1p", "inputs": ["sqft"]}],
    "features": {
        "numeric": ["sqft", "log_sqft", "rooms"],
        "bucketized": ["sqft"],
        "categorical": ["rooms", "city", "condition", "style"],
        "crosses": [{"name": "city_style", "inputs": ["city", "style"], "embedding_dim": 4}],
    },
    "embedding_dim": 4,
    "benchmark_feature": "sqft",
}
HOUSE_CITIES = ("springfield", "shelbyville", "ogdenville", "north haverbrook")


def house_spec():
    from mlengine.components.shared.featurespec import spec_from_dict

    return spec_from_dict(HOUSE_SPEC, source="tests:HOUSE_SPEC")


def house_columns(rows: int, seed: int = 3) -> dict[str, np.ndarray]:
    """Prices (in thousands) from size, city, condition and style, plus unit noise."""
    rng = np.random.default_rng(seed)
    city_index = rng.choice(len(HOUSE_CITIES), size=rows, p=[0.4, 0.3, 0.2, 0.1])
    styles = np.array(["ranch", "colonial", "modern"])[rng.integers(0, 3, size=rows)]
    condition = rng.choice([1, 2, 5], size=rows)
    sqft = rng.uniform(400, 4000, size=rows)
    price = (50 + 0.1 * sqft + np.array([30.0, 0.0, -20.0, 60.0])[city_index] + 5.0 * condition
             + np.where(styles == "modern", 25.0, 0.0) + rng.normal(0, 10.0, size=rows))
    return {
        "sqft": sqft,
        "rooms": np.clip((sqft / 500).astype(np.int64), 1, 8),
        "city": np.array(HOUSE_CITIES, dtype=object)[city_index],
        "condition": condition.astype(np.int64),
        "style": styles.astype(object),
        "price": price,
    }
