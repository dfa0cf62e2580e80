"""The transform: an analyze pass over the training split, and the preprocessing that applies it.

``analyze`` streams the training Parquet parts once (bounded memory whatever their size) and
returns the transform state: means and standard deviations, quantile bucket boundaries (from a
seeded reservoir sample, exact for splits smaller than the sample), vocabularies of string
categoricals, and the rule-based benchmark line. ``build_preprocessing`` turns that state into a
Keras layer made of TensorFlow ops, so the exported model takes RAW features and serving runs the
very same preprocessing as training.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared.featurespec import MAX_CROSS_SIZE, FeatureSpec, spec_from_dict
from mlengine.constants import PARQUET_PART_PATTERN, TRANSFORM_FILE
from mlengine.errors import DataError, MlengineError

MAX_VOCABULARY_SIZE = 1000  # learned vocabularies keep the most frequent values; the rest map to OOV id 0
COUNTER_LIMIT = 100_000  # distinct values counted before rare ones are pruned (bounds memory)
READ_BATCH_ROWS = 65_536
NUMERIC_KEY = "numeric"  # key of the dense z-scored block in the preprocessing output


def _emit(progress, message: str) -> None:
    if progress is None:
        print(message, file=sys.stderr, flush=True)
    elif progress:
        progress(message)


# --- files --------------------------------------------------------------------------------------
def list_parquet_files(split_dir: str | Path) -> list[str]:
    """The Parquet parts of one split directory, sorted; a clear error when there are none."""
    directory = Path(split_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: split directory not found")
    prefix = PARQUET_PART_PATTERN.split("{", 1)[0]
    files = sorted(str(p) for p in directory.glob(f"{prefix}*.parquet") if p.is_file())
    if not files:
        files = sorted(str(p) for p in directory.glob("*.parquet") if p.is_file())
    if not files:
        raise DataError(f"{directory}: no Parquet files ({prefix}*.parquet) in this split directory")
    return files


def read_columns(path: str, batch, names: list[str]) -> dict[str, np.ndarray]:
    """Numpy columns of one Arrow record batch: float64 / int64 / object (str); nulls rejected."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        index = batch.schema.get_field_index(name)
        if index < 0:
            raise DataError(f"{path}: column {name!r} is missing (columns: {', '.join(batch.schema.names)})")
        array = batch.column(index)
        if array.null_count:
            raise DataError(f"{path}: column {name!r} has {array.null_count} missing values; "
                            "ingest must fill or reject them")
        out[name] = array.to_numpy(zero_copy_only=False)
    return out


def iter_record_batches(files: list[str], names: list[str], batch_rows: int = READ_BATCH_ROWS):
    """Yield ``(path, numpy columns)`` per Arrow record batch of every file, in order."""
    import pyarrow.parquet as pq

    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises several types for unreadable files
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"{path}: not a readable Parquet file: {reason}") from None
        missing = [n for n in names if n not in parquet.schema_arrow.names]
        if missing:
            present = ", ".join(parquet.schema_arrow.names)
            raise DataError(f"{path}: column {missing[0]!r} is missing (columns: {present})")
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=names):
            yield path, read_columns(path, batch, names)


# --- streaming statistics -----------------------------------------------------------------------
class _Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: np.ndarray) -> None:
        n = values.size
        if n == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


class _CoMoments:
    """Streaming least squares of y on x: means, variance of x and covariance of x and y."""

    def __init__(self) -> None:
        self.count = 0
        self.mean_x = 0.0
        self.mean_y = 0.0
        self.cxx = 0.0
        self.cxy = 0.0

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        n = x.size
        if n == 0:
            return
        bx, by = float(x.mean()), float(y.mean())
        dx, dy = x - bx, y - by
        total = self.count + n
        delta_x, delta_y = bx - self.mean_x, by - self.mean_y
        factor = self.count * n / total
        self.cxx += float((dx * dx).sum()) + delta_x * delta_x * factor
        self.cxy += float((dx * dy).sum()) + delta_x * delta_y * factor
        self.mean_x += delta_x * n / total
        self.mean_y += delta_y * n / total
        self.count = total

    def line(self) -> tuple[float, float]:
        slope = self.cxy / self.cxx if self.cxx > 0 else 0.0
        return slope, self.mean_y - slope * self.mean_x


