"""Streamed, bounded-memory statistics of the ingested rows (what the skew monitor compares with).

Per column (raw columns and the label), over one *scope* of rows (all ok rows, or the train
split): count, missing (cells filled with the column default), mean, std (population), min,
max, quantiles from a bounded sample, a histogram and, for categoricals (string columns, int
columns listed in ``features.categorical``, and an int label), the most frequent values. A class
label also gets ``class_counts``: the rows of every class of its vocabulary, in that order, zeros
included (the label's distribution the training split must cover).

Memory stays bounded whatever the data size:
- moments are merged chunk by chunk (Chan et al.);
- the sample is a *bottom-k hash sample*: the ``sample_size`` rows with the smallest row-hash
  keys (seeded by the split seed). It is uniform, deterministic and independent of chunking and
  file order; while a scope has at most ``sample_size`` rows the sample holds every row, so the
  quantiles are exact;
- value counts are exact up to ``MAX_TRACKED_VALUES`` distinct values, then pruned to the most
  frequent ones and flagged ``approximate``.

Histograms span the data's own range, not the spec's (a declared range is a validity bound, often
far wider than the data): ``HISTOGRAM_BINS`` bins between the sample's ``TAIL_SHARE`` and
``1 - TAIL_SHARE`` quantiles, with ``underflow`` / ``overflow`` counts of the rows beyond, so one
outlier does not squeeze the rest into one bin. Integer columns get integer-wide bins centred on
whole numbers (edges at ``k - 0.5``). Counts come from the sample (the edges must be known before
counting; the sample holds every row up to ``SAMPLE_SIZE`` rows, so small data is exact).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlengine.components.shared.accumulators import Moments
from mlengine.components.shared.featurespec import Column, FeatureSpec
from mlengine.components.shared.sketches import CappedCounts

STATISTICS_FORMAT_VERSION = 1
QUANTILE_LEVELS = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p95": 0.95, "p99": 0.99}
HISTOGRAM_BINS = 20
TAIL_SHARE = 0.005  # rows below / above these sample quantiles go to the underflow / overflow bins
SAMPLE_SIZE = 50_000
TOP_VALUES = 20
MAX_TRACKED_VALUES = 10_000
SCOPES = ("all", "train")


def _is_categorical(spec: FeatureSpec, col: Column) -> bool:
    # an int label is counted too: a handful of distinct values says "classes?" (ingest warns)
    return col.type == "string" or (col.type == "int" and (col.name in spec.categorical or col.name == spec.label.name))


def class_counts(spec: FeatureSpec, accumulator: Any) -> list[dict[str, Any]]:
    """``[{"value": class, "count": rows}]`` in vocabulary order from one scope's label value counts."""
    counts = accumulator.columns[spec.label.name].counts.counts
    return [{"value": cls, "count": int(counts.get(cls, 0))} for cls in spec.classes]


def _bound(pick: Any, mine: Any, theirs: Any) -> Any:
    """``pick`` (min or max) of two bounds, either of which may be unknown (None)."""
    if mine is None or theirs is None:
        return theirs if mine is None else mine
    return pick(mine, theirs)


