"""The ingest component's logic: CSV files in, validated typed Parquet splits + statistics out.

``run`` checks every input file's header (fatal, before any output is written), hands the files
to the engine the caller names (``_backend``: ``local.py`` in this process and its worker
processes, or ``beam.py``, an Apache Beam pipeline), and writes the reports: statistics.json and
feature_spec.yaml (by the engine), the Markdown statistics view and the HTML report with plots
(``report.py``). Both engines
validate, hash and split rows with the same code (``chunks.validate_chunk``):

1. header check per file: empty file, no header, a spec column missing, a duplicate column;
2. per row: decodable, the right number of cells, every spec column typed and inside its range
   / vocabulary (a missing cell takes the column default, or rejects the row). Bad rows go to
   the rejects JSONL file with the file, 1-based line number, reason and original text;
3. a stable hash of each row's typed values (salted with ``split_seed``; or of a key column, or
   of the row's place in its file: the spec's ``split:``, ``splits.py``) picks its split, so a row
   lands in the same split whatever the chunking, file order, engine or worker count; a split far
   from its share or under ``split.min_rows`` rows ends ingest with an error naming the fix;
4. typed Parquet parts per split, and statistics over all ok rows and the train split.

Invariant: ``rows_read == rows_ok + rows_rejected``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mlengine.components.ingest import splits
from mlengine.components.ingest.convert import ARROW_TYPES
from mlengine.components.ingest.csvreader import read_header
from mlengine.components.ingest.report import render_statistics_html, render_statistics_markdown
from mlengine.components.shared import storage
from mlengine.components.shared.beam_runner import RUNNER_BEAM, RUNNER_LOCAL, check_runner, import_beam
from mlengine.components.shared.featurespec import FeatureSpec, FeatureSpecError
from mlengine.components.shared.labels import int_label_hint
from mlengine.constants import CSV_CHUNK_ROWS, REJECTS_FILE, SPLITS
from mlengine.errors import DataError

__all__ = ["IngestResult", "arrow_schema", "check_inputs", "resolve_rejects_path", "run"]

log = logging.getLogger("mlengine.ingest")
TOP_REASONS = 3  # reject reasons named in the error when no row passes
LABEL_MISMATCH_SHARE = 0.5  # more rows than this rejected for a label outside the vocabulary: the vocabulary is wrong
LABEL_EXAMPLES = 3  # unknown label values named in that error
REJECT_LINES_SCANNED = 10_000  # rejects.jsonl lines read for those examples
# IngestResult fields that describe this run's outputs and machine, not the data: left out of
# the summary in statistics.json (which must not depend on where or how fast ingest ran)
RUN_FIELDS = ("parts", "rejects_path", "statistics_path", "statistics_view_path", "html_path", "seconds", "workers")


@dataclass
class IngestResult:
    rows_read: int = 0
    rows_ok: int = 0
    rows_rejected: int = 0
    rows_per_split: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    distinct_per_split: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))  # distinct rows
    files: list[str] = field(default_factory=list)
    reject_reasons: dict[str, int] = field(default_factory=dict)  # reason kind -> rows
    blank_lines: int = 0  # empty lines (not rows, not counted in rows_read)
    parts: dict[str, list[str]] = field(default_factory=dict)  # split -> Parquet files written
    rejects_path: str = ""
    statistics_path: str = ""
    statistics_view_path: str = ""
    html_path: str = ""  # the HTML statistics report (plots)
    seconds: float = 0.0
    workers: int = 1  # processes that ingested (the local engine; 1 on Beam, whose runner decides)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reject_reasons"] = dict(sorted(self.reject_reasons.items(), key=lambda item: (-item[1], item[0])))
        return out

    def summary(self) -> dict[str, Any]:
        """The data's figures only (what statistics.json records under ``ingest``)."""
        return {key: value for key, value in self.to_dict().items() if key not in RUN_FIELDS}


def arrow_schema(spec: FeatureSpec) -> pa.Schema:
    """The Parquet schema of every split: spec columns in order, then the label."""
    return pa.schema([pa.field(col.name, ARROW_TYPES[col.type], nullable=False) for col in spec.all_columns])


def resolve_rejects_path(rejects_path: str | Path) -> Path:
    """A ``.jsonl`` path is used as is; anything else is a folder that gets ``rejects.jsonl``."""
    path = Path(rejects_path)
    if path.is_dir() or path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        return path / REJECTS_FILE
    return path


