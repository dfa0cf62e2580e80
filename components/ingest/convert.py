"""Typing and validating the string cells of one column against its spec, vectorised.

The fast path casts a whole column with pyarrow; only when that fails (an empty cell, a word, a
space around a number) is the column re-parsed cell by cell in Python, and that slow path is
the reference behaviour: a cell is stripped, ``float()`` / ``int()`` decide whether it is a
number, and an int column accepts integral floats such as ``3.0``. Both paths agree, so
whether a row is accepted never depends on which other rows share its chunk.

Also here: the stable per-row hash that decides the split and the statistics sample.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlengine.components.shared.featurespec import DTYPES, Column
from mlengine.errors import DataError

# Parquet storage types, from the one dtype table
ARROW_TYPES = {kind: pa.string() if d.stored is object else pa.from_numpy_dtype(d.stored)
               for kind, d in DTYPES.items()}
_INT64_LIMIT = 2**63


@dataclass
class ParsedColumn:
    """One column of a chunk, typed: values for every parsed row plus which rows are bad."""

    values: Any  # np.ndarray (float64 / int64) or pa.StringArray
    missing: np.ndarray  # bool: the cell was empty and the column default was used
    bad: np.ndarray  # bool: this column rejects the row
    reasons: dict[int, tuple[str, str]] = field(default_factory=dict)  # bad row -> (kind, message)


def typed_default(col: Column, source: str) -> Any:
    """The column default converted to the column type (None when the column has none)."""
    if col.default is None:
        return None
    try:
        if col.type == "float":
            value = float(col.default)
            if not math.isfinite(value):
                raise ValueError
            return value
        if col.type == "int":
            value = float(col.default)
            if value != int(value):
                raise ValueError
            return int(value)
        return str(col.default)
    except (TypeError, ValueError):
        raise DataError(f"{source}: column {col.name!r}: default {col.default!r} is not a valid {col.type}") from None


def parse_column(col: Column, cells: pa.Array, default: Any) -> ParsedColumn:
    """Type and check one column of string cells (see the module docstring)."""
    if col.type == "string":
        return _parse_strings(col, cells, default)
    parsed = _parse_numbers(col, cells, default)
    _check_numbers(col, cells, parsed)
    return parsed


def parse_typed_column(col: Column, values: pa.Array) -> ParsedColumn | None:
    """The fast path for a numeric column the CSV parser already typed: the checks on the array.

    Returns the column as ``parse_column`` would when no cell is empty and every value is finite
    and inside its range and vocabulary (then both agree: pyarrow's CSV number parser is the
    same as its string cast, whitespace trimmed as Python's ``float()`` / ``int()`` do); None
    otherwise, and the caller runs ``parse_column`` on the string cells, which names each bad
    cell exactly.
    """
    if values.null_count:
        return None
    numbers = values.to_numpy(zero_copy_only=False)
    size = len(numbers)
    if size == 0:
        return None
    if col.type == "float" and not np.isfinite(numbers).all():  # NaN / inf (min/max skip nothing here)
        return None
    if col.range is not None:
        low, high = col.range
        if numbers.min() < low or numbers.max() > high:
            return None
    if col.vocabulary is not None and not np.isin(numbers, np.asarray(col.vocabulary, dtype=numbers.dtype)).all():
        return None
    return ParsedColumn(values=numbers, missing=np.zeros(size, bool), bad=np.zeros(size, bool))


def _label(col: Column) -> str:
    return f"column {col.name!r}"


def _cell(cells: pa.Array, index: int) -> str:
    return cells[index].as_py().strip()


# cells these patterns match are cast by pyarrow with exactly the value Python would give; any
# other non-empty cell (nan, 1_000, 3.0 in an int column, words...) is decided by Python itself
_FLOAT_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_INT_PATTERN = r"^-?[0-9]{1,18}$"


def _parse_numbers(col: Column, cells: pa.Array, default: Any) -> ParsedColumn:
    size = len(cells)
    arrow_type = ARROW_TYPES[col.type]
    # pyarrow's int parser takes 0x10 for 16, Python does not (plain substring search is fast, ignore_case is not)
    fast = col.type == "float" or not any(pc.any(pc.match_substring(cells, x)).as_py() for x in ("x", "X"))
    if fast:
        try:
            values = pc.cast(cells, arrow_type).to_numpy(zero_copy_only=False)
            return ParsedColumn(values=values, missing=np.zeros(size, bool), bad=np.zeros(size, bool))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    trimmed = pc.utf8_trim_whitespace(cells)
    missing = pc.equal(pc.binary_length(trimmed), 0).to_numpy(zero_copy_only=False)
    simple = pc.match_substring_regex(trimmed, _FLOAT_PATTERN if col.type == "float" else _INT_PATTERN)
    values = pc.cast(pc.if_else(simple, trimmed, "0"), arrow_type).to_numpy(zero_copy_only=False).copy()
    bad = np.zeros(size, bool)
    reasons: dict[int, tuple[str, str]] = {}
    for index in np.flatnonzero(~simple.to_numpy(zero_copy_only=False) & ~missing):
        index = int(index)
        number, reason = _parse_cell(col, trimmed[index].as_py())
        if reason is None:
            values[index] = number
        else:
            bad[index] = True
            reasons[index] = reason
    if missing.any():
        if default is not None:
            values[missing] = default
        else:
            for index in np.flatnonzero(missing):
                reasons[int(index)] = (f"{_label(col)}: missing value",
                                       f"{_label(col)}: missing value (empty cell, no default)")
            bad |= missing
            missing = np.zeros(size, bool)
    return ParsedColumn(values=values, missing=missing, bad=bad, reasons=reasons)


def _parse_cell(col: Column, text: str) -> tuple[Any, tuple[str, str] | None]:
    """The reference parse of one non-empty, stripped cell: (number, None) or (None, reason)."""
    name = _label(col)
    if col.type == "float":
        try:
            return float(text), None  # NaN / inf are reported by _check_numbers
        except ValueError:
            return None, (f"{name}: not a number", f"{name}: not a number: {text[:100]!r}")
    try:
        number = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            return None, (f"{name}: not a number", f"{name}: not a number: {text[:100]!r}")
        if not math.isfinite(as_float):
            return None, _non_finite_reason(col, text, as_float)
        if as_float != int(as_float):
            return None, (f"{name}: non-integer value", f"{name}: non-integer value {text[:100]!r} in an int column")
        number = int(as_float)
    if not -_INT64_LIMIT <= number < _INT64_LIMIT:
        return None, (f"{name}: outside int64", f"{name}: value {text[:100]} does not fit in int64")
    return number, None


def _non_finite_reason(col: Column, text: str, number: float) -> tuple[str, str]:
    name = _label(col)
    if math.isnan(number):
        return f"{name}: NaN", f"{name}: NaN value {text!r}"
    return f"{name}: infinite", f"{name}: infinite value {text!r}"


def _check_numbers(col: Column, cells: pa.Array, parsed: ParsedColumn) -> None:
    """Add NaN / inf / range / vocabulary problems to the rows not already bad."""
    values = parsed.values
    ok = ~parsed.bad
    problems = np.zeros(len(values), bool)
    if col.type == "float":
        problems |= ok & ~np.isfinite(values)
    if col.range is not None:
        low, high = col.range
        with np.errstate(invalid="ignore"):
            problems |= ok & ((values < low) | (values > high))
    if col.vocabulary is not None:
        problems |= ok & ~np.isin(values, np.asarray(col.vocabulary, dtype=values.dtype))
    if not problems.any():
        return
    name = _label(col)
    for index in np.flatnonzero(problems):
        index = int(index)
        value = values[index]
        text = _cell(cells, index) or repr(value.item())
        if col.type == "float" and not math.isfinite(value):
            parsed.reasons[index] = _non_finite_reason(col, text, float(value))
        elif col.range is not None and not col.range[0] <= value <= col.range[1]:
            parsed.reasons[index] = (f"{name}: outside range",
                                     f"{name}: value {text} outside [{col.range[0]}, {col.range[1]}]")
        else:
            parsed.reasons[index] = (f"{name}: not in vocabulary", f"{name}: value {text} is not in the vocabulary")
    parsed.bad |= problems


def _parse_strings(col: Column, cells: pa.Array, default: Any) -> ParsedColumn:
    size = len(cells)
    values = pc.utf8_trim_whitespace(cells)
    empty = pc.equal(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    missing = np.zeros(size, bool)
    bad = np.zeros(size, bool)
    reasons: dict[int, tuple[str, str]] = {}
    name = _label(col)
    if empty.any():
        if default is not None:
            values = pc.if_else(pa.array(empty), pa.scalar(default, pa.string()), values)
            missing = empty
        else:
            bad |= empty
            for index in np.flatnonzero(empty):
                reasons[int(index)] = (f"{name}: missing value", f"{name}: missing value (empty cell, no default)")
    if col.vocabulary is not None:
        known = pc.is_in(values, value_set=pa.array(col.vocabulary, pa.string())).to_numpy(zero_copy_only=False)
        unknown = ~known & ~bad
        for index in np.flatnonzero(unknown):
            text = values[int(index)].as_py()
            reasons[int(index)] = (f"{name}: not in vocabulary",
                                   f"{name}: value {text[:100]!r} is not in the vocabulary")
        bad |= unknown
    return ParsedColumn(values=values, missing=missing, bad=bad, reasons=reasons)


# --- stable row hashing ---------------------------------------------------------------------------
_GOLDEN_INT = 0x9E3779B97F4A7C15
_GOLDEN = np.uint64(_GOLDEN_INT)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
SAMPLE_SALT = np.uint64(0x5DEECE66D2545F49)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    return _mix64_inplace(values.astype(np.uint64, copy=True), np.empty(len(values), np.uint64))


def _mix64_inplace(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """``mix64`` computed in ``x`` itself (uint64), ``scratch`` a same-sized buffer: no allocation."""
    for shift, factor in ((30, _MIX_1), (27, _MIX_2)):
        np.right_shift(x, np.uint64(shift), out=scratch)
        x ^= scratch
        x *= factor
    np.right_shift(x, np.uint64(31), out=scratch)
    x ^= scratch
    return x


def _column_bits(values: Any) -> np.ndarray:
    """A uint64 per row that identifies the typed value (independent of the chunk it is in)."""
    if isinstance(values, np.ndarray):
        if values.dtype == np.float64:
            return (values + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
        return values.astype(np.int64, copy=False).view(np.uint64)
    encoded = values.dictionary_encode()
    digests = [hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
               for text in encoded.dictionary.to_pylist()]
    table = np.frombuffer(b"".join(digests), dtype="<u8") if digests else np.zeros(0, np.uint64)
    return table[encoded.indices.to_numpy(zero_copy_only=False)]


def row_hashes(columns: list[Any], seed: int) -> np.ndarray:
    """A stable 64-bit hash per row of the typed values, in column order, salted with ``seed``."""
    size = len(columns[0]) if columns else 0
    scratch = np.empty(size, np.uint64)
    hashes = _mix64_inplace(np.full(size, np.uint64(seed % 2**64) ^ _GOLDEN, dtype=np.uint64), scratch)
    for position, values in enumerate(columns):
        bits = np.bitwise_xor(_column_bits(values), np.uint64((position + 1) * _GOLDEN_INT % 2**64))
        hashes ^= _mix64_inplace(bits, scratch)
        _mix64_inplace(hashes, scratch)
    return hashes


def unit_interval(hashes: np.ndarray) -> np.ndarray:
    """Map hashes to floats uniform in [0, 1) (the top 53 bits)."""
    return (hashes >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
