"""Blocks of whole lines: exactly ``max_lines`` lines each, whatever the line lengths do."""

import io
import random

import pytest

from mlengine.components.ingest import csvreader
from mlengine.components.ingest.csvreader import _LineBlocks
from mlengine.errors import DataError


def _lines(rng: random.Random, count: int) -> list[bytes]:
    """Lines whose length jumps between runs (short ones, then lines 40 times as long...)."""
    lines, width = [], 8
    for index in range(count):
        if index % 97 == 0:
            width = rng.choice([1, 8, 60, 320])
        lines.append(bytes(rng.choice(b"abc,;") for _ in range(rng.randint(0, width))) + b"\n")
    return lines


@pytest.mark.parametrize(("max_lines", "final_newline"), [(1, True), (7, False), (64, True), (1000, False)])
def test_blocks_hold_exactly_max_lines_lines_and_give_back_every_byte(monkeypatch, max_lines, final_newline):
    monkeypatch.setattr(csvreader, "READ_BYTES", 4096)  # many reads per block: windows cross read edges
    lines = _lines(random.Random(max_lines), 3000)
    data = b"".join(lines)
    if not final_newline:
        data = data[:-1]
    blocks = _LineBlocks(io.BytesIO(data), "f.csv")
    got = []
    while (block := blocks.next_block(max_lines)) is not None:
        got.append(block)
    assert b"".join(got) == data
    expected = [b"".join(lines[i:i + max_lines]) for i in range(0, len(lines), max_lines)]
    if not final_newline:
        expected[-1] = expected[-1][:-1]
    assert got == expected


def test_a_line_longer_than_the_limit_is_named(monkeypatch):
    monkeypatch.setattr(csvreader, "READ_BYTES", 1024)
    monkeypatch.setattr(csvreader, "MAX_LINE_BYTES", 8192)
    blocks = _LineBlocks(io.BytesIO(b"a,b\n" + b"x" * 20_000 + b"\n"), "big.csv")
    assert blocks.next_block(1) == b"a,b\n"
    with pytest.raises(DataError, match=r"big.csv: a line is longer than"):
        blocks.next_block(1)
