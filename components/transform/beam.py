"""The analyze pass as an Apache Beam pipeline (``runner="beam"``): the same transform state.

Two passes over the training split's Parquet parts, one element per part:

1. per record batch the features (derived ones included) with the single-process path's checks,
   folded by ``CombineGlobally(AnalyzeCombineFn)`` into mergeable accumulators: ``Moments`` per
   numeric feature and for the label, a KLL sketch per bucketized / scaled feature (bucket
   boundaries and clip bounds, within ``kll_rank_error``), capped value counts for the learned
   vocabularies (exact below the cap, as on the single-process path) and the co-moments of the
   benchmark line;
2. the clip bounds as a side input, the mean and std of every scaled feature after clipping
   (what the model sees), over every row rather than a sample.

The result is written as ``transform.json`` by the last step of the pipeline and read back.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.shared import derived as derived_ops
from mlengine.components.shared.accumulators import Moments
from mlengine.components.shared.analyze import (
    CLIP_QUANTILES,
    COUNTER_LIMIT,
    MAX_VOCABULARY_SIZE,
    label_and_benchmark,
    label_values,
    learned_vocabulary_names,
    numeric_names,
)
from mlengine.components.shared.beam_runner import beam_pipeline, import_beam, merge_accumulators
from mlengine.components.shared.featurespec import FeatureSpec, spec_from_dict
from mlengine.components.shared.logs import component_logger
from mlengine.components.shared.parquet import iter_record_batches, list_parquet_files
from mlengine.components.shared.sketches import KLL_K, CappedCounts, CoMoments, KllSketch, kll_rank_error
from mlengine.components.shared.transform_state import TransformState
from mlengine.constants import TRANSFORM_FILE
from mlengine.errors import DataError, MlengineError

__all__ = ["AnalyzeAccumulator", "analyze_beam", "batch_features"]

log = component_logger("transform")


def sampled_names(spec: FeatureSpec) -> list[str]:
    """The features whose distribution is sketched: bucketized ones (boundaries) and scaled ones (clip)."""
    return list(dict.fromkeys([*spec.bucketized, *spec.numeric]))


def batch_features(spec: FeatureSpec, path: str, columns: dict[str, np.ndarray]) -> dict[str, Any]:
    """Numeric features (derived included), the label and the vocabulary columns of one record batch.

    The single-process analyze pass's checks, with its messages naming the file.
    """
    numeric_columns = {n: columns[n].astype(np.float64) for n in spec.column_names if spec.column(n).is_numeric}
    values = derived_ops.add_derived_np(spec, numeric_columns)
    for name in numeric_names(spec):
        if not np.all(np.isfinite(values[name])):
            raise DataError(f"{path}: feature {name!r} has non-finite values; ingest must reject such rows")
    label = label_values(spec, path, columns[spec.label.name])  # class indices for a class label
    return {"values": {name: values[name] for name in numeric_names(spec)}, "label": label,
            "vocabulary": {name: columns[name] for name in learned_vocabulary_names(spec)}}


class AnalyzeAccumulator:
    """Everything pass 1 learns, mergeable shard by shard."""

    def __init__(self, spec: FeatureSpec, k: int = KLL_K):
        self.rows = 0
        self.moments = {name: Moments() for name in numeric_names(spec)}
        self.label = Moments()
        self.classification = spec.is_classification
        self.class_counts = np.zeros(spec.num_classes, np.int64)
        self.sketches = {name: KllSketch(k) for name in sampled_names(spec)}
        self.counters = {name: CappedCounts(COUNTER_LIMIT) for name in learned_vocabulary_names(spec)}
        self.benchmark = CoMoments()
        self.benchmark_feature = spec.benchmark_feature
        self.log1p = spec.label_transform == "log1p"

    def update(self, features: dict[str, Any]) -> AnalyzeAccumulator:
        values, label = features["values"], features["label"]
        if not len(label):
            return self
        self.rows += len(label)
        for name, moments in self.moments.items():
            moments.update(values[name])
        if self.classification:
            self.class_counts += np.bincount(label, minlength=len(self.class_counts))
        else:
            self.label.update(np.log1p(label) if self.log1p else label)
        for name, sketch in self.sketches.items():
            sketch.update(values[name])
        for name, counter in self.counters.items():
            counter.update(features["vocabulary"][name])
        if self.benchmark_feature and not self.classification:
            self.benchmark.update(values[self.benchmark_feature], label)
        return self

    def merge(self, other: AnalyzeAccumulator) -> AnalyzeAccumulator:
        self.rows += other.rows
        for name, moments in self.moments.items():
            moments.merge(other.moments[name])
        self.label.merge(other.label)
        self.class_counts += other.class_counts
        for name, sketch in self.sketches.items():
            sketch.merge(other.sketches[name])
        for name, counter in self.counters.items():
            counter.merge(other.counters[name])
        self.benchmark.merge(other.benchmark)
        return self

    def clip_bounds(self, spec: FeatureSpec) -> dict[str, list[float]]:
        return {name: [float(v) for v in self.sketches[name].quantiles(CLIP_QUANTILES)] for name in spec.numeric}


def build_state(spec: FeatureSpec, nbuckets: int, analysis: AnalyzeAccumulator,
                clipped: dict[str, Moments], source: str) -> TransformState:
    """The TransformState from both passes, in the single-process path's layout."""
    if analysis.rows == 0:
        raise DataError(f"{source}: the training split has no rows")
    levels = np.linspace(0.0, 1.0, nbuckets + 1)[1:-1]
    # quantile edges of a discrete or skewed feature can coincide: equal edges make empty buckets
    boundaries = {name: [float(v) for v in np.unique(analysis.sketches[name].quantiles(levels))]
                  for name in spec.bucketized}
    bounds = analysis.clip_bounds(spec)
    numeric = {}
    for name, moments in analysis.moments.items():
        stats: dict[str, Any] = {"mean": moments.mean, "std": moments.std}
        if name in spec.numeric:
            stats = {"mean": clipped[name].mean, "std": clipped[name].std, "clip": bounds[name],
                     "raw_mean": moments.mean, "raw_std": moments.std}
        numeric[name] = stats
    if spec.benchmark_feature and not spec.is_classification:
        slope, intercept = analysis.benchmark.line()
    else:
        slope, intercept = 0.0, analysis.label.mean
    label, benchmark = label_and_benchmark(spec, analysis.label, analysis.class_counts, slope, intercept)
    return TransformState(
        spec=spec, nbuckets=nbuckets, rows=analysis.rows, numeric=numeric, label=label, boundaries=boundaries,
        vocabularies={name: counter.top(MAX_VOCABULARY_SIZE) for name, counter in analysis.counters.items()},
        benchmark=benchmark,
    )


