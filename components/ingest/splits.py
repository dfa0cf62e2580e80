"""How ingest cuts the ok rows into train / eval / test, and whether the cut means anything.

A stable 64-bit hash per row, mapped to [0, 1), picks the split (``SPLIT_FRACTIONS``: 80/10/10).
What is hashed is the spec's ``split:`` choice (``SplitPlan``):

- the row's content (the default, ``duplicates: together``): the typed values of every column,
  salted with the split seed. Identical rows always share a split, so a copy can never be in
  train and in test (no leakage), but data with few distinct rows splits in lumps;
- a key column (``key: customer_id``): that value alone, so every row of one key is in one split,
  as TFX's partition feature does;
- the row's position (``duplicates: by_position``): the file's name and the row's byte offset in
  it, so copies spread over the splits like any other rows (and leak between them).

Both engines call ``assign`` on every validated chunk, so a row lands in the same split whatever
the engine, the worker count or the chunking. ``DistinctSketch`` counts each split's distinct rows
(exactly up to ``DISTINCT_K``, then a k-minimum-values estimate; it merges in any order), and
``check`` ends ingest with one line naming the reason and the fix when a split is far from its
share or smaller than ``split.min_rows``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlengine.components.ingest.convert import row_hashes, unit_interval
from mlengine.components.shared.featurespec import FeatureSpec, SplitSpec
from mlengine.constants import SPLIT_FRACTIONS, SPLITS
from mlengine.errors import DataError

DISTINCT_K = 4096  # distinct rows counted exactly up to this many per split; past it, about 1.6% error
FAR_SIGMAS = 4.0  # a split is off only beyond this many binomial standard deviations of its expected size...
FAR_RELATIVE = 0.5  # ...and more than half its expected size away (random noise on small data never is)
DUPLICATE_HEAVY = 0.5  # fewer distinct rows than this share of a split's rows: duplicates drive the cut


def split_thresholds() -> list[tuple[str, float]]:
    """Cumulative upper bounds of each split on the unit interval, in SPLITS order."""
    total = sum(SPLIT_FRACTIONS[name] for name in SPLITS)
    bounds, running = [], 0.0
    for name in SPLITS:
        running += SPLIT_FRACTIONS[name] / total
        bounds.append((name, running))
    bounds[-1] = (bounds[-1][0], 1.0 + 1e-9)
    return bounds


@dataclass(frozen=True)
class SplitPlan:
    """What ``assign`` needs: the seed, the thresholds, and what is hashed (pickles to the workers)."""

    seed: int
    thresholds: tuple[tuple[str, float], ...]
    key: int | None = None  # index of the key column among the spec's columns (label last)
    by_position: bool = False

    @classmethod
    def of(cls, spec: FeatureSpec, seed: int) -> SplitPlan:
        names = [col.name for col in spec.all_columns]
        key = names.index(spec.split.key) if spec.split.key is not None else None
        return cls(seed, tuple(split_thresholds()), key, spec.split.duplicates == "by_position")

    @property
    def needs_offsets(self) -> bool:
        return self.by_position


def assign(plan: SplitPlan, values: list[Any], content: np.ndarray, uri: str, offsets: np.ndarray | None
           ) -> dict[str, np.ndarray]:
    """Each split's positions among the ok rows.

    Args:
        plan: the split plan.
        values: the ok rows' typed values per column, in the spec's column order.
        content: the ok rows' content hashes (``row_hashes`` of ``values`` with the plan's seed).
        uri: the file the rows come from (``by_position`` only).
        offsets: the ok rows' byte offsets in that file (``by_position`` only).
    """
    if plan.key is not None:
        hashes = row_hashes([values[plan.key]], plan.seed)
    elif plan.by_position:
        if offsets is None:
            raise ValueError("splitting by row position needs each row's byte offset")
        file_salt = int.from_bytes(hashlib.blake2b(uri.encode("utf-8"), digest_size=8).digest(), "little")
        hashes = row_hashes([offsets.astype(np.int64, copy=False)], plan.seed ^ file_salt)
    else:
        hashes = content
    position = unit_interval(hashes)
    out, lower = {}, 0.0
    for split, upper in plan.thresholds:
        out[split] = np.flatnonzero((position >= lower) & (position < upper))
        lower = upper
    return out


class DistinctSketch:
    """The ``k`` smallest distinct row keys seen (uniform 64-bit hashes): an exact count while fewer
    than ``k`` are held, else the k-minimum-values estimate. Merges in any order, pickles."""

    def __init__(self, k: int = DISTINCT_K) -> None:
        self.k = k
        self.smallest = np.zeros(0, np.uint64)

    def update(self, keys: np.ndarray) -> DistinctSketch:
        keys = np.asarray(keys, np.uint64)
        if len(self.smallest) >= self.k:
            keys = keys[keys < self.smallest[-1]]  # most rows of a large split stop here
        if len(keys):
            self.smallest = np.union1d(self.smallest, keys)[: self.k]
        return self

    def merge(self, other: DistinctSketch) -> DistinctSketch:
        return self.update(other.smallest)

    def estimate(self) -> int:
        if len(self.smallest) < self.k:
            return len(self.smallest)
        return round((self.k - 1) * 2.0**64 / (float(self.smallest[-1]) + 1.0))


def describe(plan_spec: SplitSpec) -> str:
    if plan_spec.key is not None:
        return f"by key {plan_spec.key!r}"
    return "by row position" if plan_spec.duplicates == "by_position" else "by row content (identical rows together)"


def report(rows: dict[str, int], distinct: dict[str, int], split_spec: SplitSpec) -> str:
    """``ingest: splits by ...: train 2,400 rows (80.0%, intended 80%; 2,376 distinct, 99%), ...`` (one line)."""
    total = sum(rows.values())
    parts = []
    for split in SPLITS:
        count = rows.get(split, 0)
        share = count / total if total else 0.0
        unique = distinct.get(split, 0)
        parts.append(f"{split} {count:,} rows ({100 * share:.1f}%, intended {100 * SPLIT_FRACTIONS[split]:.0f}%; "
                     f"{unique:,} distinct, {100 * unique / count if count else 0:.0f}%)")
    return f"ingest: splits {describe(split_spec)}: " + ", ".join(parts)


def problem(rows: dict[str, int], distinct: dict[str, int], split_spec: SplitSpec) -> str | None:
    """Why the splits mean nothing, and the fix, in one sentence; None when they are fine.

    A split is refused when its size is far from its share (beyond ``FAR_SIGMAS`` binomial
    deviations and ``FAR_RELATIVE`` of the expected size), or when its rows, or its distinct rows
    (a split of copies evaluates on a handful of rows however many it has), are fewer than
    ``split.min_rows``.
    """
    total = sum(rows.values())
    if total == 0:
        return None  # no ok row: ingest's own error says why
    for split in SPLITS:
        count, fraction, unique = rows.get(split, 0), SPLIT_FRACTIONS[split], distinct.get(split, 0)
        expected = fraction * total
        sigma = math.sqrt(total * fraction * (1.0 - fraction))
        far = abs(count - expected) > max(FAR_SIGMAS * sigma, FAR_RELATIVE * expected)
        small = count < split_spec.min_rows
        copies = not small and unique < split_spec.min_rows
        if not (far or small or copies):
            continue
        what = (f"the {split} split has {count:,} of {total:,} rows ({100 * count / total:.1f}%, intended "
                f"{100 * fraction:.0f}%)")
        if copies:
            what += f" but only {unique:,} distinct"
        if small and not far:
            return (f"{what}: fewer than split.min_rows {split_spec.min_rows}, too few to evaluate on; "
                    f"fix: more data, or a lower split.min_rows in the spec")
        return f"{what}: {_cause(total, distinct, split_spec)}"
    return None


def _cause(total: int, distinct: dict[str, int], split_spec: SplitSpec) -> str:
    if split_spec.key is not None:
        return (f"rows are split by key {split_spec.key!r} and a few keys hold most rows; fix: a key with more "
                f"distinct values, more data, or no split.key")
    unique = sum(distinct.values())  # content-hashed splits share no row: the data's distinct rows
    if split_spec.duplicates == "by_position":
        return "fix: more data, fewer copies, or a lower split.min_rows in the spec"
    if unique < DUPLICATE_HEAVY * total:
        return (f"the data has only {unique:,} distinct rows and identical rows always share a split (the "
                f"row-content hash); fix: remove the duplicates, split by a key column (split: {{key: COLUMN}}), "
                f"or spread copies by row position (split: {{duplicates: by_position}}; they then leak between "
                f"the splits)")
    return "fix: more data, or another split seed"


def check(rows: dict[str, int], distinct: dict[str, int], split_spec: SplitSpec, source: str) -> None:
    """Raise DataError (one line: the split, the reason, the fix) when a split means nothing."""
    reason = problem(rows, distinct, split_spec)
    if reason is not None:
        raise DataError(f"{source}: {reason}")
