"""The local engine of ingest: this process reads, validates, splits and writes (``executor.run`` calls it).

Vectorised throughout: numeric columns are typed by pyarrow's C++ CSV parser and checked on
the arrays (``convert.parse_typed_column``); only a chunk with a bad cell goes through the
string-cell path, which names every bad cell exactly, so the rejects do not depend on which path
ran. Three threads overlap (pyarrow and numpy release the GIL): a reader thread reads the next
chunks and splits them into cells (the C++ parse), the main thread validates and hashes them
(``chunks.validate_chunk``, shared with the Beam path) and updates the statistics of the train
split and of the other rows ("all" is their merge at the end), a writer thread writes the
Parquet row groups; each hand-off queue is bounded, so memory stays flat. (Validating on the
reader thread instead left the parse thread the longest: 8% slower on 2 cores.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlengine.components.ingest.chunks import ValidatedChunk, take, validate_chunk
from mlengine.components.ingest.convert import ARROW_TYPES, typed_default
from mlengine.components.ingest.csvreader import iter_cell_chunks, read_header
from mlengine.components.ingest.executor import IngestResult, arrow_schema, split_thresholds
from mlengine.components.ingest.statistics import SAMPLE_SIZE, SCOPES, StatisticsAccumulator, build_statistics
from mlengine.components.shared import storage
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.constants import PARQUET_PART_PATTERN, SPEC_FILE, SPLITS, STATISTICS_FILE

log = logging.getLogger("mlengine.ingest")
PART_MAX_ROWS = 1_000_000  # a new Parquet part after this many rows, so readers can parallelise by file
ROW_GROUP_ROWS = 65_536  # rows buffered per split before a row group is written
TYPED_PARSE = True  # numeric columns typed by the C++ CSV parser (False: string cells, then cast; tests)
PREFETCH_CHUNKS = 1  # chunks parsed ahead by the reader thread besides the one it parses (2: 20 MB more, no faster)
PENDING_WRITES = 2  # row groups waiting for the Parquet writer thread (bounds memory)


class _WriterThread:
    """Runs Parquet work on one background thread, in submission order (pyarrow releases the GIL).

    At most ``PENDING_WRITES`` jobs wait; an error in a job is raised by the next submit or ``wait``.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-parquet")
        self._pending: deque[Future] = deque()

    def submit(self, job: Callable[[], None]) -> None:
        while len(self._pending) >= PENDING_WRITES:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(job))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def shutdown(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        self._pending.clear()


class _SplitWriter:
    """Writes one split as numbered Parquet parts, buffering rows into decent row groups."""

    def __init__(self, folder: Path, schema: pa.Schema, background: _WriterThread | None = None):
        self.background = background
        self.folder = folder
        self.schema = schema
        # dictionary-encoding float columns costs 5x the write time for little gain
        self.dictionary_columns = [f.name for f in schema if not pa.types.is_floating(f.type)]
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("part-*.parquet"):  # a re-run must not mix old parts in
            stale.unlink()
        self.paths: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._part_rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer (as a background job when there is a writer thread)."""
        if not self._buffer:
            return
        tables = self._buffer
        self._buffer, self._buffered = [], 0
        if self.background is None:
            self._write(tables)
        else:
            self.background.submit(lambda: self._write(tables))

    def _write(self, tables: list[pa.Table]) -> None:
        table = pa.concat_tables(tables)
        if self._writer is None:
            path = self.folder / PARQUET_PART_PATTERN.format(index=len(self.paths))
            self._writer = pq.ParquetWriter(path, self.schema, use_dictionary=self.dictionary_columns)
            self.paths.append(str(path))
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._part_rows += table.num_rows
        if self._part_rows >= PART_MAX_ROWS:
            self._writer.close()
            self._writer, self._part_rows = None, 0

    def close(self) -> list[str]:
        self.flush()
        if self.background is not None:
            self.background.wait()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.paths:  # an empty split is still a readable dataset
            path = self.folder / PARQUET_PART_PATTERN.format(index=0)
            pq.write_table(self.schema.empty_table(), path)
            self.paths.append(str(path))
        return self.paths

    def abort(self) -> None:
        if self.background is not None:
            self.background.shutdown()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _Ingestor:
    def __init__(self, spec: FeatureSpec, output_dirs: dict[str, str], statistics_dir: Path, chunk_rows: int,
                 split_seed: int):
        self.spec = spec
        self.columns = spec.all_columns
        self.names = [col.name for col in self.columns]
        self.defaults = {col.name: typed_default(col, spec.source) for col in self.columns}
        self.column_types = {col.name: ARROW_TYPES[col.type] for col in self.columns if col.is_numeric}
        self.schema = arrow_schema(spec)
        self.chunk_rows = chunk_rows
        self.split_seed = split_seed
        self.thresholds = split_thresholds()
        self.result = IngestResult()
        self.reasons: Counter[str] = Counter()
        self.statistics_dir = statistics_dir
        # the train split and the other ok rows; "all" is their merge at the end, so each row
        # is added to one accumulator, not two
        self.train_statistics = StatisticsAccumulator(spec, SAMPLE_SIZE)
        self.other_statistics = StatisticsAccumulator(spec, SAMPLE_SIZE)
        self.background = _WriterThread()
        self.writers = {name: _SplitWriter(Path(output_dirs[name]), self.schema, self.background) for name in SPLITS}

    # --- per file ------------------------------------------------------------------------------
    def ingest_file(self, uri: str, rejects) -> None:
        with storage.open_binary(uri) as stream:
            header = read_header(stream, uri, self.names, self.spec.delimiter)
            name = storage.display_name(uri)
            types = self.column_types if TYPED_PARSE else None
            # the reader thread reads and splits into cells; this thread validates, keeps the
            # counts and statistics and hands the splits to the writer thread
            chunks = _prefetched(iter_cell_chunks(stream, header, self.chunk_rows, uri, column_types=types))
            try:
                for chunk in chunks:
                    done = validate_chunk(self.columns, self.defaults, uri, chunk, self.split_seed, self.thresholds)
                    self._add_chunk(done, rejects)
                    log.info("ingest: %s rows read (%s rejected) from %s", f"{self.result.rows_read:,}",
                             f"{self.result.rows_rejected:,}", name)
            finally:
                chunks.close()  # stops the reader thread before the stream closes

    def _add_chunk(self, done: ValidatedChunk, rejects) -> None:
        result = self.result
        result.rows_read += done.rows_read
        result.blank_lines += done.blank_lines
        result.rows_rejected += done.rows_rejected
        result.rows_ok += done.rows_ok
        self.reasons.update(done.reasons)
        if done.rejects:
            rejects.write("\n".join(done.rejects) + "\n")
        for split, rows in done.splits.items():
            if len(rows) == 0:
                continue
            # the rows gathered once, for the statistics and the Parquet table
            values = {name: take(done.values[name], rows) for name in self.names}
            statistics = self.train_statistics if split == "train" else self.other_statistics
            statistics.update(values, {name: done.missing[name][rows] for name in self.names}, done.keys[rows])
            result.rows_per_split[split] += len(rows)
            self.writers[split].write(pa.table(values, schema=self.schema))

    # --- finish ----------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        for writer in self.writers.values():  # the last row groups are written while the statistics are built
            writer.flush()
        self.result.reject_reasons = dict(self.reasons)
        self.statistics_dir.mkdir(parents=True, exist_ok=True)
        summary = self.result.summary()
        everything = StatisticsAccumulator(self.spec, SAMPLE_SIZE).merge(self.train_statistics)
        scopes = {"all": everything.merge(self.other_statistics), "train": self.train_statistics}
        stats = build_statistics(self.spec, {scope: scopes[scope] for scope in SCOPES}, summary)
        stats_path = self.statistics_dir / STATISTICS_FILE
        stats_path.write_text(json.dumps(stats, indent=1, ensure_ascii=False), encoding="utf-8")
        self.spec.save(self.statistics_dir / SPEC_FILE)
        self.result.statistics_path = str(stats_path)
        for split, writer in self.writers.items():
            self.result.parts[split] = writer.close()
        self.background.shutdown()
        return stats

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


_DONE = object()


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_memory() -> None:
    """Hand the memory freed by the ingest threads back to the OS before the next step runs.

    The reader and writer threads allocate from their own glibc malloc arenas and Arrow's
    allocator keeps freed pages cached; once they are done that memory is free but still
    resident, and whatever runs next in the process (the analyze pass) would add its own on top.
    """
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _prefetched(chunks: Iterator[ValidatedChunk]) -> Iterator[ValidatedChunk]:
    """The same chunks in the same order, read, split and validated by a second thread.

    That work (pyarrow, numpy: the GIL is mostly released) overlaps the statistics and Parquet
    writes of the previous chunk; at most ``PREFETCH_CHUNKS`` wait.
    """
    handoff: queue.Queue = queue.Queue(maxsize=PREFETCH_CHUNKS)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put((chunk, None)):
                    return
            put((_DONE, None))
        except BaseException as err:  # handed to the consumer, raised there
            put((None, err))

    reader = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    reader.start()
    try:
        while True:
            chunk, error = handoff.get()
            if error is not None:
                raise error
            if chunk is _DONE:
                return
            yield chunk
    finally:
        stop.set()
        reader.join()


def ingest_local(files: list[str], spec: FeatureSpec, output_dirs: dict[str, str], rejects_file: Path,
                 statistics_dir: Path, *, chunk_rows: int, split_seed: int) -> tuple[IngestResult, dict[str, Any]]:
    """Ingest ``files`` (headers already checked) in this process; returns the result and statistics.json."""
    ingestor = _Ingestor(spec, output_dirs, statistics_dir, chunk_rows, split_seed)
    ingestor.result.files = list(files)
    ingestor.result.rejects_path = str(rejects_file)
    try:
        with rejects_file.open("w", encoding="utf-8") as rejects:
            for uri in files:
                ingestor.ingest_file(uri, rejects)
        stats = ingestor.finish()
    except BaseException:
        ingestor.abort()
        raise
    finally:
        release_memory()
    return ingestor.result, stats
