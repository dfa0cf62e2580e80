"""Byte ranges of one local text file, cut just after a newline, read as streams of their own.

Ingest's local engine and batch prediction read large uncompressed files in parallel pieces.
A cut is aimed at a byte and moved forward to just after the next newline, as Arrow's and Beam's
readers find theirs: every piece starts at a line start and ends at a line end, so a CRLF never
loses its LF. A quoted cell spanning lines can be cut: ingest's reader treats every physical
line as a record; batch prediction hands the rest of a file to one reader from the first range
holding a quote.
"""

from __future__ import annotations

from mlengine.errors import DataError

CUT_SCAN_BYTES = 1 << 16  # read forward this much at a time looking for the line end of a cut
MAX_LINE_BYTES = 1 << 26  # a "line" longer than this is not CSV (or is a broken file)


def line_end_after(handle, offset: int, size: int, uri: str) -> int:
    """The offset just past the first newline at or after ``offset`` (``size`` if there is none)."""
    handle.seek(offset)
    position = offset
    while position < size:
        block = handle.read(CUT_SCAN_BYTES)
        if not block:
            break
        found = block.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(block)
        if position - offset > MAX_LINE_BYTES:
            raise DataError(f"{uri}: a line is longer than {MAX_LINE_BYTES >> 20} MB: not a CSV file?")
    return size


def cut_at_line_ends(handle, start: int, size: int, piece_bytes: float, uri: str) -> list[tuple[int, int]]:
    """``[start, size)`` of a seekable binary ``handle`` as consecutive ``(start, end)`` ranges of
    about ``piece_bytes``, each ending just after a newline (the last: at ``size``)."""
    starts = [start]
    while size - starts[-1] > piece_bytes:
        cut = line_end_after(handle, int(starts[-1] + piece_bytes), size, uri)
        if cut >= size:
            break
        starts.append(cut)
    return list(zip(starts, [*starts[1:], size], strict=True))


class ByteRange:
    """``read`` over the next ``size`` bytes of a stream, then end of stream."""

    def __init__(self, stream, size: int):
        self.stream = stream
        self.left = size

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.stream.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data
