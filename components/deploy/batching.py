"""An asyncio micro-batcher: concurrent requests share one model call.

The model runs on the event loop thread (``inline``, the server's default: no thread hand-off,
as KServe runs a synchronous predict) or in one model thread. While it is busy, requests that
arrive queue up (on the loop, or in the sockets while an inline call runs); when it is free,
everything queued (up to ``max_batch_rows``) goes into the next call as one batch and the
results are split back per request. A lone request therefore waits for nothing (no fixed
batching window adds latency at concurrency 1), and under load the batch size grows with the
backlog, so the per-call overhead of the SavedModel is paid once per batch instead of once per
request. ``max_wait_s`` optionally holds the first request of a batch a little longer to let
more join (0 by default; useful only when requests arrive in bursts).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Columns = dict[str, np.ndarray]


@dataclass
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """``await batcher.submit(columns, rows)`` -> that request's rows of the model's result.

    ``run_batch(columns)`` returns one array (rows first) or a dict of them (a classifier's
    ``label`` and ``probabilities``: each request gets its own rows of every array). It is
    called one call at a time, in a dedicated thread or, with ``inline``, on the loop thread.
    Bind one batcher to one event loop (the server creates one per worker process).
    """

    def __init__(self, run_batch: Callable[[Columns], np.ndarray | dict[str, np.ndarray]],
                 max_batch_rows: int = 1024, max_wait_s: float = 0.0,
                 executor: concurrent.futures.Executor | None = None, inline: bool = False):
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows must be at least 1")
        self._run_batch = run_batch
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_s
        self.inline = inline  # run the model on the event loop thread: no thread hand-off, no overlap
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self._queue: list[_Pending] = []
        self._drainer: asyncio.Task | None = None
        self.calls = 0  # model calls made (tests and benchmarks read these)
        self.requests = 0

    async def submit(self, columns: Columns, rows: int) -> np.ndarray | dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        pending = _Pending(columns, rows, loop.create_future())
        self._queue.append(pending)
        self.requests += 1
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if self.max_wait_s > 0 and len(self._queue) == 1:
                await asyncio.sleep(self.max_wait_s)
            else:
                await asyncio.sleep(0)  # let requests already parsed in this loop tick join
            batch = self._take()
            merged = _merge([p.columns for p in batch])
            try:
                if self.inline:
                    outputs = self._run_batch(merged)
                else:
                    outputs = await loop.run_in_executor(self._executor, self._run_batch, merged)
            except Exception as err:  # every waiter gets the model's error
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(err)
                continue
            finally:
                self.calls += 1
            start = 0
            for pending in batch:
                stop = start + pending.rows
                if not pending.future.done():  # the client may have gone away
                    pending.future.set_result(_rows(outputs, start, stop))
                start = stop

    async def run_alone(self, columns: Columns) -> np.ndarray:
        """One model call for a request that is a full batch by itself (same thread, no merging)."""
        if self.inline:
            return self._run_batch(columns)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_batch, columns)

    def _take(self) -> list[_Pending]:
        batch = [self._queue[0]]
        rows = batch[0].rows
        index = 1
        while index < len(self._queue) and rows + self._queue[index].rows <= self.max_batch_rows:
            rows += self._queue[index].rows
            batch.append(self._queue[index])
            index += 1
        del self._queue[:index]
        return batch

    def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _rows(result, start: int, stop: int):
    """Rows ``start:stop`` of a model result: one array, or each array of a dict of outputs."""
    if isinstance(result, dict):
        return {name: values[start:stop] for name, values in result.items()}
    return result[start:stop]


def _merge(parts: list[Columns]) -> Columns:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
