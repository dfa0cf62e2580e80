"""The vectorised ingest (typed CSV parse, checks on Arrow arrays) against a per-row reference.

The reference below reads the file line by line with Python only (``csv``, ``float``, ``int``)
and states the rules of the rejects file directly; the file mixes clean rows with every kind of
bad row, so both the fast path (clean chunks) and the fallback (chunks with a bad cell) run.
"""

from __future__ import annotations

import csv
import math
import random

import pytest

from mlengine.components.ingest import chunks, worker
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.constants import SPLITS
from tests.components.ingest.test_dirty import VALUE_CASES, VALUES_SPEC
from tests.ingest_fixtures import ingest

HEADER = ["x", "n", "k", "color", "tag", "y"]


def _clean_row(rng: random.Random, index: int) -> list[str]:
    x = rng.choice([f"{rng.uniform(0, 10):.6f}", f"{rng.uniform(0, 10):.3e}", str(rng.randint(0, 10))])
    n = rng.choice([str(rng.randint(0, 100)), f"{rng.randint(0, 100)}.0", f" {rng.randint(0, 100)} "])
    k = str(rng.randint(-10**12, 10**12))
    return [x, n, k, rng.choice(["red", "green"]), rng.choice(["a", "b", "c d"]), f"{index}.25"]


def _dataset(tmp_path):
    """Lines (bytes) of a file: 600 clean rows with every bad case, blank lines, quotes, bad UTF-8."""
    rng = random.Random(13)
    lines = [",".join(HEADER).encode()]
    bad = [cells for cells, expected in VALUE_CASES]
    for index in range(600):
        if index % 23 == 5:
            lines.append(",".join(bad[(index // 23) % len(bad)]).encode())
        elif index == 101:
            lines.append(b"")  # blank line: not a row
        elif index == 202:
            lines.append(b'"3.5",4,5,"red","tag, with comma",9.5')  # a quoted cell (careful path)
        elif index == 303:
            lines.append(b"1.5,3,4,red,\xff\xfe,7.5")  # bad UTF-8
        elif index == 404:
            lines.append(b"1.5,3,0X1F,red,a,7.5")  # hex: Python's int() says no
        elif index == 505:
            lines.append(b"1.5,3,4,red,a,1e400")  # overflows to inf
        else:
            lines.append(",".join(_clean_row(rng, index)).encode())
    path = tmp_path / "every-kind.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    return path, lines


def _number(col, text: str):
    """(value, None) or (None, message): the rules of one stripped, non-empty numeric cell."""
    name = f"column {col.name!r}"
    try:
        value = float(text) if col.type == "float" else int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            return None, f"{name}: not a number: {text[:100]!r}"
        if col.type == "float" or (math.isfinite(as_float) and as_float != int(as_float)):
            return None, f"{name}: non-integer value {text[:100]!r} in an int column"
        value = as_float if not math.isfinite(as_float) else int(as_float)
    if isinstance(value, float) and math.isnan(value):
        return None, f"{name}: NaN value {text!r}"
    if isinstance(value, float) and math.isinf(value):
        return None, f"{name}: infinite value {text!r}"
    if col.type == "int" and not -2**63 <= value < 2**63:
        return None, f"{name}: value {text[:100]} does not fit in int64"
    if col.range is not None and not col.range[0] <= value <= col.range[1]:
        return None, f"{name}: value {text} outside [{col.range[0]}, {col.range[1]}]"
    if col.vocabulary is not None and value not in col.vocabulary:
        return None, f"{name}: value {text} is not in the vocabulary"
    return value, None


def _reference(spec, path_text: str, lines: list[bytes]):
    """Per-row Python: {line: reason} for rejects, and the typed ok rows (a list: rows repeat)."""
    rejects, ok = {}, []
    positions = {name: HEADER.index(name) for name in HEADER}
    for number, raw in enumerate(lines[1:], start=2):
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            rejects[number] = f"undecodable bytes: invalid UTF-8 at byte {err.start + 1} of the line"
            continue
        cells = next(csv.reader([text]))
        if len(cells) != len(HEADER):
            rejects[number] = f"ragged row: {len(cells)} cells, expected {len(HEADER)}"
            continue
        row, reason = [], None
        for col in spec.all_columns:
            cell = cells[positions[col.name]].strip()
            name = f"column {col.name!r}"
            if not cell:
                if col.default is None:
                    reason = f"{name}: missing value (empty cell, no default)"
                    break
                cell = str(col.default)
            if col.type == "string":
                if col.vocabulary is not None and cell not in col.vocabulary:
                    reason = f"{name}: value {cell[:100]!r} is not in the vocabulary"
                    break
                row.append(cell)
                continue
            value, reason = _number(col, cell)
            if reason:
                break
            row.append(float(value) if col.type == "float" else value)
        if reason:
            rejects[number] = reason
        else:
            ok.append(tuple(row))
    return rejects, ok


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 100_000])
def test_vectorised_ingest_equals_the_per_row_reference(tmp_path, chunk_rows, monkeypatch):
    spec = spec_from_dict(VALUES_SPEC)
    path, lines = _dataset(tmp_path)
    expected_rejects, expected_ok = _reference(spec, str(path), lines)
    assert len(expected_rejects) > 20 and len(expected_ok) > 500
    fast = []  # columns the fast path accepted whole (typed by the parser, checked on the array)

    def counted(col, values):
        column = typed_column(col, values)
        fast.append(column is not None)
        return column

    typed_column = chunks.parse_typed_column
    monkeypatch.setattr(chunks, "parse_typed_column", counted)
    runs = {}
    for typed in (True, False):  # False: the string-cell path (every numeric column cast from text)
        monkeypatch.setattr(worker, "TYPED_PARSE", typed)
        runs[typed] = ingest(path, tmp_path / f"out-{typed}", spec=spec, chunk_rows=chunk_rows, workers=1)
    for typed, run in runs.items():
        rejects = run.rejects()
        assert {item["row"]: item["reason"] for item in rejects} == expected_rejects, typed
        assert all(item["file"] == str(path) for item in rejects)
        for item in rejects:
            assert item["raw"] == lines[item["row"] - 1].decode("utf-8", errors="backslashreplace")
        rows = set().union(*(run.split_rows(split) for split in SPLITS))
        assert rows == set(expected_ok), typed
        assert run.result.rows_ok == len(expected_ok)
        assert run.result.rows_read == len(expected_rejects) + len(expected_ok) == 599
    if chunk_rows < 23:  # some chunks hold no bad row (one in 23 rows is bad): the fast path ran on them
        assert any(fast)
    # both paths: the same split of every row and the same statistics
    for split in SPLITS:
        assert runs[True].split_rows(split) == runs[False].split_rows(split)
    assert runs[True].statistics()["all"] == runs[False].statistics()["all"]
    assert runs[True].statistics()["train"] == runs[False].statistics()["train"]
