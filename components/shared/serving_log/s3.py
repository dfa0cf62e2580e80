"""The serving log's ``s3://`` sink: the writer's lines buffered in memory, uploaded as objects.

The same lines a local log writes go into one object ``prefix/serving-<start ns>-<pid>-<seq>.jsonl``
per rotation (the same line / byte bounds), after ``flush_interval_s`` seconds, and at
``ServingInputLog.close``. Uploads run in a background thread (pyarrow's S3 filesystem with the
endpoint and credentials of the environment, as the training pods' staging does); at most
``max_pending`` sealed objects wait for upload, rows that arrive beyond that are dropped and
counted (``rows_dropped``), so memory stays bounded when the bucket is unreachable; a failed
upload is counted in ``errors``, never raised. After each upload the oldest ``serving-*``
objects beyond ``max_files`` under the prefix are deleted.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from mlengine.components.shared.serving_log.format import is_log_file_name, log_file_name

if TYPE_CHECKING:
    from mlengine.components.shared.serving_log.writer import ServingInputLog


class S3Sink:
    """The s3:// side of a :class:`ServingInputLog`: a buffer, sealed objects, one uploader thread.

    ``add`` runs under the log's lock; uploads and pruning run in the thread, outside that lock.
    """

    def __init__(self, log: ServingInputLog):
        from mlengine.components.shared import storage

        self.log = log
        self.bucket, key = storage.split_s3_uri(log.uri)
        self.prefix = key.strip("/") + "/" if key.strip("/") else ""
        self.buffer: list[bytes] = []
        self.buffer_bytes = 0
        self.buffer_since = 0.0
        self.pending: list[tuple[str, bytes, int]] = []  # (key, body, rows) sealed, not yet uploaded
        self.cond = threading.Condition(log._lock)
        self.thread: threading.Thread | None = None
        self.closing = False
        self.busy = False
        self.fs = None

    # under log._lock ------------------------------------------------------------------------------
    def add(self, lines: list[bytes]) -> int:
        """Buffer lines, sealing an object at each bound; returns the rows kept (others dropped)."""
        log = self.log
        kept = 0
        for line in lines:
            if self.buffer and (len(self.buffer) >= log.max_lines_per_file
                                or self.buffer_bytes + len(line) > log.max_bytes_per_file):
                self._seal()
            if not self.buffer and len(self.pending) >= log.max_pending:
                break  # no room: the bucket is slow or failing; drop (counted) rather than grow
            if not self.buffer:
                self.buffer_since = time.monotonic()
            self.buffer.append(line)
            self.buffer_bytes += len(line)
            kept += 1
        if self.buffer and (len(self.buffer) >= log.max_lines_per_file or self.buffer_bytes >= log.max_bytes_per_file):
            self._seal()
        self._ensure_thread()
        return kept

    def _seal(self) -> None:
        if not self.buffer:
            return
        if len(self.pending) >= self.log.max_pending:  # only reached from flush/close/timer
            self.log._counts["rows_dropped"] += len(self.buffer)
        else:
            self.log._sequence += 1
            name = log_file_name(self.log._pid, self.log._sequence)
            self.pending.append((self.prefix + name, b"".join(self.buffer), len(self.buffer)))
            self.log._counts["files_opened"] += 1
        self.buffer, self.buffer_bytes = [], 0
        self.cond.notify_all()

    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.closing = False
            self.thread = threading.Thread(target=self._run, name="serving-log-s3", daemon=True)
            self.thread.start()

    # the uploader thread ------------------------------------------------------------------------
    def _run(self) -> None:
        log = self.log
        while True:
            with self.cond:
                while not self.pending:
                    if self.buffer and (self.closing or time.monotonic() - self.buffer_since >= log.flush_interval_s):
                        self._seal()
                        continue
                    if self.closing:
                        return
                    waited = time.monotonic() - self.buffer_since
                    self.cond.wait(max(log.flush_interval_s - waited, 0.01) if self.buffer else log.flush_interval_s)
                key, body, rows = self.pending[0]
                self.busy = True
            try:
                self._upload(key, body)
                uploaded = True
            except Exception as err:  # counted, never raised; the object is given up
                uploaded = False
                log._record_error(err)
            if uploaded:
                try:
                    self._prune(key)
                except Exception as err:
                    log._record_error(err)
            with self.cond:  # popped after pruning, so a flush() returns with the prefix bounded
                self.pending.pop(0)
                self.busy = False
                if uploaded:
                    log._counts["objects_uploaded"] += 1
                    log._counts["rows_uploaded"] += rows
                else:
                    log._counts["rows_dropped"] += rows
                self.cond.notify_all()

    def _filesystem(self):
        if self.fs is None:
            from mlengine.components.shared.staging import s3_filesystem

            self.fs = s3_filesystem(self.log.uri)
        return self.fs

    def _upload(self, key: str, body: bytes) -> None:
        with self._filesystem().open_output_stream(f"{self.bucket}/{key}") as stream:
            stream.write(body)

    def _prune(self, newest: str) -> None:
        """Delete the oldest ``serving-*.jsonl`` objects under the prefix beyond ``max_files``."""
        import pyarrow.fs as pafs

        fs = self._filesystem()
        base = f"{self.bucket}/{self.prefix}".rstrip("/")
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
        names = sorted(info.base_name for info in infos if info.type == pafs.FileType.File
                       and is_log_file_name(info.base_name))
        newest_name = newest.rpartition("/")[2]
        older = [name for name in names if name != newest_name]
        for name in older[:max(len(names) - self.log.max_files, 0)]:
            try:
                fs.delete_file(f"{base}/{name}")
                with self.cond:
                    self.log._counts["files_deleted"] += 1
            except FileNotFoundError:  # another writer pruned it first
                pass

    # flush / close (caller's thread, not under the lock) -----------------------------------------
    def flush(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            self._seal()
            if self.pending:
                self._ensure_thread()
            while self.pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.cond.wait(left)

    def close(self, timeout: float | None) -> None:
        self.flush(timeout)
        with self.cond:
            self.closing = True
            self.cond.notify_all()