def check_inputs(data_uri: str, spec: FeatureSpec) -> list[str]:
    """Resolve ``data_uri`` and check every file's header against the spec; returns the files.

    Raises DataError naming the file or URI; `mlengine run` calls it before starting the
    pipeline so a wrong path fails in a second with one line, not inside a pipeline task.
    """
    files = storage.resolve_inputs(data_uri)
    names = [col.name for col in spec.all_columns]
    for uri in files:
        with storage.open_binary(uri) as stream:
            read_header(stream, uri, names, spec.delimiter)
    return files


def _backend(runner: str):
    """The engine function of ``runner``: ``local.ingest_local`` or ``beam.ingest_beam``."""
    if check_runner(runner) == RUNNER_BEAM:
        from mlengine.components.ingest.beam import ingest_beam

        import_beam()  # not installed: one line naming the extra, before anything is written

        return ingest_beam
    assert runner == RUNNER_LOCAL
    from mlengine.components.ingest.local import ingest_local

    return ingest_local


def run(data_uri: str, spec: FeatureSpec, output_dirs: dict[str, str], rejects_path: str, statistics_dir: str,
        *, statistics_view_path: str = "", html_path: str = "", runner: str = RUNNER_LOCAL,
        beam_options: list[str] | str | None = None, chunk_rows: int = CSV_CHUNK_ROWS, split_seed: int = 0,
        workers: int = 0, piece_bytes: int = 0, task: str = "") -> IngestResult:
    """Validate and split the CSV data at ``data_uri`` into typed Parquet parts per split.

    Args:
        data_uri: a CSV file, a folder of CSV shards, a glob or an s3:// URI (``.gz`` read as gzip).
        spec: the feature spec the rows are checked against.
        output_dirs: a folder for the Parquet parts of every split (constants.SPLITS).
        rejects_path: a ``.jsonl`` file, or a folder that gets rejects.jsonl.
        statistics_dir: receives statistics.json and feature_spec.yaml.
        statistics_view_path: where the Markdown view of the statistics goes (empty: not written).
        html_path: where the HTML statistics report goes: the tables, a histogram per numeric column,
            bar charts of top values and classes (empty: not written).
        runner: ``local`` (this process) or ``beam`` (an Apache Beam pipeline).
        beam_options: Beam pipeline options (``runner="beam"`` only).
        chunk_rows: lines read and validated at a time (bounds memory).
        split_seed: salt of the row hash that picks each row's split.
        workers: processes of the local engine (0: one per core this process may use); the
            output does not depend on it (``local.py``).
        piece_bytes: the byte ranges a large file is cut into for the workers (0: from the input
            size and ``workers``; tests set it small).
        task: the task the caller expects (regression, binary, multiclass; empty: the spec's): a
            spec whose label says another task is refused before any row is read.

    Returns:
        The counts, the files written and the seconds taken.

    Raises:
        DataError: unreadable input (missing file, bad header...) before any output is written;
            no row passing validation after. Bad rows are rejected one by one, not raised.
    """
    started = time.monotonic()
    if task and task != spec.task:
        raise FeatureSpecError(f"{spec.source}: task: this run expects {task!r}, the spec's label makes it "
                               f"{spec.task!r} (a vocabulary of 2 classes is binary, of more multiclass, none "
                               "regression)")
    engine = _backend(runner)
    absent = [name for name in SPLITS if name not in output_dirs]
    if absent:
        raise ValueError(f"output_dirs needs a folder for every split; missing {absent}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    files = check_inputs(data_uri, spec)
    log.info("ingest: %d file(s) from %s", len(files), data_uri)
    rejects_file = resolve_rejects_path(rejects_path)
    rejects_file.parent.mkdir(parents=True, exist_ok=True)
    Path(statistics_dir).mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = ({"beam_options": beam_options} if runner == RUNNER_BEAM
                               else {"workers": workers, "piece_bytes": piece_bytes})
    result, stats = engine(files, spec, output_dirs, rejects_file, Path(statistics_dir), chunk_rows=chunk_rows,
                           split_seed=split_seed, **options)
    if result.rows_read != result.rows_ok + result.rows_rejected:  # the contract; a bug if it breaks
        raise AssertionError(f"row accounting broken: {result.rows_read} != {result.rows_ok} + {result.rows_rejected}")
    if statistics_view_path:
        view = Path(statistics_view_path)
        view.parent.mkdir(parents=True, exist_ok=True)
        view.write_text(render_statistics_markdown(stats, result), encoding="utf-8")
        result.statistics_view_path = str(view)
    if html_path:
        page = Path(html_path)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render_statistics_html(stats, result), encoding="utf-8")
        result.html_path = str(page)
    result.seconds = round(time.monotonic() - started, 3)
    split_text = ", ".join(f"{name} {count:,}" for name, count in result.rows_per_split.items())
    log.info("ingest: done: %s rows read, %s ok, %s rejected (%s) in %.1fs", f"{result.rows_read:,}",
             f"{result.rows_ok:,}", f"{result.rows_rejected:,}", split_text, result.seconds)
    _check_label_vocabulary(data_uri, spec, result)
    _check_rejects(data_uri, spec, result)
    log.info("%s", splits.report(result.rows_per_split, result.distinct_per_split, spec.split))
    splits.check(result.rows_per_split, result.distinct_per_split, spec.split, data_uri)
    _check_label(data_uri, spec, stats)
    return result


