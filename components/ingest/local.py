"""The local engine of ingest: every core of this machine, the same output whatever their number.

``executor.run`` calls ``ingest_local``, which

1. cuts the input into pieces (``pieces.py``: files, and byte ranges of large uncompressed local
   files cut at line ends; gzip and S3 files whole) and groups them into tasks;
2. runs the tasks on ``workers`` processes: this one and ``workers - 1`` pool processes
   (``worker.run_task``: read, validate, hash, split, write the task's own Parquet parts and
   reject lines to temporary files, keep mergeable statistics). One worker runs everything here,
   without a pool;
3. merges the outcomes as if they had come in task order (``_Merger``), so the output does not
   depend on which process ran what: Parquet parts renamed ``part-00000.parquet``, ... in task
   order (read in name order, each split's rows come in file order, as with one worker; only the
   cut into parts and row groups depends on the worker count), reject lines appended in file and
   line order with absolute line numbers, counts summed, statistics merged (moments by Chan et
   al.'s update, in task order; the bottom-k hash sample behind the quantiles and histograms
   merges exactly, so they do not depend on the worker count at all; value counts are exact up
   to ``MAX_TRACKED_VALUES`` distinct values, past that approximate and flagged so whatever the
   worker count, but not the same approximation).

A process's reader and writer threads (``worker.py``) only pay when it has cores to spare: with
as many workers as cores each task runs on one thread.

Memory: each process holds one task's bounded working set (see ``worker.py``: a few chunks, the
row groups being written, two statistics samples). The engine merges each outcome's statistics
as it arrives and keeps of it, until the tasks before it are in, only file names, line counts
and per-column moments (a few numbers); no task waits queued behind a busy worker.
Total: about ``workers`` times one worker's memory, whatever the input size.

Workers are started with ``START_METHOD`` (no ``fork``: the parent may hold threads, Arrow's
pools or TensorFlow; the fork server imports worker.py and pandas once, then forks each worker,
about as fast as ``spawn`` for one ingest and faster for many workers), die with this process
(``worker.init_worker``) and are killed when ingest fails or is interrupted (Ctrl-C reaches
this process; the workers ignore it). A script that calls ``executor.run`` with more than one
worker needs the ``if __name__ == "__main__":`` guard, as any user of these start methods does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import multiprocessing
import os
import shutil
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from json.encoder import encode_basestring as _json_string
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlengine.components.ingest import worker
from mlengine.components.ingest.executor import IngestResult, arrow_schema
from mlengine.components.ingest.pieces import Task, plan_tasks
from mlengine.components.ingest.splits import DistinctSketch, SplitPlan
from mlengine.components.ingest.statistics import SAMPLE_SIZE, SCOPES, StatisticsAccumulator, build_statistics
from mlengine.components.ingest.worker import (
    TEMP_PART_GLOB,
    TEMP_REJECTS_GLOB,
    TaskContext,
    TaskOutcome,
    add_counts,
    init_worker,
    run_task,
)
from mlengine.components.ingest.workerserver import START_METHOD, default_workers, start_server
from mlengine.components.shared import storage
from mlengine.components.shared.accumulators import Moments
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.constants import CONTAINER_PASSTHROUGH_ENV, PARQUET_PART_PATTERN, SPEC_FILE, SPLITS, STATISTICS_FILE
from mlengine.errors import MlengineError

log = logging.getLogger("mlengine.ingest")


def ingest_local(files: list[str], spec: FeatureSpec, output_dirs: dict[str, str], rejects_file: Path,
                 statistics_dir: Path, *, chunk_rows: int, split_seed: int, workers: int = 0,
                 piece_bytes: int = 0) -> tuple[IngestResult, dict[str, Any]]:
    """Ingest ``files`` (headers already checked) on ``workers`` processes (0: ``default_workers()``).

    Returns the result and the statistics.json document it wrote. ``piece_bytes`` (0: from the
    input size and the worker count) is the size of the byte ranges a large file is cut into.
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 (every core) or more, got {workers}")
    wanted = workers or default_workers()
    tasks = plan_tasks(files, [col.name for col in spec.all_columns], spec.delimiter, wanted, piece_bytes)
    workers = max(1, min(wanted, len(tasks)))
    _prepare(output_dirs, rejects_file)
    # a process's reader and writer threads pay only on spare cores; else they just contend
    context = TaskContext(spec, dict(output_dirs), str(rejects_file), chunk_rows, SplitPlan.of(spec, split_seed),
                          worker.TYPED_PARSE, overlap=default_workers() > workers,
                          storage_env={key: os.environ[key] for key in CONTAINER_PASSTHROUGH_ENV if key in os.environ})
    log.info("ingest: %d task(s) from %d file(s) on %d worker process(es)", len(tasks), len(files), workers)
    try:
        with rejects_file.open("wb") as rejects:
            merger = _Merger(spec, output_dirs, rejects, files)
            _run_tasks(tasks, context, workers, merger.add)
        merger.result.rejects_path = str(rejects_file)
        merger.result.workers = workers
        stats = merger.finish(statistics_dir)
    except BaseException:
        _remove_temporaries(output_dirs, rejects_file)
        raise
    finally:
        release_memory()
    return merger.result, stats


