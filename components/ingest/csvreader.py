"""Streaming CSV reading that keeps going past bad rows.

A file is read as bytes in blocks of at most ``chunk_rows`` physical lines, so memory does not
grow with the file. Each line is one record: its line number and original text are known
exactly, which the rejects file needs. Per chunk, with numpy over the raw bytes:

- empty lines are skipped (they are not rows);
- undecodable bytes (bad UTF-8) and ragged lines (wrong number of cells) become *problems* of
  that record only;
- the remaining records are split into cells by pyarrow's C++ CSV parser (the fast path; with
  ``column_types`` it also types the numeric columns, and a clean chunk is parsed whole, typed,
  before any line is located or any delimiter counted: a ragged line, a blank line or a bad
  cell makes that parse fail, and only then are the lines found) or, when the chunk contains a
  quote character or a bare carriage return, by Python's ``csv`` module one line at a time
  (the careful path).

Quoted cells may contain the delimiter; a quoted cell spanning several lines is not supported
(its lines are rejected as malformed or ragged, never merged with their neighbours).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mlengine.components.shared.byteranges import MAX_LINE_BYTES
from mlengine.errors import DataError

DELIMITER = ","  # the default; a spec's ``delimiter:`` overrides it per dataset
# delimiters a header that parsed as one column is checked for, to suggest the spec option
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
UTF8_BOM = b"\xef\xbb\xbf"
RAW_TEXT_LIMIT = 1000  # characters of the original line kept in the rejects file
READ_BYTES = 1 << 22  # bytes requested from the stream at a time
WINDOW_SLACK = 1.1  # a block's window: this many times max_lines lines of the mean length so far
ARROW_BLOCK_BYTES = 1 << 20  # blocks the C++ parser splits a chunk into (parsed in parallel)
TYPED_RETRY_CHUNKS = 4  # after a chunk whose typed parse failed, this many chunks go straight to text

# problem kinds (the keys of IngestResult.reject_reasons for row-level problems)
KIND_UTF8 = "undecodable bytes (invalid UTF-8)"
KIND_RAGGED = "ragged row (wrong number of cells)"
KIND_MALFORMED = "malformed CSV"

_NEWLINE, _CR = 10, 13


@functools.cache
def _all_but(delimiter: str) -> bytes:
    """translate() table argument that deletes every byte except the delimiter and the newline."""
    return bytes(b for b in range(256) if b not in (ord(delimiter), _NEWLINE))


@dataclass(frozen=True)
class Header:
    """The header line of one file: its cells and where each needed column sits."""

    names: tuple[str, ...]
    positions: dict[str, int]  # needed column -> cell index
    delimiter: str = DELIMITER
    size: int = 0  # bytes of the header line, its line end (and a BOM) included: where the data starts

    @property
    def width(self) -> int:
        return len(self.names)


@dataclass
class CellChunk:
    """One chunk of records: problems for unusable ones, string cells for the others.

    Records are the non-empty lines of ``blob``. Where each one starts and ends (the end excludes
    the line terminator) and its line number are only needed for the rows that end up rejected:
    a chunk that parsed whole leaves them to be found on first use (``_all_lines``).
    """

    blob: bytes
    records: int  # how many records (non-empty lines)
    first_line: int  # the line number of the blob's first line (header = line 1)
    blank_lines: int = 0
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)  # record -> (kind, message)
    parsed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # records split into cells
    cells: dict[str, pa.Array] = field(default_factory=dict)  # column -> StringArray over `parsed`
    # columns the C++ parser typed itself (``column_types`` given): column -> Int64 / Double array
    typed: dict[str, pa.Array] = field(default_factory=dict)
    body: bytes = b""  # the parsed records as handed to the C++ parser (to re-read typed columns as text)
    header: Header | None = None
    typed_failed: bool = False  # the typed parse was tried and failed (a bad cell): text cells only
    offset: int = -1  # byte offset of ``blob`` in its file (-1: not tracked)
    _bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # starts, ends, line numbers

    @classmethod
    def _all_lines(cls, blob: bytes, first_line: int) -> CellChunk:
        """A chunk whose lines are all records (no blank line): positions found on first use."""
        lines = count_newlines(blob, 0, len(blob)) + (0 if blob.endswith(b"\n") else 1)
        return cls(blob=blob, records=lines, first_line=first_line)

    @property
    def starts(self) -> np.ndarray:
        return self._located()[0]

    @property
    def ends(self) -> np.ndarray:
        return self._located()[1]

    @property
    def line_numbers(self) -> np.ndarray:
        """The 1-based line number of every record."""
        return self._located()[2]

    def _located(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._bounds is None:
            starts, ends = _line_bounds(self.blob, np.frombuffer(self.blob, np.uint8))
            self._bounds = starts, ends, np.arange(self.first_line, self.first_line + len(ends), dtype=np.int64)
        return self._bounds

    def __len__(self) -> int:
        return self.records

    def strings(self, name: str) -> pa.Array:
        """The string cells of one column over ``parsed`` (a typed column is re-read as text once)."""
        if name not in self.cells:
            cells = _arrow_cells(self.body, self.header, len(self.parsed), len(self.body))
            if cells is None:  # cannot happen: the same body parsed typed
                raise AssertionError("a typed chunk did not re-parse as text")
            self.cells.update({key: value for key, value in cells.items() if key not in self.cells})
        return self.cells[name]

    def raw(self, record: int) -> bytes:
        return self.blob[self.starts[record]:self.ends[record]]


def count_newlines(data: bytes, start: int, end: int) -> int:
    """How many newlines are in ``data[start:end]`` (numpy counts 5x as fast as ``bytes.count``)."""
    if end <= start:
        return 0
    return int(np.count_nonzero(np.frombuffer(data, np.uint8, count=end - start, offset=start) == _NEWLINE))


def raw_text(record: bytes) -> str:
    """The original line for the rejects file (bad bytes escaped, length capped)."""
    text = record[: RAW_TEXT_LIMIT * 4].decode("utf-8", errors="backslashreplace")
    return text.rstrip("\r\n")[:RAW_TEXT_LIMIT]


def read_header(stream, uri: str, needed: Sequence[str], delimiter: str = DELIMITER) -> Header:
    """Read and check the first line of ``stream``; every problem is a fatal one-line DataError."""
    first = stream.readline(MAX_LINE_BYTES)
    size = len(first)
    if not first:
        raise DataError(f"{uri}: empty file (expected a header line with columns {', '.join(needed)})")
    if first.startswith(UTF8_BOM):
        first = first[len(UTF8_BOM):]
    try:
        text = first.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise DataError(f"{uri}: line 1: the header is not valid UTF-8 (byte {err.start + 1})") from None
    if not text.strip():
        raise DataError(f"{uri}: missing header: line 1 is empty")
    try:
        names = tuple(cell.strip() for cell in next(csv.reader([text], delimiter=delimiter, strict=True)))
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
        raise DataError(f"{uri}: header is missing {noun} {listed}{_delimiter_hint(names, delimiter)}")
    return Header(names=names, positions={name: names.index(name) for name in needed}, delimiter=delimiter, size=size)


def _delimiter_hint(names: tuple[str, ...], delimiter: str) -> str:
    """A header that parsed as one column but holds another common delimiter: say which to set."""
    if len(names) != 1:
        return ""
    for other, word in OTHER_DELIMITERS.items():
        if other != delimiter and other in names[0]:
            shown = "\\t" if other == "\t" else other
            return (f"; line 1 parses as one column with {delimiter!r} but contains {word}s: "
                    f"set `delimiter: \"{shown}\"` in the feature spec")
    return ""


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


class _LineBlocks:
    """Cuts a byte stream into blocks of whole lines, ``max_lines`` lines each (the last: the rest).

    Finding the offset of every newline costs as much as a third of the C++ parse, so a block is
    found by counting instead: a window a little longer than ``max_lines`` lines of the mean
    length so far, its newlines counted, and only its last part searched for the exact cut.
    """

    def __init__(self, stream, uri: str):
        self.stream = stream
        self.uri = uri
        self.buffer = b""
        self.start = 0  # first byte not handed out yet
        self.eof = False
        self.line_bytes = 0.0  # the mean line length of the last block (0 before the first)

    def _read(self) -> None:
        data = self.stream.read(READ_BYTES)
        if not data:
            self.eof = True
            return
        self.buffer = self.buffer[self.start:] + data
        self.start = 0

    def next_block(self, max_lines: int) -> bytes | None:
        want = int(max_lines * self.line_bytes * WINDOW_SLACK) + 1 if self.line_bytes else READ_BYTES
        while True:
            while len(self.buffer) - self.start < want and not self.eof:
                self._read()
            if self.eof and len(self.buffer) - self.start <= want:  # the rest, which may lack a final newline
                end = len(self.buffer)
            else:
                end = self.buffer.rfind(b"\n", self.start, self.start + want) + 1
            lines = count_newlines(self.buffer, self.start, end)
            if end > self.start and self.buffer[end - 1] != _NEWLINE:
                lines += 1
            if lines >= max_lines or (self.eof and end == len(self.buffer)):
                break
            if want > MAX_LINE_BYTES and lines == 0:
                raise DataError(f"{self.uri}: a line is longer than {MAX_LINE_BYTES >> 20} MB: not a CSV file?")
            want = int(want * 1.5) + 1  # the lines got longer: a wider window
        if end <= self.start:
            return None
        if lines > max_lines:  # cut after the max_lines-th newline: scan the window's tail only
            tail = self.start + int(max_lines * self.line_bytes / WINDOW_SLACK)
            before = count_newlines(self.buffer, self.start, tail) if self.start < tail < end else max_lines
            if before >= max_lines:  # no estimate yet, or it was off: scan the whole window
                tail, before = self.start, 0
            newlines = np.flatnonzero(np.frombuffer(self.buffer, np.uint8, count=end - tail, offset=tail) == _NEWLINE)
            end = tail + int(newlines[max_lines - before - 1]) + 1
            lines = max_lines
        block = self.buffer[self.start:end]
        self.line_bytes = len(block) / lines
        self.start = end
        return block


def iter_cell_chunks(stream, header: Header, chunk_rows: int, uri: str = "", first_line: int = 2,
                     column_types: dict[str, pa.DataType] | None = None, first_offset: int = -1
                     ) -> Iterator[CellChunk]:
    """Yield the lines after the header in chunks of at most ``chunk_rows`` lines.

    ``stream`` is a binary stream positioned after the header line. ``column_types`` (numeric
    columns only) lets the C++ parser type those columns itself (``CellChunk.typed``) when a
    chunk's cells all convert; see ``split_cells``. ``first_offset`` (the stream's byte offset in
    its file) makes each chunk carry its own (``CellChunk.offset``).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    blocks = _LineBlocks(stream, uri)
    line_number = first_line
    offset = first_offset
    skip_typed = 0  # dirty data fails the typed parse chunk after chunk: do not pay for it every time
    while (blob := blocks.next_block(chunk_rows)) is not None:
        types = column_types if not skip_typed else None
        chunk = split_cells(blob, line_number, header, types)
        skip_typed = TYPED_RETRY_CHUNKS if chunk.typed_failed else max(0, skip_typed - 1)
        line_number += len(chunk) + chunk.blank_lines
        if first_offset >= 0:
            chunk.offset = offset
            offset += len(blob)
        if len(chunk) or chunk.blank_lines:
            yield chunk


