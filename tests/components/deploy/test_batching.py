"""The asyncio micro-batcher: concurrent requests share model calls, results go back to their owners."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from mlengine.components.deploy.batching import MicroBatcher


class SlowDoubler:
    """A fake model: returns 2*x, records every batch size, takes a little time like a real call."""

    def __init__(self, delay: float = 0.01, fail_on: float | None = None):
        self.delay = delay
        self.fail_on = fail_on
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, columns):
        self.threads.add(threading.current_thread().name)
        x = columns["x"]
        self.batch_sizes.append(len(x))
        threading.Event().wait(self.delay)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise RuntimeError("model exploded")
        return (2.0 * x).astype(np.float32)


def request(values) -> tuple[dict, int]:
    array = np.asarray(values, dtype=np.float32)
    return {"x": array}, len(array)


def test_concurrent_requests_are_merged_and_split_back():
    model = SlowDoubler()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_rows=1000)
        requests = [request([i, i + 0.5]) for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(cols, rows) for cols, rows in requests))
        batcher.close()
        return requests, results, batcher

    requests, results, batcher = asyncio.run(scenario())
    for (columns, _), result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result, 2 * columns["x"])
    assert sum(model.batch_sizes) == 40
    assert len(model.batch_sizes) < 20  # fewer model calls than requests
    assert batcher.calls == len(model.batch_sizes) and batcher.requests == 20
    assert model.threads and all(name.startswith("model") for name in model.threads)  # never the event loop


def test_a_lone_request_is_not_delayed_into_a_batch():
    model = SlowDoubler(delay=0.0)

    async def scenario():
        batcher = MicroBatcher(model)
        out = [await batcher.submit(*request([float(i)])) for i in range(3)]
        batcher.close()
        return out

    results = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[0.0], [2.0], [4.0]]
    assert model.batch_sizes == [1, 1, 1]


def test_max_batch_rows_bounds_every_model_call():
    model = SlowDoubler()

    async def scenario():
        batcher = MicroBatcher(model, max_batch_rows=5)
        results = await asyncio.gather(*(batcher.submit(*request([i, i, i])) for i in range(10)))
        batcher.close()
        return results

    results = asyncio.run(scenario())
    assert all(size <= 5 for size in model.batch_sizes)
    assert [r.tolist() for r in results] == [[2.0 * i] * 3 for i in range(10)]


def test_a_model_error_reaches_only_the_requests_of_that_batch_and_the_batcher_keeps_going():
    model = SlowDoubler(fail_on=13.0)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_rows=1)  # one request per call
        outcomes = await asyncio.gather(*(batcher.submit(*request([v])) for v in (1.0, 13.0, 2.0)),
                                        return_exceptions=True)
        after = await batcher.submit(*request([4.0]))
        batcher.close()
        return outcomes, after

    outcomes, after = asyncio.run(scenario())
    assert outcomes[0].tolist() == [2.0] and outcomes[2].tolist() == [4.0]
    assert isinstance(outcomes[1], RuntimeError)
    assert after.tolist() == [8.0]


def test_a_cancelled_waiter_does_not_break_the_others():
    model = SlowDoubler(delay=0.05)

    async def scenario():
        batcher = MicroBatcher(model)
        first = asyncio.ensure_future(batcher.submit(*request([1.0])))
        second = asyncio.ensure_future(batcher.submit(*request([2.0])))
        await asyncio.sleep(0.01)
        first.cancel()
        result = await second
        batcher.close()
        return first, result

    first, result = asyncio.run(scenario())
    assert first.cancelled()
    assert result.tolist() == [4.0]


def test_invalid_max_batch_rows():
    with pytest.raises(ValueError):
        MicroBatcher(SlowDoubler(), max_batch_rows=0)
