"""The mergeable sketches: KLL within its stated rank error after any merging, exact counts, co-moments."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlengine.components.shared.sketches import CappedCounts, CoMoments, KllSketch, kll_rank_error

LEVELS = np.linspace(0.01, 0.99, 99)


def _rank_error(data: np.ndarray, answers: np.ndarray, levels: np.ndarray) -> float:
    """How far (in normalised rank) each answer is from its level, at worst (ties count in its favour)."""
    ordered = np.sort(data)
    below = np.searchsorted(ordered, answers, side="left") / len(data)
    at_or_below = np.searchsorted(ordered, answers, side="right") / len(data)
    return float(np.maximum(0.0, np.maximum(below - levels, levels - at_or_below)).max())


def _sharded_sketch(data: np.ndarray, k: int, shards: int, batches: int) -> KllSketch:
    sketches = []
    for index, shard in enumerate(np.array_split(data, shards)):
        sketch = KllSketch(k, seed=index)
        for batch in np.array_split(shard, batches):
            sketch.update(batch)
        sketches.append(sketch)
    # merge as a tree, the way an engine combines partial accumulators
    while len(sketches) > 1:
        sketches = [a.merge(b) for a, b in zip(sketches[::2], sketches[1::2], strict=False)] + (
            [sketches[-1]] if len(sketches) % 2 else [])
    return sketches[0]


@pytest.mark.parametrize("k", [200, 2000])
@pytest.mark.parametrize("distribution", ["normal", "lognormal", "integers"])
def test_kll_quantiles_within_the_stated_rank_error_after_merging(k, distribution):
    rng = np.random.default_rng(k)
    size = 200_000
    data = {"normal": lambda: rng.normal(size=size), "lognormal": lambda: rng.lognormal(sigma=2.0, size=size),
            "integers": lambda: rng.integers(0, 50, size=size).astype(float)}[distribution]()
    sketch = _sharded_sketch(data, k, shards=7, batches=9)
    assert not sketch.exact
    assert sketch.count == size
    assert (sketch.minimum, sketch.maximum) == (data.min(), data.max())
    assert _rank_error(data, sketch.quantiles(LEVELS), LEVELS) <= kll_rank_error(k)
    # the sketch stays small: a few k values, not the data
    assert sum(len(level) for level in sketch.levels) < 3 * k + 64
    # its CDF is within the same error
    points = np.quantile(data, LEVELS)
    assert np.abs(sketch.cdf(points) - np.searchsorted(np.sort(data), points, side="right") / size).max() \
        <= kll_rank_error(k)


def test_kll_is_exact_while_it_holds_every_value():
    data = np.random.default_rng(0).normal(size=1500)
    sketch = KllSketch(2000).update(data[:700]).merge(KllSketch(2000).update(data[700:]))
    assert sketch.exact
    np.testing.assert_array_equal(sketch.quantiles(LEVELS), np.quantile(data, LEVELS))


def test_kll_empty_merge_and_pickle():
    empty = KllSketch(64)
    assert np.isnan(empty.quantiles([0.5])).all()
    full = KllSketch(64).update(np.arange(10_000.0))
    assert full.merge(KllSketch(64)).count == 10_000
    copy = pickle.loads(pickle.dumps(full))  # what Beam's coders do with accumulators
    np.testing.assert_array_equal(copy.quantiles(LEVELS), full.quantiles(LEVELS))
    assert full.quantiles([0.0, 1.0]).tolist() == [0.0, 9999.0]
    with pytest.raises(ValueError, match="at least 8"):
        KllSketch(4)


def test_capped_counts_exact_below_the_limit_in_any_merge_order():
    rng = np.random.default_rng(1)
    words = np.array([f"w{i}" for i in rng.integers(0, 40, size=5000)], dtype=object)
    parts = [CappedCounts(100).update(chunk) for chunk in np.array_split(words, 6)]
    forward, backward = CappedCounts(100), CappedCounts(100)
    for part in parts:
        forward.merge(part)
    for part in reversed(parts):
        backward.merge(part)
    values, counts = np.unique(words, return_counts=True)
    assert forward.counts == dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert forward.ranked() == backward.ranked()
    assert not forward.approximate
    assert forward.top(3) == [v for v, _ in sorted(forward.counts.items(), key=lambda i: (-i[1], i[0]))[:3]]


def test_capped_counts_prune_past_the_limit_and_say_so():
    counts = CappedCounts(10).update(np.arange(11))
    assert counts.approximate and len(counts.counts) == 5
    assert CappedCounts(10).merge(counts).approximate


def test_comoments_merge_equals_one_pass_least_squares():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 30, 9000)
    y = 2.5 + 1.7 * x + rng.normal(size=9000)
    merged = CoMoments()
    for part_x, part_y in zip(np.array_split(x, 5), np.array_split(y, 5), strict=True):
        merged.merge(CoMoments().update(part_x, part_y))
    slope, intercept = np.polyfit(x, y, 1)
    assert merged.line() == pytest.approx((slope, intercept), rel=1e-9)
    assert CoMoments().line() == (0.0, 0.0)