def _prepare(output_dirs: dict[str, str], rejects_file: Path) -> None:
    """The split folders, without the parts of an earlier run (a re-run must not mix old parts in)."""
    for split in SPLITS:
        folder = Path(output_dirs[split])
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("part-*.parquet"):
            stale.unlink()
    _remove_temporaries(output_dirs, rejects_file)


def _remove_temporaries(output_dirs: dict[str, str], rejects_file: Path) -> None:
    for split in SPLITS:
        for temp in Path(output_dirs[split]).glob(TEMP_PART_GLOB):
            temp.unlink(missing_ok=True)
    for temp in rejects_file.parent.glob(TEMP_REJECTS_GLOB.format(name=rejects_file.name)):
        temp.unlink(missing_ok=True)


# --- running the tasks ---------------------------------------------------------------------------
def _run_tasks(tasks: list[Task], context: TaskContext, workers: int,
               merge: Callable[[Task, TaskOutcome], None]) -> None:
    """Run every task (here, and on ``workers - 1`` pool processes); ``merge`` each outcome in task order."""
    if workers == 1:
        for task in tasks:
            merge(task, run_task(task, context))
        return
    threads = max(1, default_workers() // workers)  # Arrow's threads per process: the cores are shared
    mp_context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        start_server()  # if `start_early` has not: worker.py and pandas imported once, in the server
    pool = ProcessPoolExecutor(workers - 1, mp_context=mp_context, initializer=init_worker,
                               initargs=(os.getpid(), threads))
    saved_threads = pa.cpu_count()
    pa.set_cpu_count(threads)
    finished = False
    try:
        _schedule(tasks, context, workers, pool, merge)
        finished = True
    finally:
        pa.set_cpu_count(saved_threads)
        _shut_down(pool, kill=not finished)


def _schedule(tasks: list[Task], context: TaskContext, workers: int, pool: ProcessPoolExecutor,
              merge: Callable[[Task, TaskOutcome], None]) -> None:
    """One task at a time on each pool process and on a thread here; the next one as soon as one ends.

    No task waits in a queue behind a busy worker (the last ones would go to whichever was
    given them, not to the first free), and this thread only schedules and merges, so a worker
    that finishes gets its next task at once. The local task starts first: it works while the
    pool processes start.
    """
    pending = deque(tasks)
    running: dict[Future, int] = {}
    stop = threading.Event()
    here = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-task")
    try:
        while pending or running:
            if pending and not any(index < 0 for index in running.values()):
                task = pending.popleft()
                # a negative key marks the local task: the same outcome, merged the same way
                running[here.submit(run_task, task, context, stop)] = -1 - task.index
            while pending and sum(index >= 0 for index in running.values()) < workers - 1:
                task = pending.popleft()
                running[pool.submit(run_task, task, context)] = task.index
            wait(running, return_when=FIRST_COMPLETED)
            for future in [future for future in running if future.done()]:
                index = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    raise MlengineError("ingest: a worker process died (killed, or out of memory?); "
                                        "try fewer workers (--workers)") from None
                merge(tasks[index if index >= 0 else -1 - index], outcome)
    finally:
        stop.set()  # an error or Ctrl-C: the local task stops at its next chunk
        here.shutdown(wait=True)


def _shut_down(pool: ProcessPoolExecutor, kill: bool) -> None:
    """Wait for the idle pool, or (on an error or Ctrl-C) kill its workers mid-task."""
    if not kill:
        pool.shutdown(wait=True)
        return
    # the executor has no public way to stop a running task (Python 3.14 adds kill_workers)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=10)


# --- merging ---------------------------------------------------------------------------------------
class _Merger:
    """Adds task outcomes, in any order, to one result as if they had come in task order.

    Counts add up and the statistics merge as they come (the bottom-k sample and value counts do
    not depend on the order); what does is held, small, until the tasks before it are in: the
    moments (floating-point sums, merged in task order at the end), the Parquet parts (renamed to
    their final numbers) and the rejects (appended to the file with absolute line numbers).
    """

    def __init__(self, spec: FeatureSpec, output_dirs: dict[str, str], rejects, files: list[str]):
        self.spec = spec
        self.output_dirs = output_dirs
        self.rejects = rejects
        self.result = IngestResult(files=list(files), parts={split: [] for split in SPLITS})
        self.reasons: Counter[str] = Counter()
        self.distinct = {split: DistinctSketch() for split in SPLITS}
        # the train split and the other ok rows; "all" is their merge at the end
        self.train = StatisticsAccumulator(spec, SAMPLE_SIZE)
        self.other = StatisticsAccumulator(spec, SAMPLE_SIZE)
        self.moments: dict[int, tuple[dict[str, Moments], dict[str, Moments]]] = {}  # task -> (train, other)
        self.waiting: dict[int, tuple[Task, TaskOutcome]] = {}  # outcomes whose files wait for earlier tasks
        self.next_task = 0
        self.next_line: dict[str, int] = {}  # file -> line number of the line after the pieces placed so far

    def add(self, task: Task, outcome: TaskOutcome) -> None:
        result = self.result
        add_counts(result, outcome, self.reasons)
        for split in SPLITS:
            result.rows_per_split[split] += outcome.rows_per_split[split]
            self.distinct[split].merge(outcome.distinct[split])
        self.moments[task.index] = (outcome.train.detach_moments(), outcome.other.detach_moments())
        self.train.merge(outcome.train)
        self.other.merge(outcome.other)
        outcome.train = outcome.other = None  # the samples are merged: do not hold them while waiting
        self.waiting[task.index] = (task, outcome)
        while self.next_task in self.waiting:
            self._place(*self.waiting.pop(self.next_task))
            self.next_task += 1
        log.info("ingest: %s rows read (%s rejected) from %s", f"{result.rows_read:,}", f"{result.rows_rejected:,}",
                 storage.display_name(task.pieces[-1].uri))

    def _place(self, task: Task, outcome: TaskOutcome) -> None:
        """The task's parts under their final names and its rejects in the file, after the earlier tasks'."""
        parts = self.result.parts
        for split in SPLITS:
            for temp in outcome.parts.get(split, []):
                path = Path(self.output_dirs[split]) / PARQUET_PART_PATTERN.format(index=len(parts[split]))
                os.replace(temp, path)
                parts[split].append(str(path))
        for piece, lines, temp in zip(task.pieces, outcome.lines, outcome.rejects, strict=True):
            first = piece.first_line or self.next_line[piece.uri]
            self.next_line[piece.uri] = first + lines
            if temp is not None:
                self._append_rejects(Path(temp), piece.uri, 0 if piece.first_line else first)

    def _append_rejects(self, temp: Path, uri: str, offset: int) -> None:
        """A piece's reject lines, their line numbers moved by ``offset`` (0: already absolute)."""
        with temp.open("rb") as source:
            if not offset:
                shutil.copyfileobj(source, self.rejects)
            else:
                # the worker wrote `{"file": ..., "row": N, ...}` with N counted from the piece's first line
                prefix = f'{{"file": {_json_string(uri)}, "row": '.encode()
                for line in source:
                    number, rest = line[len(prefix):].split(b",", 1)
                    self.rejects.write(b"%s%d,%s" % (prefix, int(number) + offset, rest))
        temp.unlink()

    def finish(self, statistics_dir: Path) -> dict[str, Any]:
        """The empty splits' parts, statistics.json and the spec; returns the statistics."""
        result = self.result
        for index in sorted(self.moments):
            train, other = self.moments[index]
            self.train.attach_moments(train)
            self.other.attach_moments(other)
        schema = arrow_schema(self.spec)
        for split, parts in result.parts.items():
            if not parts:  # an empty split is still a readable dataset
                path = Path(self.output_dirs[split]) / PARQUET_PART_PATTERN.format(index=0)
                pq.write_table(schema.empty_table(), path)
                parts.append(str(path))
        result.reject_reasons = dict(self.reasons)
        result.distinct_per_split = {split: sketch.estimate() for split, sketch in self.distinct.items()}
        everything = StatisticsAccumulator(self.spec, SAMPLE_SIZE).merge(self.train)
        scopes = {"all": everything.merge(self.other), "train": self.train}
        stats = build_statistics(self.spec, {scope: scopes[scope] for scope in SCOPES}, result.summary())
        stats_path = statistics_dir / STATISTICS_FILE
        stats_path.write_text(json.dumps(stats, indent=1, ensure_ascii=False), encoding="utf-8")
        self.spec.save(statistics_dir / SPEC_FILE)
        result.statistics_path = str(stats_path)
        return stats


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
