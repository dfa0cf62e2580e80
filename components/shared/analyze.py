"""The transform's analyze pass over the training split.

``analyze`` streams the training Parquet parts once (bounded memory whatever their size) and
returns the :class:`TransformState`: means and standard deviations, quantile bucket boundaries
(from a seeded reservoir sample, exact for splits smaller than the sample), vocabularies of
string categoricals, and the rule-based benchmark line. The state builds the preprocessing layer
that runs inside the exported model (``components/shared/transform_state.py``).
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared.accumulators import Moments
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.components.shared.labels import class_indices
from mlengine.components.shared.parquet import iter_record_batches, list_parquet_files
from mlengine.components.shared.sketches import CoMoments
from mlengine.components.shared.transform_state import TransformState
from mlengine.errors import DataError, MlengineError

MAX_VOCABULARY_SIZE = 1000  # learned vocabularies keep the most frequent values; the rest map to OOV id 0
COUNTER_LIMIT = 100_000  # distinct values counted before rare ones are pruned (bounds memory)
# numeric inputs are clipped to these quantiles before z-scoring: a few outliers then cannot
# squash every other value into a sliver around 0 (nor blow up a ReLU layer at serving time)
CLIP_QUANTILES = (0.001, 0.999)


logger = logging.getLogger(__name__)


# --- streaming statistics -----------------------------------------------------------------------
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
def _numeric_stats(moments: dict, reservoir: _Reservoir, spec: FeatureSpec) -> dict[str, dict[str, float]]:
    """Mean and std of every numeric feature; the scaled ones also get clip bounds, and their mean
    and std are those of the clipped sample (what the model sees after clipping)."""
    out = {}
    for name, m in moments.items():
        stats = {"mean": m.mean, "std": m.std}
        if name in spec.numeric and reservoir.filled:
            sample = reservoir.sample(name)
            low, high = (float(v) for v in np.quantile(sample, CLIP_QUANTILES))
            clipped = np.clip(sample, low, high)
            stats = {"mean": float(clipped.mean()), "std": float(clipped.std()), "clip": [low, high],
                     "raw_mean": m.mean, "raw_std": m.std}
        out[name] = stats
    return out


def numeric_names(spec: FeatureSpec) -> list[str]:
    """Every numeric raw column and every derived feature (the ones the state has moments for)."""
    return [c.name for c in spec.columns if c.is_numeric] + spec.derived_names


def learned_vocabulary_names(spec: FeatureSpec) -> list[str]:
    """Categoricals whose vocabulary the analyze pass learns (string columns without one)."""
    return [n for n in spec.categorical if spec.column(n).vocabulary is None and spec.column(n).type == "string"]


def label_values(spec: FeatureSpec, path: str, raw: np.ndarray) -> np.ndarray:
    """One batch's label, checked: float64 values for regression, int64 class indices for a class label."""
    if spec.is_classification:
        return class_indices(spec, raw, source=path)
    label = raw.astype(np.float64)
    if not np.all(np.isfinite(label)):
        raise DataError(f"{path}: label {spec.label.name!r} has non-finite values")
    if spec.label_transform == "log1p" and label.size and label.min() <= -1.0:
        raise DataError(f"{path}: label {spec.label.name!r} has value {label.min():g} <= -1; "
                        "label_transform log1p needs labels above -1 (use standardize)")
    return label


def label_and_benchmark(spec: FeatureSpec, label_moments: Moments, class_counts: np.ndarray,
                        slope: float, intercept: float) -> tuple[dict, dict]:
    """The state's ``label`` and ``benchmark`` entries.

    A class label is never scaled: its entry holds the training rows per class (the prior the
    output bias starts at, and the benchmark's prediction); the benchmark line is regression's.
    """
    if spec.is_classification:
        counts = [int(c) for c in class_counts]
        total = sum(counts) or 1
        return ({"class_counts": counts, "transform": "none"},
                {"feature": None, "slope": 0.0, "intercept": 0.0, "class_prior": [c / total for c in counts]})
    return ({"mean": label_moments.mean, "std": label_moments.std, "transform": spec.label_transform},
            {"feature": spec.benchmark_feature, "slope": float(slope), "intercept": float(intercept)})


def analyze(train_dir: str, spec: FeatureSpec, nbuckets: int, *, sample_rows: int = 500_000,
            seed: int = 0) -> TransformState:
    """Stream the training split once and return the transform state (progress lines go to this module's logger)."""
    if isinstance(nbuckets, bool) or not isinstance(nbuckets, int) or nbuckets < 2:
        raise MlengineError(f"nbuckets must be an integer of at least 2, got {nbuckets!r}")
    if sample_rows < 1:
        raise MlengineError(f"sample_rows must be positive, got {sample_rows}")
    files = list_parquet_files(train_dir)
    raw_names = [*spec.column_names, spec.label.name]
    numerics = numeric_names(spec)
    moments = {name: Moments() for name in numerics}
    label_moments = Moments()
    class_counts = np.zeros(spec.num_classes, np.int64)
    sampled = list(dict.fromkeys([*spec.bucketized, *spec.numeric]))
    reservoir = _Reservoir(sampled, sample_rows, seed)
    counters = {name: _CappedCounter() for name in learned_vocabulary_names(spec)}
    benchmark = CoMoments()
    rows = 0
    for index, (path, columns) in enumerate(iter_record_batches(files, raw_names)):
        numeric_columns = {n: columns[n].astype(np.float64) for n in spec.column_names if spec.column(n).is_numeric}
        values = derived_ops.add_derived_np(spec, numeric_columns)
        for name in numerics:
            if not np.all(np.isfinite(values[name])):
                raise DataError(f"{path}: feature {name!r} has non-finite values; ingest must reject such rows")
            moments[name].update(values[name])
        label = label_values(spec, path, columns[spec.label.name])
        if spec.is_classification:
            class_counts += np.bincount(label, minlength=spec.num_classes)
        else:
            label_moments.update(np.log1p(label) if spec.label_transform == "log1p" else label)
        reservoir.update({name: values[name] for name in sampled})
        for name, counter in counters.items():
            counter.update(columns[name])
        if spec.benchmark_feature and not spec.is_classification:
            benchmark.update(values[spec.benchmark_feature], label)
        rows += len(label)
        if index % 16 == 15:
            logger.info("transform: analyzed %s rows", f"{rows:,}")
    if rows == 0:
        raise DataError(f"{train_dir}: the training split has no rows")

    boundaries = {}
    quantiles = np.linspace(0.0, 1.0, nbuckets + 1)[1:-1]
    for name in spec.bucketized:
        # quantile edges of a discrete or skewed feature can coincide: equal edges make empty buckets
        edges = np.unique(np.quantile(reservoir.sample(name), quantiles))
        boundaries[name] = [float(v) for v in edges]
    if spec.benchmark_feature and not spec.is_classification:
        slope, intercept = benchmark.line()
    else:
        slope, intercept = 0.0, label_moments.mean
    label_entry, benchmark_entry = label_and_benchmark(spec, label_moments, class_counts, slope, intercept)
    logger.info("transform: analyzed %s rows from %d file(s)", f"{rows:,}", len(files))
    return TransformState(
        spec=spec,
        nbuckets=nbuckets,
        rows=rows,
        numeric=_numeric_stats(moments, reservoir, spec),
        label=label_entry,
        boundaries=boundaries,
        vocabularies={name: counter.top(MAX_VOCABULARY_SIZE) for name, counter in counters.items()},
        benchmark=benchmark_entry,
    )
