"""The ingest step as an Apache Beam pipeline (``--runner beam``): same validation, split and statistics.

One element per input file (files are the unit of parallelism, as shards are for any engine):

1. headers are checked before the pipeline starts, by ``executor.run``'s own
   check (``check_inputs``): a shard with a different header fails naming it, nothing written;
2. per chunk of a file, the single-process path's own ``chunks.validate_chunk`` (the row-level
   validation of ``convert.py`` and the stable row hash) decides reject / train / eval / test, so
   a row lands in the same split on both paths;
3. typed Parquet parts per split (``WriteToParquetBatched``), rejects as JSON lines;
4. statistics from mergeable accumulators combined with ``CombinePerKey`` (one key per scope):
   moments (``Moments.merge``), capped value counts, and a KLL sketch (components/shared/sketches.py)
   in place of the bottom-k sample for quantiles and histograms.

The document has the single-process layout (components/ingest/statistics.py); quantiles come
with the sketch's stated rank error (``quantile_sketch`` in each scope). Output folders must be
reachable by every worker (local paths on the in-process runner, a shared volume on a cluster).
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.components.ingest.chunks import ValidatedChunk, take, validate_chunk
from mlengine.components.ingest.convert import typed_default
from mlengine.components.ingest.csvreader import iter_cell_chunks, read_header
from mlengine.components.ingest.executor import IngestResult, arrow_schema
from mlengine.components.ingest.splits import DistinctSketch, SplitPlan
from mlengine.components.ingest.statistics import (
    QUANTILE_LEVELS,
    SCOPES,
    ColumnAccumulator,
    _is_categorical,
    build_statistics,
    histogram,
    histogram_edges,
)
from mlengine.components.shared import storage
from mlengine.components.shared.beam_runner import beam_pipeline, import_beam, merge_accumulators
from mlengine.components.shared.featurespec import Column, FeatureSpec, spec_from_dict
from mlengine.components.shared.sketches import KLL_K, KllSketch
from mlengine.constants import CSV_CHUNK_ROWS, SPEC_FILE, SPLITS, STATISTICS_FILE

__all__ = ["ScopeStatistics", "chunk_summary", "ingest_beam"]

log = logging.getLogger("mlengine.ingest")
SUMMARY_KEYS = ("rows_read", "rows_ok", "rows_rejected", "blank_lines")
PART_PREFIX = "part"  # Beam names parts part-00000.parquet, as the single-process writer does
PART_SHARD_TEMPLATE = "-SSSSS"
PART_SUFFIX = ".parquet"
HISTOGRAM_RANK_POINTS = 4001  # points of the sketch's inverse CDF the histogram edges are chosen from


# --- per chunk: the single-process path's validation and split -----------------------------------
def chunk_summary(done: ValidatedChunk) -> Counter[str]:
    """The counts of one validated chunk, summed over the pipeline: rows, reasons, rows per split."""
    summary: Counter[str] = Counter(rows_read=done.rows_read, rows_ok=done.rows_ok,
                                    rows_rejected=done.rows_rejected, blank_lines=done.blank_lines)
    for kind, count in done.reasons.items():
        summary[f"reason:{kind}"] += count
    for split, rows in done.splits.items():
        summary[f"split:{split}"] += len(rows)
    return summary


# --- mergeable statistics --------------------------------------------------------------------------
class _ColumnStatistics(ColumnAccumulator):
    """One column in one scope: the single-process accumulator with a KLL sketch in place of the
    sample, so every part merges."""

    def __init__(self, col: Column, categorical: bool, k: int):
        super().__init__(col, categorical)
        self.sketch = KllSketch(k) if col.is_numeric else None

    def update(self, values: Any, missing: np.ndarray) -> None:
        super().update(values, missing)
        if self.sketch is not None and len(values):
            self.sketch.update(values)

    def merge(self, other: _ColumnStatistics) -> None:
        super().merge(other)
        if self.sketch is not None:
            self.sketch.merge(other.sketch)

    def _quantiles(self, ordered: None) -> dict[str, float | None]:
        if self.count == 0:
            return dict.fromkeys(QUANTILE_LEVELS)
        quantiles = self.sketch.quantiles(list(QUANTILE_LEVELS.values()))
        return {name: float(q) for name, q in zip(QUANTILE_LEVELS, quantiles, strict=True)}

    def _histogram(self, ordered: None) -> dict[str, Any]:
        integer = self.col.type == "int"
        if self.count == 0:
            return {"edges": [], "counts": [], "underflow": 0, "overflow": 0, "integer": integer, "source": "sketch"}
        if self.sketch.exact:  # every value is in the sketch: the single-process histogram, exactly
            return {**histogram(self.sketch.levels[0], integer), "source": "sketch"}
        # edges by the single-process rule, from points spaced evenly in rank (their quantiles agree
        # with the data's within the sketch's rank error); counts from the sketch's CDF
        points = self.sketch.quantiles(np.linspace(0.0, 1.0, HISTOGRAM_RANK_POINTS))
        edges = histogram_edges(points, integer)
        shares = np.append(self.sketch.cdf(edges[:-1], strict=True), self.sketch.cdf(edges[-1:]))
        cumulative = np.round(shares * self.count).astype(np.int64)  # np.histogram: [a, b), the last bin closed
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in np.diff(cumulative)],
                "underflow": int(cumulative[0]), "overflow": int(self.count - cumulative[-1]),
                "integer": integer, "source": "sketch"}


class ScopeStatistics:
    """Every column's statistics over one scope of rows (all ok rows, or the train split)."""

    sample_size = None  # no sample on this path: build_statistics records None

    def __init__(self, spec: FeatureSpec, k: int = KLL_K):
        self.k = k
        self.rows = 0
        self.columns = {col.name: _ColumnStatistics(col, _is_categorical(spec, col), k) for col in spec.all_columns}

    def update(self, values: dict[str, Any], missing: dict[str, np.ndarray]) -> ScopeStatistics:
        size = len(next(iter(missing.values()))) if missing else 0
        if size:
            self.rows += size
            for name, column in self.columns.items():
                column.update(values[name], missing[name])
        return self

    def merge(self, other: ScopeStatistics) -> ScopeStatistics:
        self.rows += other.rows
        for name, column in self.columns.items():
            column.merge(other.columns[name])
        return self

    def to_dict(self) -> dict[str, Any]:
        sketch = next((c.sketch for c in self.columns.values() if c.sketch is not None), None)
        return {
            "rows": self.rows,
            "sample_rows": None,
            "sample_exact": bool(sketch is not None and sketch.exact),
            "quantile_sketch": {"kind": "kll", "k": self.k, "rank_error": KllSketch(self.k).rank_error},
            "columns": {name: column.to_dict() for name, column in self.columns.items()},
        }


