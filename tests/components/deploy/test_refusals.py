"""The per-worker refusal bookkeeping: a bounded log, and a bounded pool of unfinished heads."""

from __future__ import annotations

import logging

from mlengine.components.deploy.http.refusals import CountingLogger, PendingHeads, RefusalLog


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_refusals_writes_a_bounded_number_of_lines(caplog):
    clock = FakeClock()
    refusals = RefusalLog(logging.getLogger("test.refusals"), interval_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for i in range(30_000):  # 300 connections a second for 100 s
            clock.now = i / 300
            refusals.add("over the concurrency limit of 256" if i % 3 else "request head not complete within 5 s")
        refusals.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) <= 2 * (100 / 10 + 1)  # the first refusal, then one summary, per interval
    assert lines[0].startswith("refused a connection: ")
    summaries = [line for line in lines if " more connections in the last 10 s: " in line]
    assert len(summaries) >= 9
    counted = sum(int(line.split()[1]) for line in summaries) + len(lines) - len(summaries)
    assert counted == 30_000  # every refusal is counted, none is lost
    assert "over the concurrency limit of 256" in summaries[0] and "head not complete" in summaries[0]


def test_a_lone_refusal_is_one_line_and_an_empty_interval_none(caplog):
    clock = FakeClock()
    refusals = RefusalLog(logging.getLogger("test.refusals"), interval_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        refusals.add("request not received within 30 s")
        refusals.flush()
        refusals.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "refused a connection: request not received within 30 s (more refusals in the next 10 s are summed up "
        "in one line)"]


def test_the_pending_pool_evicts_the_oldest_first():
    pool = PendingHeads(limit=3)
    assert [pool.add(name) for name in "abc"] == [[], [], []]
    pool.discard("b")
    assert pool.add("d") == []
    assert pool.add("e") == ["a"]
    assert pool.add("f") == ["c"]
    assert len(pool) == 3


def test_uvicorns_concurrency_warning_goes_to_the_refusal_log(caplog):
    refusals = RefusalLog(logging.getLogger("test.refusals"), clock=FakeClock())
    adapter = CountingLogger(logging.getLogger("test.uvicorn"), refusals, "over the concurrency limit of 4")
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            adapter.warning("Exceeded concurrency limit.")
        adapter.warning("Unsupported upgrade request.")
        refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert "Exceeded concurrency limit." not in lines
    assert "Unsupported upgrade request." in lines
    assert "refused 99 more connections in the last 10 s: 99 over the concurrency limit of 4" in lines
    assert adapter.level == logging.getLogger("test.uvicorn").level