def _py(value: Any) -> Any:
    """A JSON-friendly Python scalar (NaN and inf become None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def histogram_edges(values: np.ndarray, integer: bool, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Bin edges over the data's own range: the central quantiles, integer-wide bins for integers."""
    as_float = values.astype(np.float64, copy=False)
    low, high = np.quantile(as_float, [TAIL_SHARE, 1.0 - TAIL_SHARE])
    if high <= low:  # a (nearly) constant column: the whole range
        low, high = float(as_float.min()), float(as_float.max())
    if integer:
        first, last = math.floor(low), math.ceil(high)
        width = max(1, math.ceil((last - first + 1) / bins))
        count = math.ceil((last - first + 1) / width)
        return first - 0.5 + width * np.arange(count + 1, dtype=np.float64)
    if high == low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def histogram(values: np.ndarray, integer: bool, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """The histogram entry of statistics.json: edges, counts inside, underflow and overflow."""
    return sorted_histogram(np.sort(values.astype(np.float64)), integer, bins)


def sorted_histogram(ordered: np.ndarray, integer: bool, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """``histogram`` of float64 values already in ascending order: np.histogram's counts (bins
    ``[a, b)``, the last one closed) read off by binary search instead of a sort per call."""
    edges = histogram_edges(ordered, integer, bins)
    below = np.searchsorted(ordered, edges, side="left")  # values < each edge
    through_last = int(np.searchsorted(ordered, edges[-1], side="right"))  # values <= the last edge
    counts = np.diff(below)
    counts[-1] += through_last - below[-1]
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "underflow": int(below[0]), "overflow": len(ordered) - through_last,
            "integer": integer, "source": "sample"}


class ColumnAccumulator:
    """Moments, range and value counts of one column in one scope; quantiles and the histogram
    from the scope's sample (the Beam path's subclass takes them from a KLL sketch)."""

    def __init__(self, col: Column, categorical: bool):
        self.col = col
        self.categorical = categorical
        self.count = 0
        self.missing = 0
        self.moments = Moments()
        self.minimum: Any = None
        self.maximum: Any = None
        self.counts = CappedCounts(MAX_TRACKED_VALUES)
        # a small int range is counted with bincount (rows outside the range were rejected)
        self._int_span: int | None = None
        if col.type == "int" and col.range is not None and col.range[1] - col.range[0] < MAX_TRACKED_VALUES:
            self._int_span = int(col.range[1]) - int(col.range[0]) + 1

    def update(self, values: Any, missing: np.ndarray) -> None:
        size = len(values)
        if size == 0:
            return
        self.missing += int(missing.sum())
        if self.col.is_numeric:
            self._update_moments(values)
        else:
            self.count += size
        if self.categorical:
            self._update_counts(values)

    def _update_moments(self, values: np.ndarray) -> None:
        self.moments.update(values)
        self.count = self.moments.count
        self.minimum = _bound(min, self.minimum, values.min())
        self.maximum = _bound(max, self.maximum, values.max())

    def _update_counts(self, values: Any) -> None:
        if isinstance(values, np.ndarray) and self._int_span is not None:
            low = int(self.col.range[0])
            counts = np.bincount(values - low, minlength=self._int_span)
            self.counts.add((low + int(i), int(counts[i])) for i in np.flatnonzero(counts))
        else:
            self.counts.update(values)

    def merge(self, other: ColumnAccumulator) -> None:
        """Add the same column's accumulator over other rows (counts, moments, range, values)."""
        self.missing += other.missing
        if self.col.is_numeric:
            self.moments.merge(other.moments)
            self.count = self.moments.count
            self.minimum = _bound(min, self.minimum, other.minimum)
            self.maximum = _bound(max, self.maximum, other.maximum)
        else:
            self.count += other.count
        if self.categorical:
            self.counts.merge(other.counts)

    def to_dict(self, sample: np.ndarray | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.col.type, "count": self.count, "missing": self.missing}
        if self.col.is_numeric:
            has_rows = self.count > 0
            out.update({
                "mean": _py(self.moments.mean) if has_rows else None,
                "std": _py(self.moments.std) if has_rows else None,
                "min": _py(self.minimum),
                "max": _py(self.maximum),
            })
            # sorted once: np.quantile's partition and the histogram's counts are cheap on it
            ordered = None if sample is None else np.sort(sample.astype(np.float64))
            out["quantiles"] = self._quantiles(ordered)
            out["histogram"] = self._histogram(ordered)
        if self.categorical:
            ranked = self.counts.ranked()
            out["top_values"] = [{"value": _py(value), "count": count} for value, count in ranked[:TOP_VALUES]]
            out["distinct"] = None if self.counts.approximate else len(self.counts.counts)
            out["counts_approximate"] = self.counts.approximate
        return out

    def _quantiles(self, ordered: np.ndarray | None) -> dict[str, float | None]:
        """From the sample as ascending float64 (None: no sample)."""
        if ordered is None or not len(ordered):
            return dict.fromkeys(QUANTILE_LEVELS)
        quantiles = np.quantile(ordered, list(QUANTILE_LEVELS.values()))
        return {name: float(q) for name, q in zip(QUANTILE_LEVELS, quantiles, strict=True)}

    def _histogram(self, ordered: np.ndarray | None) -> dict[str, Any]:
        """From the sample as ascending float64 (None: no sample)."""
        if ordered is None or not len(ordered):
            return {"edges": [], "counts": [], "underflow": 0, "overflow": 0, "integer": self.col.type == "int",
                    "source": "sample"}
        return sorted_histogram(ordered, self.col.type == "int")


class StatisticsAccumulator:
    """Statistics of one scope of rows, updated chunk by chunk in bounded memory."""

    def __init__(self, spec: FeatureSpec, sample_size: int = SAMPLE_SIZE):
        self.spec = spec
        self.sample_size = sample_size
        self.rows = 0
        self.columns = {col.name: ColumnAccumulator(col, _is_categorical(spec, col)) for col in spec.all_columns}
        self._numeric = [col.name for col in spec.all_columns if col.is_numeric]
        self._sample_keys = np.zeros(0, np.uint64)
        self._sample: dict[str, np.ndarray] = {}
        self._threshold: np.uint64 | None = None  # the largest kept key once the sample is full
        self._pending_keys: list[np.ndarray] = []  # candidates not compacted into the sample yet
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in self._numeric}
        self._pending_rows = 0

    def update(self, columns: dict[str, Any], missing: dict[str, np.ndarray], keys: np.ndarray) -> None:
        """Add one chunk: typed values per column, default-used masks, and one sample key per row."""
        size = len(keys)
        if size == 0:
            return
        self.rows += size
        for name, accumulator in self.columns.items():
            accumulator.update(columns[name], missing[name])
        self._update_sample(columns, keys)

    def _update_sample(self, columns: dict[str, Any], keys: np.ndarray) -> None:
        # candidates (keys below the current threshold) are gathered once and held until they
        # reach ``sample_size``; then one compaction keeps the bottom-k: the same rows as
        # compacting every chunk, since a key at or above a threshold can never be kept again
        if self.sample_size <= 0 or not self._numeric:
            return
        if self._threshold is not None:
            candidates = np.flatnonzero(keys < self._threshold)
            if not len(candidates):
                return
            self._hold(keys[candidates], {name: columns[name][candidates] for name in self._numeric})
        else:
            self._hold(np.array(keys, copy=True), {name: np.array(columns[name], copy=True) for name in self._numeric})
        if self._threshold is None or self._pending_rows >= self.sample_size:
            self._compact()

    def _hold(self, keys: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Keep sample candidates (their keys and numeric values) until the next compaction."""
        self._pending_keys.append(keys)
        for name in self._numeric:
            self._pending[name].append(values[name])
        self._pending_rows += len(keys)

    def merge(self, other: StatisticsAccumulator) -> StatisticsAccumulator:
        """Add the statistics of other rows (a disjoint scope); returns self.

        The bottom-k of the two samples is the union's own bottom-k sample, so the merged sample
        holds the same rows as one accumulator updated with both scopes' chunks.
        """
        other._compact()
        self.rows += other.rows
        for name, accumulator in self.columns.items():
            accumulator.merge(other.columns[name])
        if len(other._sample_keys) and self._numeric:
            self._hold(other._sample_keys, other._sample)
            self._compact()
        return self

    def detach_moments(self) -> dict[str, Moments]:
        """Take the numeric columns' moments out, leaving empty ones; for ``attach_moments``.

        Floating-point sums depend on their order: a merger that takes accumulators in whatever
        order they come merges the rest at once and the moments later in a fixed order, so the
        means and deviations do not depend on which accumulator came first.
        """
        moments = {}
        for name, column in self.columns.items():
            if column.col.is_numeric:
                moments[name], column.moments = column.moments, Moments()
        return moments

    def attach_moments(self, moments: dict[str, Moments]) -> None:
        """Merge moments taken out of other rows' accumulator by ``detach_moments``."""
        for name, other in moments.items():
            column = self.columns[name]
            column.moments.merge(other)
            column.count = column.moments.count

    def _compact(self) -> None:
        if not self._pending_rows:
            return
        merged_keys = np.concatenate([self._sample_keys, *self._pending_keys])
        merged = {name: np.concatenate([self._sample[name], *self._pending[name]]) if name in self._sample
                  else np.concatenate(self._pending[name]) for name in self._numeric}
        self._pending_keys, self._pending_rows = [], 0
        self._pending = {name: [] for name in self._numeric}
        if len(merged_keys) > self.sample_size:
            keep = np.argpartition(merged_keys, self.sample_size - 1)[: self.sample_size]
            merged_keys = merged_keys[keep]
            merged = {name: values[keep] for name, values in merged.items()}
        if len(merged_keys) >= self.sample_size:
            self._threshold = merged_keys.max()
        self._sample_keys = merged_keys
        self._sample = merged

    def to_dict(self) -> dict[str, Any]:
        self._compact()
        return {
            "rows": self.rows,
            "sample_rows": len(self._sample_keys),
            "sample_exact": len(self._sample_keys) == self.rows,
            "columns": {name: acc.to_dict(self._sample.get(name)) for name, acc in self.columns.items()},
        }


def build_statistics(spec: FeatureSpec, scopes: dict[str, StatisticsAccumulator],
                     summary: dict[str, Any]) -> dict[str, Any]:
    """The statistics.json document: settings, the ingest summary and one entry per scope."""
    documents = {scope: accumulator.to_dict() for scope, accumulator in scopes.items()}
    if spec.is_classification:
        for scope, accumulator in scopes.items():
            documents[scope]["columns"][spec.label.name]["class_counts"] = class_counts(spec, accumulator)
    return {
        "format_version": STATISTICS_FORMAT_VERSION,
        "spec_name": spec.name,
        "label": spec.label.name,
        "columns": [col.name for col in spec.all_columns],
        "quantile_levels": QUANTILE_LEVELS,
        "histogram_bins": HISTOGRAM_BINS,
        "sample_size": next(iter(scopes.values())).sample_size if scopes else SAMPLE_SIZE,
        "ingest": summary,
        **documents,
    }
