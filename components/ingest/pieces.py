"""The input of the local engine cut into independent pieces, and pieces grouped into tasks.

A piece is a whole file or a byte range of one. Only local uncompressed files are cut: a gzip
stream cannot start mid-way and an S3 object is streamed whole, so each of those is one piece.
A cut is always just after a newline (found by reading forward from the byte where the cut was
aimed, as Arrow's and Beam's readers find theirs). Every physical line is one record for the
reader (``csvreader``: a quoted cell spanning lines is not merged, its lines are rejected one by
one), so any line end is a safe cut: a piece reads exactly the records the whole file would, a
CRLF never loses its LF, and a quoted newline gives the same rejects however the file is cut.

A piece's line numbers are absolute when its first line is known (the first piece of a file:
line 2, after the header); later pieces count from 0 and the engine adds the lines of the pieces
before them (``Piece.first_line == 0``), so rejects name the line of the file whatever the cut.

Tasks are consecutive pieces of about ``piece_bytes`` (small files grouped, so a folder of many
small shards does not become as many Parquet parts); each task writes its own parts.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

from mlengine.components.ingest.csvreader import Header, read_header
from mlengine.components.ingest.workerserver import MIN_PIECE_BYTES
from mlengine.components.shared import storage
from mlengine.components.shared.byteranges import ByteRange, cut_at_line_ends

TASKS_PER_WORKER = 8  # pieces per worker when a file is cut: the last ones end close together (4: 10% slower)


@dataclass(frozen=True)
class Piece:
    """One file, or the lines between two cuts of it."""

    uri: str
    header: Header
    start: int = -1  # offset of its first line; -1: the whole file as a stream (header skipped)
    end: int = -1  # offset just past its last line (-1: the end of the stream)
    first_line: int = 2  # line number of its first line (header = line 1); 0: unknown, counted from 0

    @property
    def size(self) -> int:
        return self.end - self.start if self.start >= 0 else 0


@dataclass(frozen=True)
class Task:
    """Consecutive pieces one worker ingests into its own Parquet parts."""

    index: int
    pieces: tuple[Piece, ...]


def _splittable(uri: str) -> bool:
    return not storage.is_s3_uri(uri) and not uri.lower().endswith(".gz")


def plan_tasks(files: list[str], names: list[str], delimiter: str, workers: int,
               piece_bytes: int = 0) -> list[Task]:
    """Cut ``files`` into pieces and group them into tasks, in file and byte order.

    ``piece_bytes`` 0 picks it from the input size: one task per file group for one worker, else
    about ``TASKS_PER_WORKER`` tasks per worker, none under ``MIN_PIECE_BYTES``.
    """
    headers: list[tuple[str, Header, int, int]] = []  # uri, header, header end, size (-1: not cut)
    for uri in files:
        with storage.open_binary(uri) as stream:
            header = read_header(stream, uri, names, delimiter)
            if _splittable(uri):
                headers.append((uri, header, stream.tell(), os.fstat(stream.fileno()).st_size))
            else:
                headers.append((uri, header, -1, -1))
    if piece_bytes <= 0:
        total = sum(max(size, 0) for *_, size in headers)
        share = math.ceil(total / (max(workers, 1) * TASKS_PER_WORKER))
        piece_bytes = math.inf if workers <= 1 else max(MIN_PIECE_BYTES, share)
    pieces: list[Piece] = []
    for uri, header, header_end, size in headers:
        if header_end < 0:
            pieces.append(Piece(uri, header))
        else:
            pieces += _cut(uri, header, header_end, size, piece_bytes)
    return _group(pieces, piece_bytes)


def _cut(uri: str, header: Header, header_end: int, size: int, piece_bytes: float) -> list[Piece]:
    """The byte ranges of one local file, each ending just after a newline (the last: at the end)."""
    with storage.open_binary(uri) as handle:
        ranges = cut_at_line_ends(handle, header_end, size, piece_bytes, uri)
    return [Piece(uri, header, start, end, 2 if start == header_end else 0) for start, end in ranges]


def _group(pieces: list[Piece], piece_bytes: float) -> list[Task]:
    """Consecutive pieces into tasks of about ``piece_bytes`` (a whole-file stream counts as full)."""
    tasks: list[Task] = []
    current: list[Piece] = []
    filled = 0.0
    for piece in pieces:
        current.append(piece)
        filled += piece.size if piece.start >= 0 else piece_bytes
        if filled >= piece_bytes:
            tasks.append(Task(len(tasks), tuple(current)))
            current, filled = [], 0.0
    if current:
        tasks.append(Task(len(tasks), tuple(current)))
    return tasks


@contextlib.contextmanager
def open_piece(piece: Piece) -> Iterator[tuple[object, Header]]:
    """The piece's lines as a binary stream, and the header its cells are read with."""
    with storage.open_binary(piece.uri) as stream:
        if piece.start < 0:
            # the file changed since the plan: still fails naming it
            header = read_header(stream, piece.uri, list(piece.header.positions), piece.header.delimiter)
            yield stream, header
        else:
            stream.seek(piece.start)
            yield ByteRange(stream, piece.end - piece.start), piece.header
