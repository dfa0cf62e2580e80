"""uvicorn's httptools protocol with a head deadline, a read deadline and a bound on the request head."""

from __future__ import annotations

import asyncio
from typing import Any

from mlengine.components.deploy.http.errors import problem
from mlengine.components.deploy.http.refusals import CountingLogger, WorkerGuard
from mlengine.components.deploy.kserve_compat import kserve_argv

with kserve_argv():
    import orjson
    from kserve.logging import logger
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (what stock KServe runs) where a request must arrive whole in time.

    uvicorn only times out idle keep-alive connections *between* requests: a fresh connection
    that sends nothing, or a client that trickles its head or body a byte at a time, holds a
    connection (and its slot in ``limit_concurrency``) forever. Here a deadline runs from the
    opening of a connection, and on a kept-alive connection from the first byte of each next
    request, until the request is read completely. When it passes, a client that sent part of
    a request gets 408, and the connection is closed (a handler waiting for the body sees a
    disconnect). Idle time between requests stays uvicorn's keep-alive timeout.

    Slow heads: the request head (line and headers) has its own, shorter deadline
    (``config.head_timeout_s``), and a connection only takes a slot of ``limit_concurrency``
    once its head is complete. Until then it is in the worker's pool of pending heads, bounded
    by ``config.max_pending_heads`` (the oldest closed first), so clients dribbling heads can
    neither fill the slots nor grow memory without bound. Refusals (503 over the limit, deadlines,
    evictions) are logged at a bounded rate (:class:`RefusalLog`), not one line per connection.

    httptools buffers a head of any size, so the bytes of an unfinished head are counted here:
    past ``config.max_head_bytes`` the client gets 431 and the connection is closed. That bound
    is twice the header limit, so :class:`RequestGuardMiddleware`'s exact check (431) sees every
    head within the limit whole, however it was split into packets.
    """

    def __init__(self, config, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self.read_timeout_s = getattr(config, "read_timeout_s", None)
        self.max_head_bytes = getattr(config, "max_head_bytes", None)
        self._read_timer: asyncio.TimerHandle | None = None
        self._request_started = False  # a byte of the request being read has come (the timer runs until it is read)
        self._head_open = False  # between the first byte of a request and the end of its headers
        self._head_bytes = 0
        self.head_timeout_s = getattr(config, "head_timeout_s", None)
        self._head_timer: asyncio.TimerHandle | None = None
        self._pending = False  # in the pending-heads pool, not in uvicorn's connections
        self.guard: WorkerGuard | None = None
        if self.head_timeout_s:
            self.guard = getattr(config, "worker_guard", None)
            if self.guard is None:  # one per worker process: the config is that worker's own
                self.guard = config.worker_guard = WorkerGuard(logger, getattr(config, "max_pending_heads", 2048))
            self.logger = CountingLogger(self.logger, self.guard.refusals,
                                         f"over the concurrency limit of {self.limit_concurrency}", self.loop)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_read_timer()
        if self.guard is not None:
            self.connections.discard(self)  # no slot until its head is complete
            self._pending = True
            for oldest in self.guard.pending.add(self):
                oldest._evicted()
            self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        head_was_open = self._head_open
        super().data_received(data)
        if self._head_open and self.max_head_bytes and not self.transport.is_closing():
            # a head that began in this chunk counts the whole chunk: at most one chunk too many
            self._head_bytes = self._head_bytes + len(data) if head_was_open else len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, f"the request line and headers are larger than the limit of "
                                  f"{self.max_head_bytes // 2} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = self._head_open = True
        self._start_read_timer()
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._cancel_head_timer()
        if self._pending:  # a whole head: from now on it counts against the concurrency limit
            self._pending = False
            self.guard.pending.discard(self)
            self.connections.add(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._request_started = False
        self._cancel_read_timer()  # the request is read whole
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        self._cancel_head_timer()
        if self._pending:
            self._pending = False
            self.guard.pending.discard(self)
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        if self.head_timeout_s and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self._refusal(f"request head not complete within {self.head_timeout_s:g} s")
        if not self._head_open:  # not one byte of a request came
            self.transport.close()
            return
        self._refuse(408, f"the request head was not received within {self.head_timeout_s:g} s")

    def _evicted(self) -> None:
        """Closed to make room in the pending-heads pool (the oldest unfinished head)."""
        self._pending = False
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self._refusal(f"unfinished head closed: more than {self.guard.pending.limit} pending heads")
            self.transport.close()

    def _refusal(self, reason: str) -> None:
        if self.guard is not None:
            self.guard.refusals.add(reason, self.loop)
        else:
            logger.info("closed the connection of %s: %s",
                        "{}:{}".format(*self.client) if self.client else "a client", reason)

    def _start_read_timer(self) -> None:
        if self.read_timeout_s and self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        self._refusal(f"request not received within {self.read_timeout_s:g} s")
        # self.cycle is this request's only once its head is read (before, it is the previous request's)
        answered = not self._head_open and self.cycle is not None and self.cycle.response_started
        if not self._request_started or answered:  # not one byte of a request came, or it was answered early
            self.transport.close()
            return
        self._refuse(408, f"the request was not received within {self.read_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer raw and close: uvicorn has no answer path for a request whose head or body is unread."""
        if not self._head_open and self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # a handler still reading the body sees a disconnect
        body = orjson.dumps(problem(message))
        self.transport.write(STATUS_LINE[status] + b"content-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()