@functools.cache
def _combine_fn_class():
    beam = import_beam()

    class StatisticsCombineFn(beam.CombineFn):
        """Chunks of (values, missing) in, one ScopeStatistics out; accumulators merge in any order."""

        def __init__(self, spec_dict: dict[str, Any], k: int = KLL_K):
            self.spec_dict = spec_dict
            self.k = k
            self._spec = None

        def _get_spec(self) -> FeatureSpec:
            if self._spec is None:
                self._spec = spec_from_dict(self.spec_dict)
            return self._spec

        def create_accumulator(self):
            return ScopeStatistics(self._get_spec(), self.k)

        def add_input(self, accumulator, element):
            values, missing = element
            return accumulator.update(values, missing)

        def merge_accumulators(self, accumulators):
            return merge_accumulators(accumulators)

        def extract_output(self, accumulator):
            return accumulator

    return StatisticsCombineFn


@functools.cache
def _ingest_file_fn_class():
    beam = import_beam()

    class IngestFileFn(beam.DoFn):
        """One input file in; Parquet tables per split, reject lines, statistics chunks, counts out."""

        def __init__(self, spec_dict: dict[str, Any], chunk_rows: int, split_seed: int):
            self.spec_dict = spec_dict
            self.chunk_rows = chunk_rows
            self.split_seed = split_seed

        def setup(self):
            import pyarrow as pa

            self.pa = pa
            self.spec = spec_from_dict(self.spec_dict)
            self.names = [col.name for col in self.spec.all_columns]
            self.defaults = {col.name: typed_default(col, self.spec.source) for col in self.spec.all_columns}
            self.schema = arrow_schema(self.spec)
            self.plan = SplitPlan.of(self.spec, self.split_seed)

        def process(self, uri: str):
            from apache_beam import pvalue

            with storage.open_binary(uri) as stream:
                # a header that changed since the launcher checked it still fails naming the file
                header = read_header(stream, uri, self.names, self.spec.delimiter)
                for chunk in iter_cell_chunks(stream, header, self.chunk_rows, uri, first_offset=header.size):
                    done = validate_chunk(self.spec.all_columns, self.defaults, uri, chunk, self.plan)
                    yield pvalue.TaggedOutput("summary", chunk_summary(done))
                    for line in done.rejects:
                        yield pvalue.TaggedOutput("rejects", line)
                    values, missing = done.values, done.missing
                    if not done.rows_ok:
                        continue
                    yield pvalue.TaggedOutput("statistics", ("all", (values, missing)))
                    table = self.pa.table({name: values[name] for name in self.names}, schema=self.schema)
                    for split, rows in done.splits.items():
                        if len(rows) == 0:
                            continue
                        yield pvalue.TaggedOutput(split, table.take(rows))
                        yield pvalue.TaggedOutput("distinct", (split, DistinctSketch().update(done.keys[rows])))
                        if split == "train":
                            yield pvalue.TaggedOutput("statistics", ("train", (
                                {name: take(v, rows) for name, v in values.items()},
                                {name: m[rows] for name, m in missing.items()})))

    return IngestFileFn


def _sum_counters(counters) -> dict[str, int]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(total)


