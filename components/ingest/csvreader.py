"""Streaming CSV reading that keeps going past bad rows.

A file is read as bytes, ``chunk_rows`` physical lines at a time, so memory does not grow with
the file. Each line is one record: its line number and original text are known exactly, which
the rejects file needs. Per chunk:

- undecodable bytes (bad UTF-8) and ragged lines (wrong number of cells) become *problems* of
  that record only;
- the remaining records are split into cells by pyarrow's C++ CSV parser (the fast path) or,
  when the chunk contains quote characters, by Python's ``csv`` module one line at a time.

Quoted cells may contain the delimiter; a quoted cell spanning several lines is not supported
(its lines are rejected as malformed or ragged, never merged with their neighbours).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mlengine.errors import DataError

DELIMITER = ","
UTF8_BOM = b"\xef\xbb\xbf"
RAW_TEXT_LIMIT = 1000  # characters of the original line kept in the rejects file

# problem kinds (the keys of IngestResult.reject_reasons for row-level problems)
KIND_UTF8 = "undecodable bytes (invalid UTF-8)"
KIND_RAGGED = "ragged row (wrong number of cells)"
KIND_MALFORMED = "malformed CSV quoting"


@dataclass(frozen=True)
class Header:
    """The header line of one file: its cells and where each needed column sits."""

    names: tuple[str, ...]
    positions: dict[str, int]  # needed column -> cell index

    @property
    def width(self) -> int:
        return len(self.names)


@dataclass
class CellChunk:
    """One chunk of records: problems for unusable ones, string cells for the others."""

    line_numbers: np.ndarray  # 1-based line number of every record (header = line 1)
    raw: list[bytes]  # every record's original bytes, without the line terminator
    problems: dict[int, tuple[str, str]]  # record index -> (kind, message), records not parsed
    parsed: np.ndarray  # indices of the records that were split into cells
    cells: dict[str, pa.Array] = field(default_factory=dict)  # column -> StringArray over `parsed`

    def __len__(self) -> int:
        return len(self.raw)


def raw_text(record: bytes) -> str:
    """The original line for the rejects file (bad bytes escaped, length capped)."""
    return record[: RAW_TEXT_LIMIT * 4].decode("utf-8", errors="backslashreplace")[:RAW_TEXT_LIMIT]


def read_header(stream, uri: str, needed: Sequence[str]) -> Header:
    """Read and check the first line of ``stream``; every problem is a fatal one-line DataError."""
    first = stream.readline()
    if not first:
        raise DataError(f"{uri}: empty file (expected a header line with columns {', '.join(needed)})")
    if first.startswith(UTF8_BOM):
        first = first[len(UTF8_BOM):]
    try:
        text = first.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise DataError(f"{uri}: line 1: the header is not valid UTF-8 (byte {err.start})") from None
    if not text.strip():
        raise DataError(f"{uri}: missing header: line 1 is empty")
    try:
        names = tuple(cell.strip() for cell in next(csv.reader([text], delimiter=DELIMITER, strict=True)))
    except csv.Error as err:
        raise DataError(f"{uri}: line 1: the header is not valid CSV ({err})") from None
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{uri}: header has a duplicate column {name!r}")
        seen.add(name)
    missing = [name for name in needed if name not in seen]
    if missing:
        if len(missing) == len(needed) and all(_looks_numeric(cell) for cell in names if cell):
            raise DataError(f"{uri}: missing header: line 1 looks like data; "
                            f"expected a header with columns {', '.join(needed)}")
        listed = ", ".join(repr(name) for name in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise DataError(f"{uri}: header is missing {noun} {listed}")
    return Header(names=names, positions={name: names.index(name) for name in needed})


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def iter_cell_chunks(stream, header: Header, chunk_rows: int, first_line: int = 2) -> Iterator[CellChunk]:
    """Yield the records after the header in chunks of at most ``chunk_rows`` lines.

    Empty lines are skipped (they are not rows); ``stream`` must be positioned after the header.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    line_number = first_line
    lines = iter(stream)
    while True:
        block = list(itertools.islice(lines, chunk_rows))
        if not block:
            return
        records = [line.rstrip(b"\r\n") for line in block]
        numbers = np.arange(line_number, line_number + len(block), dtype=np.int64)
        line_number += len(block)
        if b"" in records:  # blank lines carry no row
            keep = [i for i, record in enumerate(records) if record]
            records = [records[i] for i in keep]
            numbers = numbers[keep]
            if not records:
                continue
        yield split_cells(records, numbers, header)


