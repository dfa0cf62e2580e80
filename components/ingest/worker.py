"""One task of the local engine: its pieces read, validated, split and written as Parquet parts.

``run_task`` runs in the engine's process or in a worker process (``init_worker``), and touches
nothing shared: its Parquet parts and reject lines go to temporary files named after the task
(``TEMP_PART``, ``TEMP_REJECTS``), which the engine renames / concatenates in task order, and its
statistics come back as mergeable accumulators (``TaskOutcome``).

Within a task three threads overlap (pyarrow and numpy release the GIL): a reader thread reads
the next chunks and splits them into cells (the C++ parse), the calling thread validates and
hashes them (``chunks.validate_chunk``, shared with the Beam path) and updates the statistics of
the train split and of the other rows, a writer thread writes the Parquet row groups; each
hand-off queue is bounded, so a task's memory stays flat: at most ``PREFETCH_CHUNKS`` + 2 chunks
of ``chunk_rows`` lines, ``ROW_GROUP_ROWS`` buffered rows per split plus ``PENDING_WRITES`` row
groups, and two statistics accumulators (bounded samples and value counts).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from mlengine.components.ingest.chunks import ValidatedChunk, take, validate_chunk
from mlengine.components.ingest.convert import ARROW_TYPES, typed_default
from mlengine.components.ingest.csvreader import iter_cell_chunks
from mlengine.components.ingest.pieces import Task, open_piece
from mlengine.components.ingest.splits import DistinctSketch, SplitPlan
from mlengine.components.ingest.statistics import SAMPLE_SIZE, StatisticsAccumulator
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.components.shared.processes import die_with_parent
from mlengine.constants import SPLITS

PART_MAX_ROWS = 1_000_000  # a new Parquet part after this many rows, so readers can parallelise by file
ROW_GROUP_ROWS = 65_536  # rows buffered per split before a row group is written
TYPED_PARSE = True  # numeric columns typed by the C++ CSV parser (False: string cells, then cast; tests)
PREFETCH_CHUNKS = 1  # chunks parsed ahead by the reader thread besides the one it parses (2: 20 MB more, no faster)
PENDING_WRITES = 2  # row groups waiting for the Parquet writer thread (bounds memory)
TEMP_PART = ".part-t{task:05d}-{index:04d}.tmp"  # not part-*.parquet: no reader takes it for output
TEMP_PART_GLOB = ".part-t*.tmp"
TEMP_REJECTS = ".{name}.t{task:05d}-{piece:04d}.tmp"  # beside the rejects file
TEMP_REJECTS_GLOB = ".{name}.t*.tmp"
PARENT_POLL_S = 1.0  # how often a worker checks that the engine's process is still alive


@dataclass(frozen=True)
class TaskContext:
    """What every task of one ingest needs (pickled to the workers with each task)."""

    spec: FeatureSpec
    output_dirs: dict[str, str]
    rejects_file: str
    chunk_rows: int
    plan: SplitPlan
    typed_parse: bool = True
    overlap: bool = True  # reader and writer threads beside the validating one (False: one thread)
    # the S3/MinIO settings as the engine's process has them now: a pool started earlier (forkserver)
    # has the environment of its start, not of this ingest
    storage_env: dict[str, str] = field(default_factory=dict)


COUNT_FIELDS = ("rows_read", "rows_ok", "rows_rejected", "blank_lines")


def add_counts(total: Any, part: Any, reasons: Counter[str]) -> None:
    """Add ``part``'s row counts (``COUNT_FIELDS``) to ``total`` and its reject reasons to ``reasons``.

    One place for the sums a chunk adds to its task's outcome and a task's outcome adds to the
    ingest's result, so the two cannot count differently.
    """
    for name in COUNT_FIELDS:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    reasons.update(part.reasons)


@dataclass
class TaskOutcome:
    """One task's counts, files and statistics, merged by the engine in task order."""

    index: int
    rows_read: int = 0
    rows_ok: int = 0
    rows_rejected: int = 0
    blank_lines: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rows_per_split: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    distinct: dict[str, DistinctSketch] = field(default_factory=lambda: {s: DistinctSketch() for s in SPLITS})
    parts: dict[str, list[str]] = field(default_factory=dict)  # split -> temporary parts, in row order
    lines: list[int] = field(default_factory=list)  # per piece: its physical lines
    rejects: list[str | None] = field(default_factory=list)  # per piece: its temporary rejects file, if any
    train: StatisticsAccumulator | None = None
    other: StatisticsAccumulator | None = None
    seconds: float = 0.0


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
    """Writes one task's rows of one split as numbered temporary Parquet parts (renamed by the engine),
    buffering rows into decent row groups."""

    def __init__(self, folder: Path, schema: pa.Schema, task: int, background: _WriterThread | None = None):
        self.background = background
        self.folder = folder
        self.schema = schema
        self.task = task
        # dictionary-encoding float columns costs 5x the write time for little gain
        self.dictionary_columns = [f.name for f in schema if not pa.types.is_floating(f.type)]
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
            path = self.folder / TEMP_PART.format(task=self.task, index=len(self.paths))
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
        return self.paths

    def abort(self) -> None:
        if self.background is not None:
            self.background.shutdown()
        if self._writer is not None:
            self._writer.close()
            self._writer = None




