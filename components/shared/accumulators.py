"""Mergeable streaming statistics: update chunk by chunk, merge shards, get the same numbers.

Ingest's statistics and the transform's analyze pass both stream the data once in bounded
memory; a distributed runner (one accumulator per shard) combines them with ``merge``.
"""

from __future__ import annotations

import math

import numpy as np


class Moments:
    """Count, mean and sum of squared deviations (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size:
            chunk = Moments()
            chunk.count = int(values.size)
            chunk.mean = float(values.mean())
            chunk.m2 = float(np.square(values - chunk.mean).sum())
            self.merge(chunk)

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        return self

    @property
    def std(self) -> float:
        """The population standard deviation (0 without rows)."""
        return math.sqrt(max(self.m2, 0.0) / self.count) if self.count else 0.0