def split_cells(records: list[bytes], numbers: np.ndarray, header: Header) -> CellChunk:
    """Split records into string cells of the needed columns; unusable records become problems."""
    problems: dict[int, tuple[str, str]] = {}
    joined = b"\n".join(records)
    try:
        joined.decode("utf-8")
    except UnicodeDecodeError:
        for index, record in enumerate(records):
            try:
                record.decode("utf-8")
            except UnicodeDecodeError as err:
                problems[index] = (KIND_UTF8, f"undecodable bytes: invalid UTF-8 at byte {err.start + 1} of the line")
    if b'"' in joined:
        return _split_quoted(records, numbers, header, problems)
    expected = header.width - 1
    for index, record in enumerate(records):
        if index not in problems:
            found = record.count(b",")
            if found != expected:
                problems[index] = (KIND_RAGGED, f"ragged row: {found + 1} cells, expected {header.width}")
    parsed = np.array([i for i in range(len(records)) if i not in problems], dtype=np.int64) if problems \
        else np.arange(len(records), dtype=np.int64)
    chunk = CellChunk(line_numbers=numbers, raw=records, problems=problems, parsed=parsed)
    if len(parsed) == 0:
        chunk.cells = {name: pa.array([], pa.string()) for name in header.positions}
        return chunk
    body = joined if not problems else b"\n".join(records[i] for i in parsed)
    chunk.cells = _arrow_cells(body, header, len(parsed))
    return chunk


def _arrow_cells(body: bytes, header: Header, expected_rows: int) -> dict[str, pa.Array]:
    """Split clean, quote-free, rectangular lines with pyarrow's C++ parser (all cells as strings)."""
    generated = [f"c{i}" for i in range(header.width)]
    wanted = {name: generated[pos] for name, pos in header.positions.items()}
    table = pacsv.read_csv(
        pa.py_buffer(body),
        read_options=pacsv.ReadOptions(column_names=generated, use_threads=False,
                                       block_size=max(len(body) + 1, 1 << 20)),
        parse_options=pacsv.ParseOptions(delimiter=DELIMITER, quote_char=False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(wanted.values(), pa.string()),
                                             include_columns=list(dict.fromkeys(wanted.values())),
                                             strings_can_be_null=False, check_utf8=False),
    )
    if table.num_rows != expected_rows:  # cannot happen for rectangular quote-free lines
        raise RuntimeError(f"CSV parser returned {table.num_rows} rows for {expected_rows} lines")
    return {name: table.column(col).combine_chunks() for name, col in wanted.items()}


def _split_quoted(records: list[bytes], numbers: np.ndarray, header: Header,
                  problems: dict[int, tuple[str, str]]) -> CellChunk:
    """The slow path for chunks with quotes: each line parsed on its own by the csv module."""
    rows: list[list[str]] = []
    parsed: list[int] = []
    for index, record in enumerate(records):
        if index in problems:
            continue
        try:
            cells = next(csv.reader([record.decode("utf-8")], delimiter=DELIMITER, strict=True))
        except csv.Error as err:
            problems[index] = (KIND_MALFORMED, f"malformed CSV quoting: {err} (quoted cells cannot span lines)")
            continue
        if len(cells) != header.width:
            problems[index] = (KIND_RAGGED, f"ragged row: {len(cells)} cells, expected {header.width}")
            continue
        rows.append(cells)
        parsed.append(index)
    cells_by_name = {name: pa.array([row[pos] for row in rows], pa.string())
                     for name, pos in header.positions.items()}
    return CellChunk(line_numbers=numbers, raw=records, problems=problems,
                     parsed=np.array(parsed, dtype=np.int64), cells=cells_by_name)