@functools.cache
def _beam_classes():
    beam = import_beam()

    class AnalyzeCombineFn(beam.CombineFn):
        """Batches of features in, one AnalyzeAccumulator out."""

        def __init__(self, spec_dict: dict[str, Any], k: int):
            self.spec_dict, self.k = spec_dict, k

        def create_accumulator(self):
            return AnalyzeAccumulator(spec_from_dict(self.spec_dict), self.k)

        def add_input(self, accumulator, features):
            return accumulator.update(features)

        def merge_accumulators(self, accumulators):
            return merge_accumulators(accumulators)

        def extract_output(self, accumulator):
            return accumulator

    class ClippedMomentsCombineFn(beam.CombineFn):
        """{feature: clipped values} batches in, {feature: Moments} out."""

        def __init__(self, names: list[str]):
            self.names = names

        def create_accumulator(self):
            return {name: Moments() for name in self.names}

        def add_input(self, accumulator, clipped):
            for name, values in clipped.items():
                accumulator[name].update(values)
            return accumulator

        def merge_accumulators(self, accumulators):
            accumulators = iter(accumulators)
            merged = next(accumulators)
            for other in accumulators:
                for name, moments in merged.items():
                    moments.merge(other[name])
            return merged

        def extract_output(self, accumulator):
            return accumulator

    return AnalyzeCombineFn, ClippedMomentsCombineFn


def _read_features(path: str, spec_dict: dict[str, Any]):
    spec = spec_from_dict(spec_dict)
    for batch_path, columns in iter_record_batches([path], [*spec.column_names, spec.label.name]):
        yield batch_features(spec, batch_path, columns)


def _clip(features: dict[str, Any], bounds: dict[str, list[float]]) -> dict[str, np.ndarray]:
    return {name: np.clip(features["values"][name], low, high) for name, (low, high) in bounds.items()}


def _write_state(_, spec_dict: dict[str, Any], nbuckets: int, analysis, clipped, out_dir: str, source: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    state = build_state(spec_from_dict(spec_dict), nbuckets, analysis, clipped, source)
    path = FileSystems.join(out_dir, TRANSFORM_FILE)
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(state.to_dict(), indent=1).encode("utf-8"))
    return path


def analyze_beam(train_dir: str, spec: FeatureSpec, nbuckets: int, out_dir: str | Path, *, k: int = KLL_K,
                 beam_options: list[str] | str | None = None) -> TransformState:
    """The analyze pass on Beam; writes ``out_dir/transform.json`` and returns the state."""
    if isinstance(nbuckets, bool) or not isinstance(nbuckets, int) or nbuckets < 2:
        raise MlengineError(f"nbuckets must be an integer of at least 2, got {nbuckets!r}")
    started = time.monotonic()
    files = list_parquet_files(train_dir)
    log.info("transform (beam): analyzing %d file(s) of %s (quantiles within %.2g rank error)",
             len(files), train_dir, kll_rank_error(k))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    spec_dict = spec.to_dict()
    analyze_fn, clipped_fn = _beam_classes()
    with beam_pipeline(beam_options) as p:
        import apache_beam as beam
        from apache_beam.pvalue import AsSingleton

        parts = p | "parts" >> beam.Create(files) | "spread parts" >> beam.Reshuffle()
        analysis = (parts | "read" >> beam.FlatMap(_read_features, spec_dict)
                    | "analyze" >> beam.CombineGlobally(analyze_fn(spec_dict, k)))
        bounds = analysis | "clip bounds" >> beam.Map(lambda acc: acc.clip_bounds(spec_from_dict(spec_dict)))
        clipped = (parts | "read again" >> beam.FlatMap(_read_features, spec_dict)
                   | "clip" >> beam.Map(_clip, bounds=AsSingleton(bounds))
                   | "clipped moments" >> beam.CombineGlobally(clipped_fn(list(spec.numeric))))
        _ = (p | "finish" >> beam.Create([None])
             | "write state" >> beam.Map(_write_state, spec_dict=spec_dict, nbuckets=nbuckets,
                                         analysis=AsSingleton(analysis), clipped=AsSingleton(clipped),
                                         out_dir=str(out_dir), source=str(train_dir)))
    state = TransformState.load(out_dir)
    log.info("transform (beam): analyzed %s rows from %d file(s) in %.1fs", f"{state.rows:,}", len(files),
             time.monotonic() - started)
    return state
