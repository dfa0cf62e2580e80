"""Per-worker bookkeeping of refused connections: a rate-limited log and the pool of unfinished heads.

Slow clients must not starve the server, and neither must its log: a flood of refusals (each
connection over the limit, each head that never completes) is one line at the first refusal of
an interval and one summary line at its end, never one line per connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

REFUSAL_LOG_INTERVAL_S = 10.0


class RefusalLog:
    """Counts refusals by reason; logs the first of each interval in full, then one summary per interval.

    Args:
        logger: where the lines go (WARNING).
        interval_s: length of one interval.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, logger: logging.Logger, interval_s: float = REFUSAL_LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._interval_started: float | None = None
        self._flush_handle: asyncio.TimerHandle | None = None

    def add(self, reason: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Count one refused connection; ``loop`` (when given) schedules the summary at the interval's end."""
        now = self.clock()
        if self._interval_started is not None and now - self._interval_started >= self.interval_s:
            self.flush()
        if self._interval_started is None:
            self._interval_started = now
            self.logger.warning("refused a connection: %s (more refusals in the next %g s are summed up in one line)",
                                reason, self.interval_s)
            if loop is not None:
                self._flush_handle = loop.call_later(self.interval_s, self.flush)
            return
        self.counts[reason] += 1

    def flush(self) -> None:
        """Log the summary of the interval that is running (nothing when nothing more was refused)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.counts:
            total = sum(self.counts.values())
            parts = ", ".join(f"{count} {reason}" for reason, count in self.counts.most_common())
            self.logger.warning("refused %d more connection%s in the last %g s: %s", total,
                                "" if total == 1 else "s", self.interval_s, parts)
        self.counts.clear()
        self._interval_started = None


class PendingHeads:
    """Connections still reading their request head, oldest first, at most ``limit`` of them.

    They do not count against the concurrency limit; past ``limit`` the oldest is closed to make
    room (its head has had the most time, so it is the likeliest to be a slow client).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._connections: OrderedDict[Any, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, connection: Any) -> list[Any]:
        """Add ``connection``; returns the oldest ones removed to stay within the limit (to be closed)."""
        evicted = []
        while len(self._connections) >= self.limit:
            evicted.append(self._connections.popitem(last=False)[0])
        self._connections[connection] = None
        return evicted

    def discard(self, connection: Any) -> None:
        self._connections.pop(connection, None)


class WorkerGuard:
    """What the protocol instances of one worker share (kept on uvicorn's config object)."""

    def __init__(self, logger: logging.Logger, max_pending: int, interval_s: float = REFUSAL_LOG_INTERVAL_S):
        self.pending = PendingHeads(max_pending)
        self.refusals = RefusalLog(logger, interval_s)


class CountingLogger(logging.LoggerAdapter):
    """uvicorn's ``uvicorn.error`` logger where "Exceeded concurrency limit." goes to a RefusalLog instead."""

    CONCURRENCY_MESSAGE = "Exceeded concurrency limit."

    def __init__(self, logger: logging.Logger, refusals: RefusalLog, reason: str,
                 loop: asyncio.AbstractEventLoop | None = None):
        super().__init__(logger, {})
        self.refusals = refusals
        self.reason = reason
        self.loop = loop

    @property
    def level(self) -> int:  # uvicorn reads logger.level for its trace lines
        return self.logger.level

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if msg == self.CONCURRENCY_MESSAGE:
            self.refusals.add(self.reason, self.loop)
            return
        super().warning(msg, *args, **kwargs)