class _Reservoir:
    """A seeded uniform sample of at most ``capacity`` rows (algorithm R, vectorised per batch)."""

    def __init__(self, names: list[str], capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.filled = 0
        self.values = {name: np.empty(capacity, dtype=np.float64) for name in names}

    def update(self, columns: dict[str, np.ndarray]) -> None:
        if not self.values:
            return
        n = len(next(iter(columns.values())))
        take = min(n, self.capacity - self.filled)
        if take:
            for name, store in self.values.items():
                store[self.filled:self.filled + take] = columns[name][:take]
            self.filled += take
        rest = n - take
        if rest > 0:
            # row with global index j (0-based) replaces a random slot with probability capacity/(j+1)
            global_index = self.seen + take + np.arange(rest)
            slots = self.rng.integers(0, global_index + 1)
            keep = slots < self.capacity
            rows = take + np.flatnonzero(keep)
            for name, store in self.values.items():
                store[slots[keep]] = columns[name][rows]
        self.seen += n

    def sample(self, name: str) -> np.ndarray:
        return self.values[name][:self.filled]


class _CappedCounter:
    """Value counts with bounded memory: past COUNTER_LIMIT distinct values the rarest are dropped."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def update(self, values: np.ndarray) -> None:
        uniques, counts = np.unique(values.astype(str) if values.dtype == object else values, return_counts=True)
        self.counts.update(dict(zip(uniques.tolist(), counts.tolist(), strict=True)))
        if len(self.counts) > COUNTER_LIMIT:
            self.counts = Counter(dict(self.counts.most_common(COUNTER_LIMIT // 2)))

    def top(self, size: int) -> list:
        # by count, then by value, so the vocabulary is deterministic
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return [value for value, _ in ranked[:size]]


# --- analyze ------------------------------------------------------------------------------------
def numeric_names(spec: FeatureSpec) -> list[str]:
    """Every numeric raw column and every derived feature (the ones the state has moments for)."""
    return [c.name for c in spec.columns if c.is_numeric] + spec.derived_names


def learned_vocabulary_names(spec: FeatureSpec) -> list[str]:
    """Categoricals whose vocabulary the analyze pass learns (string columns without one)."""
    return [n for n in spec.categorical if spec.column(n).vocabulary is None and spec.column(n).type == "string"]


def analyze(train_dir: str, spec: FeatureSpec, nbuckets: int, *, sample_rows: int = 500_000, seed: int = 0,
            progress=None) -> dict:
    """Stream the training split once and return the transform state (JSON-able, see the brief)."""
    if isinstance(nbuckets, bool) or not isinstance(nbuckets, int) or nbuckets < 2:
        raise MlengineError(f"nbuckets must be an integer of at least 2, got {nbuckets!r}")
    if sample_rows < 1:
        raise MlengineError(f"sample_rows must be positive, got {sample_rows}")
    files = list_parquet_files(train_dir)
    raw_names = [*spec.column_names, spec.label.name]
    numerics = numeric_names(spec)
    moments = {name: _Moments() for name in numerics}
    label_moments = _Moments()
    reservoir = _Reservoir(list(spec.bucketized), sample_rows, seed)
    counters = {name: _CappedCounter() for name in learned_vocabulary_names(spec)}
    benchmark = _CoMoments()
    rows = 0
    for index, (path, columns) in enumerate(iter_record_batches(files, raw_names)):
        numeric_columns = {n: columns[n].astype(np.float64) for n in spec.column_names if spec.column(n).is_numeric}
        values = derived_ops.add_derived_np(spec, numeric_columns)
        label = columns[spec.label.name].astype(np.float64)
        for name in numerics:
            if not np.all(np.isfinite(values[name])):
                raise DataError(f"{path}: feature {name!r} has non-finite values; ingest must reject such rows")
            moments[name].update(values[name])
        if not np.all(np.isfinite(label)):
            raise DataError(f"{path}: label {spec.label.name!r} has non-finite values")
        label_moments.update(label)
        reservoir.update({name: values[name] for name in spec.bucketized})
        for name, counter in counters.items():
            counter.update(columns[name])
        if spec.benchmark_feature:
            benchmark.update(values[spec.benchmark_feature], label)
        rows += len(label)
        if index % 16 == 15:
            _emit(progress, f"transform: analyzed {rows:,} rows")
    if rows == 0:
        raise DataError(f"{train_dir}: the training split has no rows")

    boundaries = {}
    quantiles = np.linspace(0.0, 1.0, nbuckets + 1)[1:-1]
    for name in spec.bucketized:
        # quantile edges of a discrete or skewed feature can coincide: equal edges make empty buckets
        edges = np.unique(np.quantile(reservoir.sample(name), quantiles))
        boundaries[name] = [float(v) for v in edges]
    if spec.benchmark_feature:
        slope, intercept = benchmark.line()
    else:
        slope, intercept = 0.0, label_moments.mean
    _emit(progress, f"transform: analyzed {rows:,} rows from {len(files)} file(s)")
    return {
        "spec": spec.to_dict(),
        "nbuckets": nbuckets,
        "rows": rows,
        "numeric": {name: {"mean": m.mean, "std": m.std} for name, m in moments.items()},
        "label": {"mean": label_moments.mean, "std": label_moments.std},
        "boundaries": boundaries,
        "vocabularies": {name: counter.top(MAX_VOCABULARY_SIZE) for name, counter in counters.items()},
        "benchmark": {"feature": spec.benchmark_feature, "slope": float(slope), "intercept": float(intercept)},
    }


def save_transform(state: dict, out_dir: str) -> None:
    """Write ``out_dir/transform.json``."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TRANSFORM_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")