_DONE = object()


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




class _TaskIngestor:
    def __init__(self, task: Task, context: TaskContext, stop: threading.Event | None = None):
        spec = context.spec
        self.stop = stop
        self.task = task
        self.context = context
        self.columns = spec.all_columns
        self.names = [col.name for col in self.columns]
        self.defaults = {col.name: typed_default(col, spec.source) for col in self.columns}
        self.column_types = {col.name: ARROW_TYPES[col.type] for col in self.columns if col.is_numeric}
        self.schema = pa.schema([pa.field(col.name, ARROW_TYPES[col.type], nullable=False) for col in self.columns])
        self.outcome = TaskOutcome(task.index, train=StatisticsAccumulator(spec, SAMPLE_SIZE),
                                   other=StatisticsAccumulator(spec, SAMPLE_SIZE))
        self.background = _WriterThread() if context.overlap else None
        self.writers = {name: _SplitWriter(Path(context.output_dirs[name]), self.schema, task.index, self.background)
                        for name in SPLITS}

    def run(self) -> TaskOutcome:
        rejects_file = Path(self.context.rejects_file)
        for number, piece in enumerate(self.task.pieces):
            temp = rejects_file.parent / TEMP_REJECTS.format(name=rejects_file.name, task=self.task.index,
                                                              piece=number)
            with open_piece(piece) as (stream, header), _LazyText(temp) as rejects:
                types = self.column_types if self.context.typed_parse else None
                chunks = iter_cell_chunks(stream, header, self.context.chunk_rows, piece.uri,
                                          first_line=piece.first_line, column_types=types,
                                          first_offset=piece.start if piece.start >= 0 else header.size)
                if self.context.overlap:
                    chunks = _prefetched(chunks)
                lines = 0
                try:
                    for chunk in chunks:
                        if self.stop is not None and self.stop.is_set():
                            raise TaskStopped(f"task {self.task.index} stopped")
                        lines += len(chunk) + chunk.blank_lines
                        done = validate_chunk(self.columns, self.defaults, piece.uri, chunk, self.context.plan)
                        self._add_chunk(done, rejects)
                finally:
                    chunks.close()  # stops the reader thread before the stream closes
            self.outcome.lines.append(lines)
            self.outcome.rejects.append(str(temp) if rejects.opened else None)
        for split, writer in self.writers.items():
            self.outcome.parts[split] = writer.close()
        if self.background is not None:
            self.background.shutdown()
        return self.outcome

    def _add_chunk(self, done: ValidatedChunk, rejects: _LazyText) -> None:
        outcome = self.outcome
        add_counts(outcome, done, outcome.reasons)
        if done.rejects:
            rejects.write("\n".join(done.rejects) + "\n")
        for split, rows in done.splits.items():
            if len(rows) == 0:
                continue
            # the rows gathered once, for the statistics and the Parquet table
            values = {name: take(done.values[name], rows) for name in self.names}
            statistics = outcome.train if split == "train" else outcome.other
            statistics.update(values, {name: done.missing[name][rows] for name in self.names}, done.keys[rows])
            outcome.rows_per_split[split] += len(rows)
            outcome.distinct[split].update(done.keys[rows])
            self.writers[split].write(pa.table(values, schema=self.schema))

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


class _LazyText:
    """A text file created on the first write (most pieces reject nothing: no empty files)."""

    def __init__(self, path: Path):
        self.path = path
        self.opened = False
        self._handle: TextIO | None = None

    def write(self, text: str) -> None:
        if self._handle is None:
            self._handle = self.path.open("w", encoding="utf-8")
            self.opened = True
        self._handle.write(text)

    def __enter__(self) -> _LazyText:
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self._handle is not None:
            self._handle.close()


class TaskStopped(Exception):
    """The engine asked a task running on its thread to stop (another task failed, or Ctrl-C)."""


def run_task(task: Task, context: TaskContext, stop: threading.Event | None = None) -> TaskOutcome:
    """Ingest one task's pieces into temporary parts and rejects files; its counts and statistics.

    ``stop`` (a task on a thread of the engine's process) is checked before every chunk.
    """
    started = time.monotonic()
    os.environ.update(context.storage_env)
    ingestor = _TaskIngestor(task, context, stop)
    try:
        outcome = ingestor.run()
    except BaseException:
        ingestor.abort()
        raise
    outcome.seconds = time.monotonic() - started
    return outcome


def init_worker(engine_pid: int, arrow_threads: int) -> None:
    """Set up a worker process: it dies with the engine's process and leaves Ctrl-C to it.

    Linux signals the worker (SIGKILL) when the process that started it exits (the engine's
    process, or the forkserver, which exits with it); a thread also polls the engine's pid, for
    other systems and for a parent that was itself killed before the worker was set up.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine stops the workers; no traceback from each
    die_with_parent(os.getppid(), signal.SIGKILL)
    pa.set_cpu_count(arrow_threads)
    threading.Thread(target=_exit_without, args=(engine_pid,), name="ingest-parent-watch", daemon=True).start()


def _exit_without(pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, someone else's (cannot happen for our parent; keep waiting)
            continue