def reject_summary(reasons: dict[str, int], top: int = TOP_REASONS) -> str:
    """``column 'x': outside range (120), ragged row (...) (3)``: the most frequent reasons with their counts."""
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{reason} ({count:,})" for reason, count in ranked[:top])
    return text + (f" and {len(ranked) - top} more" if len(ranked) > top else "")


def _check_label_vocabulary(data_uri: str, spec: FeatureSpec, result: IngestResult) -> None:
    """A class label whose vocabulary misses most of the data's labels is a wrong spec, not bad rows."""
    if not spec.is_classification or not result.rows_read:
        return
    outside = result.reject_reasons.get(f"column {spec.label.name!r}: not in vocabulary", 0)
    if outside <= LABEL_MISMATCH_SHARE * result.rows_read:
        return
    seen = _unknown_labels(result.rejects_path, spec.label.name)
    examples = f" (e.g. {', '.join(seen)})" if seen else ""
    raise DataError(f"{spec.source}: label.vocabulary {list(spec.classes)} does not match the data: {outside:,} of "
                    f"{result.rows_read:,} rows of {data_uri} have another label{examples}; every row with its "
                    f"reason: {result.rejects_path}")


def _unknown_labels(rejects_path: str, label: str) -> list[str]:
    """A few label values the rejects file names as outside the vocabulary (best effort)."""
    import json

    prefix = f"column {label!r}: value "
    seen: list[str] = []
    try:
        with open(rejects_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if number >= REJECT_LINES_SCANNED or len(seen) >= LABEL_EXAMPLES:
                    break
                reason = json.loads(line).get("reason", "")
                if reason.startswith(prefix) and reason.endswith(" is not in the vocabulary"):
                    value = reason[len(prefix):-len(" is not in the vocabulary")]
                    if value not in seen:
                        seen.append(value)
    except (OSError, ValueError):
        return seen
    return seen


def _check_label(data_uri: str, spec: FeatureSpec, stats: dict[str, Any]) -> None:
    """Every class needs training rows (refused here, before anything is trained); an int label with a
    handful of values and no vocabulary gets a warning (it is trained as a regression label)."""
    label = spec.label.name
    if spec.is_classification:
        counts = stats["train"]["columns"][label]["class_counts"]
        rows = ", ".join(f"{c['value']}: {c['count']:,}" for c in counts)
        present = [c["value"] for c in counts if c["count"]]
        if len(present) < 2:
            raise DataError(f"{data_uri}: the training split holds {'one class' if present else 'no class'} of label "
                            f"{label!r} only ({rows}): a classifier needs rows of at least 2 classes; nothing trained")
        empty = [c["value"] for c in counts if not c["count"]]
        if empty:
            raise DataError(f"{data_uri}: the training split has no row of class {empty[0]!r} of label {label!r} "
                            f"({rows}): add rows of it, or remove it from label.vocabulary in {spec.source}; "
                            "nothing trained")
        return
    entry = stats["all"]["columns"][label]
    if entry.get("distinct") is not None:
        hint = int_label_hint(spec, [item["value"] for item in entry.get("top_values") or []])
        if hint:
            log.warning("ingest: warning: %s", hint)


def _check_rejects(data_uri: str, spec: FeatureSpec, result: IngestResult) -> None:
    """Fail here when nothing is usable (later steps would fail without the reason); warn when much is rejected."""
    if result.rows_ok == 0:
        if result.rows_read == 0:
            raise DataError(f"{data_uri}: no data rows after the header in {len(result.files)} file(s): "
                            "nothing to train on")
        raise DataError(f"{data_uri}: 0 of {result.rows_read:,} rows passed validation; top reasons: "
                        f"{reject_summary(result.reject_reasons)}; every row with its reason: {result.rejects_path}")
    share = result.rows_rejected / result.rows_read
    if share > spec.reject_warning_share:
        log.warning(
            "ingest: warning: %.1f%% of %s rows rejected (more than reject_warning_share %.3g of %s); "
            "top reasons: %s; see %s", 100 * share, f"{result.rows_read:,}", spec.reject_warning_share, spec.source,
            reject_summary(result.reject_reasons), result.rejects_path)