def _line_bounds(blob: bytes, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (newline excluded) offsets of every line of ``blob``."""
    newlines = np.flatnonzero(data == _NEWLINE)
    ends = newlines if blob.endswith(b"\n") else np.append(newlines, len(blob))
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    return starts, ends


def split_cells(blob: bytes, first_line: int, header: Header,
                column_types: dict[str, pa.DataType] | None = None) -> CellChunk:
    """Split a block of whole lines into string cells of the needed columns.

    Unusable lines become problems; empty lines (also a lone carriage return) are skipped. With
    ``column_types``, on the fast path those columns come back typed in ``CellChunk.typed``
    (empty cells as nulls) when every cell of the chunk converts, else all cells as strings.
    """
    if column_types and (b"x" in blob or b"X" in blob):  # pyarrow reads 0x10 as 16 in int columns, Python does not
        column_types = {name: kind for name, kind in column_types.items() if not pa.types.is_integer(kind)}
    if column_types and blob and _plain_lines(blob):
        # the usual chunk: the typed parse of the whole blob succeeds only if every line has
        # exactly the header's cells and every typed cell converts, and gives one row per line
        # only if no line is blank (they are skipped); else the general path
        chunk = CellChunk._all_lines(blob, first_line)
        cells = _arrow_cells(blob, header, len(chunk), 0, column_types, skip_blank_lines=True)
        if cells is not None:
            chunk.parsed = np.arange(len(chunk))
            chunk.typed = {name: cells.pop(name) for name in column_types}
            chunk.cells, chunk.body, chunk.header = cells, blob, header
            return chunk
    data = np.frombuffer(blob, np.uint8)
    starts, ends = _line_bounds(blob, data)
    lengths = ends - starts
    last_byte = data[np.maximum(ends - 1, 0)] if len(blob) else np.zeros(len(ends), np.uint8)
    blank = (lengths == 0) | ((lengths == 1) & (last_byte == _CR))
    numbers = np.arange(first_line, first_line + len(ends), dtype=np.int64)
    records = np.flatnonzero(~blank)
    chunk = CellChunk(blob=blob, records=len(records), first_line=first_line, blank_lines=int(blank.sum()),
                      _bounds=(starts[records], ends[records], numbers[records]))
    if len(records) == 0:
        chunk.cells = {name: pa.array([], pa.string()) for name in header.positions}
        return chunk
    if not blob.isascii():
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError:
            for record in range(len(chunk)):
                try:
                    chunk.raw(record).decode("utf-8")
                except UnicodeDecodeError as err:
                    chunk.problems[record] = (KIND_UTF8, "undecodable bytes: invalid UTF-8 at byte "
                                                         f"{err.start + 1} of the line")
    if b'"' in blob or _bare_carriage_return(blob):
        return _split_by_line(chunk, header)
    longest = int(lengths.max())
    if column_types and not chunk.problems and len(records) == len(ends):
        # no blank line after all: the fast path's typed parse of this very blob failed on a cell
        column_types = None
        chunk.typed_failed = True
    # cells per line = delimiters + 1, counted on the blob reduced to delimiters and newlines
    reduced = np.frombuffer(blob.translate(None, _all_but(header.delimiter)), np.uint8)
    reduced_ends = np.flatnonzero(reduced == _NEWLINE)
    if not blob.endswith(b"\n"):
        reduced_ends = np.append(reduced_ends, len(reduced))
    delimiters = (np.diff(reduced_ends, prepend=-1) - 1)[records]
    usable = delimiters == header.width - 1
    for record in np.flatnonzero(~usable):
        record = int(record)
        if record not in chunk.problems:
            chunk.problems[record] = (KIND_RAGGED,
                                      f"ragged row: {delimiters[record] + 1} cells, expected {header.width}")
    if chunk.problems:
        usable[list(chunk.problems)] = False
    chunk.parsed = np.flatnonzero(usable)
    if len(chunk.parsed) == 0:
        chunk.cells = {name: pa.array([], pa.string()) for name in header.positions}
        return chunk
    body = blob if len(chunk.parsed) == len(ends) else _join_lines(blob, chunk, usable)
    cells = None
    if column_types:
        cells = _arrow_cells(body, header, len(chunk.parsed), longest, column_types)
        chunk.typed_failed = cells is None
        if cells is not None:
            chunk.typed = {name: cells.pop(name) for name in column_types}
            chunk.body, chunk.header = body, header
    if cells is None:
        cells = _arrow_cells(body, header, len(chunk.parsed), longest)
    if cells is None:  # the C++ parser saw the lines differently: take the careful path
        chunk.problems = {r: p for r, p in chunk.problems.items() if p[0] == KIND_UTF8}
        return _split_by_line(chunk, header)
    chunk.cells = cells
    return chunk


def _plain_lines(blob: bytes) -> bool:
    """No quote, no carriage return but in CRLF line ends, valid UTF-8: the C++ parser sees the
    lines as they are."""
    if b'"' in blob or _bare_carriage_return(blob):
        return False
    if blob.isascii():
        return True
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bare_carriage_return(blob: bytes) -> bool:
    """A carriage return not followed by a newline: the C++ parser would take it for a line break."""
    if b"\r" not in blob:
        return False
    data = np.frombuffer(blob, np.uint8)
    carriage_returns = data == _CR
    return np.count_nonzero(carriage_returns) != np.count_nonzero(carriage_returns[:-1] & (data[1:] == _NEWLINE))


def _join_lines(blob: bytes, chunk: CellChunk, usable: np.ndarray) -> bytes:
    """The usable records only, each ending with a newline: slices of runs of usable records."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], usable, [False]]).astype(np.int8)))
    pieces = []
    for first, stop in zip(edges[0::2], edges[1::2], strict=True):
        pieces.append(blob[chunk.starts[first]:chunk.ends[stop - 1]])
    return b"\n".join(pieces) + b"\n"


def _arrow_cells(body: bytes, header: Header, expected_rows: int, longest_line: int,
                 column_types: dict[str, pa.DataType] | None = None, skip_blank_lines: bool = False
                 ) -> dict[str, pa.Array] | None:
    """Split clean, quote-free, rectangular lines with pyarrow's C++ parser.

    Cells are strings, except the columns of ``column_types`` (empty cells become nulls there);
    None when the parser fails (a cell that does not convert, or lines it sees differently) or
    gives other than ``expected_rows`` rows (a blank line is a row of nulls, or with
    ``skip_blank_lines`` no row).
    """
    generated = [f"c{i}" for i in range(header.width)]
    wanted = {name: generated[pos] for name, pos in header.positions.items()}
    types = dict.fromkeys(wanted.values(), pa.string())
    for name, kind in (column_types or {}).items():
        types[wanted[name]] = kind
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=generated, use_threads=True,
                                           block_size=max(ARROW_BLOCK_BYTES, 2 * longest_line + 2)),
            parse_options=pacsv.ParseOptions(delimiter=header.delimiter, quote_char=False,
                                             ignore_empty_lines=skip_blank_lines),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(wanted.values()),
                                                 null_values=[""], true_values=[], false_values=[],
                                                 strings_can_be_null=False, check_utf8=False),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != expected_rows:
        return None
    return {name: table.column(col).combine_chunks() for name, col in wanted.items()}


def _split_by_line(chunk: CellChunk, header: Header) -> CellChunk:
    """The careful path: each line parsed on its own by the csv module."""
    rows: list[list[str]] = []
    parsed: list[int] = []
    for record in range(len(chunk)):
        if record in chunk.problems:
            continue
        text = chunk.raw(record).decode("utf-8").rstrip("\r")
        try:
            cells = next(csv.reader([text], delimiter=header.delimiter, strict=True))
        except csv.Error as err:
            chunk.problems[record] = (KIND_MALFORMED, f"malformed CSV: {err} (a quoted cell cannot span lines)")
            continue
        if len(cells) != header.width:
            chunk.problems[record] = (KIND_RAGGED, f"ragged row: {len(cells)} cells, expected {header.width}")
            continue
        rows.append(cells)
        parsed.append(record)
    chunk.parsed = np.array(parsed, dtype=np.int64)
    chunk.cells = {name: pa.array([row[pos] for row in rows], pa.string()) for name, pos in header.positions.items()}
    return chunk
