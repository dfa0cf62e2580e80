"""One chunk of CSV records validated and split: the row-level work both ingest paths share.

``validate_chunk`` types and checks every column of a ``CellChunk`` (``convert.py``: the typed
fast path when the CSV parser already typed a column, the string-cell path otherwise), turns bad
rows into reject lines (file, 1-based line number, reason, original text) and splits the ok rows
by their stable hash. It touches no shared state: the single-process path runs it on its main
thread while the reader thread parses the next chunks, and the Beam path in its DoFn.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string
from typing import Any

import numpy as np
import pyarrow as pa

from mlengine.components.ingest.convert import (
    SAMPLE_SALT,
    mix64,
    parse_column,
    parse_typed_column,
    row_hashes,
)
from mlengine.components.ingest.csvreader import CellChunk, raw_text
from mlengine.components.ingest.splits import SplitPlan, assign
from mlengine.components.shared.featurespec import Column


@dataclass
class ValidatedChunk:
    """The outcome of one chunk: counts, reject lines, and the ok rows' typed values per split."""

    rows_read: int
    blank_lines: int
    reasons: Counter[str] = field(default_factory=Counter)  # reject kind -> rows
    rejects: list[str] = field(default_factory=list)  # one JSON object per rejected row, in line order
    values: dict[str, Any] = field(default_factory=dict)  # column -> typed values of the ok rows
    missing: dict[str, np.ndarray] = field(default_factory=dict)  # column -> default used, per ok row
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # sample key per ok row
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # split -> positions into the ok rows

    @property
    def rows_ok(self) -> int:
        return len(self.keys)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejects)


def take(values: Any, rows: np.ndarray) -> Any:
    """The given rows of a numpy array or a pyarrow array."""
    if isinstance(values, np.ndarray):
        return values[rows]
    return values.take(pa.array(rows))


def validate_chunk(columns: list[Column], defaults: dict[str, Any], uri: str, chunk: CellChunk,
                   plan: SplitPlan) -> ValidatedChunk:
    """Validate one chunk and split its ok rows as ``plan`` says (``splits.assign``)."""
    rejected: dict[int, tuple[str, str]] = dict(chunk.problems)  # record index -> (kind, message)
    parsed = {}
    for col in columns:
        typed = chunk.typed.get(col.name)
        column = parse_typed_column(col, typed) if typed is not None else None
        parsed[col.name] = column or parse_column(col, chunk.strings(col.name), defaults[col.name])
    bad = np.zeros(len(chunk.parsed), bool)
    for column in parsed.values():
        bad |= column.bad
    for row in np.flatnonzero(bad):
        row = int(row)
        # the first failing column in spec order names the reason
        rejected[int(chunk.parsed[row])] = next(column.reasons[row] for column in parsed.values() if column.bad[row])
    done = ValidatedChunk(rows_read=len(chunk), blank_lines=chunk.blank_lines)
    file_json = _json_string(uri)
    for index in sorted(rejected):
        kind, message = rejected[index]
        done.reasons[kind] += 1
        # hand-assembled JSON object: json.dumps per row costs more than the rest of the row's work
        done.rejects.append(f'{{"file": {file_json}, "row": {int(chunk.line_numbers[index])}, '
                            f'"reason": {_json_string(message)}, "raw": {_json_string(raw_text(chunk.raw(index)))}}}')
    ok = np.flatnonzero(~bad)
    if len(ok) == 0:
        return done
    everything_ok = len(ok) == len(bad)
    done.values = {name: column.values if everything_ok else take(column.values, ok) for name, column in parsed.items()}
    done.missing = {name: column.missing if everything_ok else column.missing[ok] for name, column in parsed.items()}
    typed = [done.values[col.name] for col in columns]
    hashes = row_hashes(typed, plan.seed)
    done.keys = mix64(hashes ^ SAMPLE_SALT)  # also the distinct-row key of each split's count
    offsets = chunk.offset + chunk.starts[chunk.parsed[ok]] if plan.needs_offsets else None
    done.splits = assign(plan, typed, hashes, uri, offsets)
    return done