def _merge_sketches(sketches) -> DistinctSketch:
    merged = DistinctSketch()
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def _write_statistics(_, spec_dict: dict[str, Any], scopes: dict[str, ScopeStatistics], summary: dict[str, int],
                      files: list[str], statistics_dir: str, distinct: dict[str, DistinctSketch]) -> str:
    """The last step of the pipeline: statistics.json with the ingest summary, as the local path writes it."""
    from apache_beam.io.filesystems import FileSystems

    spec = spec_from_dict(spec_dict)
    full = {scope: scopes.get(scope) or ScopeStatistics(spec) for scope in SCOPES}
    document = build_statistics(spec, full, _summary_dict(summary, files, distinct))
    path = FileSystems.join(statistics_dir, STATISTICS_FILE)
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8"))
    return path


def _summary_dict(summary: dict[str, int], files: list[str], distinct: dict[str, DistinctSketch]) -> dict[str, Any]:
    reasons = {key.split(":", 1)[1]: value for key, value in summary.items() if key.startswith("reason:")}
    out: dict[str, Any] = {key: int(summary.get(key, 0)) for key in SUMMARY_KEYS}
    out["rows_per_split"] = {split: int(summary.get(f"split:{split}", 0)) for split in SPLITS}
    out["distinct_per_split"] = {split: distinct[split].estimate() if split in distinct else 0 for split in SPLITS}
    out["files"] = list(files)
    out["reject_reasons"] = dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
    return out


def ingest_beam(files: list[str], spec: FeatureSpec, output_dirs: dict[str, str], rejects_file: Path,
                statistics_dir: Path, *, chunk_rows: int = CSV_CHUNK_ROWS, split_seed: int = 0,
                beam_options: list[str] | str | None = None) -> tuple[IngestResult, dict[str, Any]]:
    """The Beam engine of ``executor.run``: ``files`` (headers checked) through a Beam pipeline.

    Returns the result and the statistics.json document, as the local engine does.
    """
    log.info("ingest (beam): %d file(s)", len(files))
    rejects_file.unlink(missing_ok=True)  # replaced whole, as on the local path
    for split in SPLITS:
        folder = Path(output_dirs[split])
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{PART_PREFIX}-*{PART_SUFFIX}"):  # a re-run must not mix old parts in
            stale.unlink()
    spec_dict = spec.to_dict()
    schema = arrow_schema(spec)
    _run_pipeline(beam_options, spec_dict, files, output_dirs, str(rejects_file), str(statistics_dir), schema,
                  chunk_rows, split_seed)
    spec.save(statistics_dir / SPEC_FILE)
    stats_path = statistics_dir / STATISTICS_FILE
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    result = IngestResult(**stats["ingest"])
    result.parts = {split: sorted(str(p) for p in Path(output_dirs[split]).glob(f"{PART_PREFIX}-*{PART_SUFFIX}"))
                    for split in SPLITS}
    for split, parts in result.parts.items():
        if not parts:  # an empty split is still a readable dataset, as on the local path
            import pyarrow.parquet as pq

            path = Path(output_dirs[split]) / f"{PART_PREFIX}-00000{PART_SUFFIX}"
            pq.write_table(schema.empty_table(), path)
            result.parts[split] = [str(path)]
    result.rejects_path = str(rejects_file)
    result.statistics_path = str(stats_path)
    return result, stats


def _run_pipeline(beam_options, spec_dict, files, output_dirs, rejects_file, statistics_dir, schema, chunk_rows,
                  split_seed) -> None:
    beam = import_beam()
    from apache_beam.pvalue import AsDict, AsSingleton

    with beam_pipeline(beam_options) as p:
        outputs = (
            p
            | "files" >> beam.Create(files)
            | "spread files" >> beam.Reshuffle()
            | "validate and split" >> beam.ParDo(_ingest_file_fn_class()(spec_dict, chunk_rows, split_seed))
            .with_outputs("summary", "rejects", "statistics", "distinct", *SPLITS)
        )
        for split in SPLITS:
            _ = outputs[split] | f"write {split}" >> beam.io.WriteToParquetBatched(
                file_path_prefix=str(Path(output_dirs[split]) / PART_PREFIX), schema=schema,
                file_name_suffix=PART_SUFFIX, shard_name_template=PART_SHARD_TEMPLATE)
        _ = outputs["rejects"] | "write rejects" >> beam.io.WriteToText(rejects_file, shard_name_template="")
        summary = outputs["summary"] | "count rows" >> beam.CombineGlobally(_sum_counters)
        scopes = outputs["statistics"] | "statistics" >> beam.CombinePerKey(_combine_fn_class()(spec_dict))
        distinct = outputs["distinct"] | "distinct rows" >> beam.CombinePerKey(_merge_sketches)
        _ = (p | "finish" >> beam.Create([None])
             | "write statistics" >> beam.Map(_write_statistics, spec_dict=spec_dict, scopes=AsDict(scopes),
                                              summary=AsSingleton(summary), files=files,
                                              statistics_dir=statistics_dir, distinct=AsDict(distinct)))