def load_transform(path_or_dir: str) -> dict:
    """Read a transform state from ``transform.json`` or a directory holding it."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / TRANSFORM_FILE
    if not path.is_file():
        raise MlengineError(f"{path}: transform file not found")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MlengineError(f"{path}: not valid JSON: {err}") from None
    for key in ("spec", "nbuckets", "numeric", "boundaries", "vocabularies", "benchmark"):
        if key not in state:
            raise MlengineError(f"{path}: transform state has no {key!r} field")
    return state


def spec_of(state: dict) -> FeatureSpec:
    return spec_from_dict(state["spec"], source="transform.json:spec")


# --- the preprocessing's id spaces ---------------------------------------------------------------
def vocabulary_of(state: dict, spec: FeatureSpec, name: str) -> list | None:
    col = spec.column(name)
    if col.vocabulary is not None:
        return list(col.vocabulary)
    return state["vocabularies"].get(name)


def sparse_features(state: dict) -> list[dict[str, Any]]:
    """Each id-valued output of the preprocessing: key, kind, cardinality, deep embedding dim.

    Bucket ids feed only the wide part (dim None); categorical and cross ids feed both parts.
    """
    spec = spec_of(state)
    cardinality: dict[str, int] = {}
    out = []
    for name in spec.bucketized:
        cardinality[name] = len(state["boundaries"][name]) + 1
        out.append({"key": f"bucketized/{name}", "kind": "bucketized", "cardinality": cardinality[name], "dim": None})
    for name in spec.categorical:
        cardinality[name] = spec.categorical_cardinality(name, vocabulary_of(state, spec, name))
        out.append({"key": f"categorical/{name}", "kind": "categorical", "cardinality": cardinality[name],
                    "dim": spec.embedding_dim})
    for cross in spec.crosses:
        size = math.prod(cardinality[name] for name in cross.inputs)
        out.append({"key": f"cross/{cross.name}", "kind": "cross", "cardinality": min(size, MAX_CROSS_SIZE),
                    "hashed": size > MAX_CROSS_SIZE, "dim": cross.embedding_dim or spec.embedding_dim})
    return out


# --- the preprocessing layer --------------------------------------------------------------------
def build_preprocessing(state: dict):
    """A Keras layer: dict of raw 1-D tensors -> {"numeric": [B, n] float32, "<kind>/<name>": [B] int64}."""
    return _preprocessing_class()(state)


class _Plain:
    """Holds plain Python values on a Keras layer without Keras tracking them."""

    def __init__(self, **values):
        self.__dict__.update(values)


@functools.cache
def _preprocessing_class():
    from mlengine.components.train.tfenv import import_tf

    tf, keras = import_tf()

    class RawPreprocessing(keras.layers.Layer):
        """Derived features, z-scores, bucket ids, categorical ids and cross ids, all in TF ops."""

        def __init__(self, state: dict, **kwargs):
            kwargs.setdefault("name", "preprocessing")
            kwargs.setdefault("trainable", False)
            super().__init__(**kwargs)
            # plain Python kept outside Keras attribute tracking (it would wrap dicts and lists)
            self._plain = _Plain(state=state, spec=spec_of(state), features=sparse_features(state))
            self.tables = {}
            for name in self.spec.categorical:
                vocabulary = vocabulary_of(state, self.spec, name)
                if vocabulary is None:
                    continue
                key_dtype = tf.string if self.spec.column(name).type == "string" else tf.int64
                keys = tf.constant([str(v) for v in vocabulary] if key_dtype == tf.string else vocabulary,
                                   dtype=key_dtype)
                ids = tf.range(1, len(vocabulary) + 1, dtype=tf.int64)  # 0 is out of vocabulary
                self.tables[name] = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, ids), 0)

        @property
        def state(self) -> dict:
            return self._plain.state

        @property
        def spec(self) -> FeatureSpec:
            return self._plain.spec

        @property
        def features(self) -> list[dict[str, Any]]:
            return self._plain.features

        def call(self, inputs):
            spec = self.spec
            values = {}
            for col in spec.columns:
                tensor = tf.reshape(inputs[col.name], [-1])
                if col.type == "float":
                    tensor = tf.cast(tensor, tf.float32)
                elif col.type == "int":
                    tensor = tf.cast(tensor, tf.int64)
                values[col.name] = tensor
            for item in spec.derived:
                values[item.name] = derived_ops.derived_tf(item.op, [values[n] for n in item.inputs])
            out = {}
            if spec.numeric:
                scaled = []
                for name in spec.numeric:
                    stats = self.state["numeric"][name]
                    std = stats["std"] if stats["std"] > 0 else 1.0
                    scaled.append((tf.cast(values[name], tf.float32) - stats["mean"]) / std)
                out[NUMERIC_KEY] = tf.stack(scaled, axis=1)
            ids = {}
            for name in spec.bucketized:
                ids[name] = tf.cast(tf.raw_ops.Bucketize(input=tf.cast(values[name], tf.float32),
                                                         boundaries=self.state["boundaries"][name]), tf.int64)
                out[f"bucketized/{name}"] = ids[name]
            for name in spec.categorical:
                col = spec.column(name)
                if name in self.tables:
                    ids[name] = self.tables[name].lookup(values[name])
                else:
                    low, high = int(col.range[0]), int(col.range[1])
                    raw = values[name]
                    ids[name] = tf.where((raw >= low) & (raw <= high), raw - low + 1, tf.zeros_like(raw))
                out[f"categorical/{name}"] = ids[name]
            cardinality = {f["key"].split("/", 1)[1]: f["cardinality"] for f in self.features if f["kind"] != "cross"}
            for feature in self.features:
                if feature["kind"] != "cross":
                    continue
                name = feature["key"].split("/", 1)[1]
                inputs_of_cross = next(c.inputs for c in spec.crosses if c.name == name)
                if feature.get("hashed"):
                    joined = tf.strings.join([tf.strings.as_string(ids[n]) for n in inputs_of_cross], separator="_")
                    combined = tf.strings.to_hash_bucket_fast(joined, feature["cardinality"])
                else:
                    combined = ids[inputs_of_cross[0]]
                    for n in inputs_of_cross[1:]:
                        combined = combined * cardinality[n] + ids[n]
                out[feature["key"]] = combined
            return out

        def get_config(self):
            return {**super().get_config(), "state": self.state}

    return RawPreprocessing
