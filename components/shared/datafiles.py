"""Cheap sniffing of a local data file before a command reads it: empty, header only, binary, wrong delimiter.

Only the first KBs are read. Every problem is one :class:`DataError` line naming the file; raw bytes are
never echoed (at most the ``repr`` of a short excerpt of text that decoded cleanly).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mlengine.errors import DataError

SNIFF_BYTES = 64 * 1024
_OTHER_DELIMITERS = (";", "\t", "|")


def sniff_data_path(uri: str, expected_columns: Iterable[str] | None = None, delimiter: str = ",") -> None:
    """Check ``uri`` when it is one local CSV file (folders, globs, URIs and Parquet are left to their readers)."""
    if "://" in uri or any(ch in uri for ch in "*?["):
        return
    path = Path(uri)
    if not path.is_file() or path.suffix.lower() in (".parquet", ".gz"):
        return
    sniff_csv_file(path, expected_columns, delimiter)


def sniff_jsonl_path(uri: str) -> None:
    """Check ``uri`` when it is one local JSON Lines file: not empty, not binary."""
    path = Path(uri)
    if "://" in uri or not path.is_file() or path.suffix.lower() == ".gz":
        return
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise DataError(f"{path}: empty file (no logged rows)")
    _check_text(path, head, whole=path.stat().st_size <= SNIFF_BYTES)


def _check_text(path: Path, chunk: bytes, whole: bool) -> str:
    nul = chunk.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: binary file (a NUL byte at byte {nul + 1}), not text")
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        if whole or err.start < len(chunk) - 4:  # a cut multi-byte character at the chunk's end is fine
            raise DataError(f"{path}: not UTF-8 text (byte {err.start + 1}); binary file?") from None
        return chunk[:err.start].decode("utf-8")


def sniff_csv_file(path: Path, expected_columns: Iterable[str] | None = None, delimiter: str = ",") -> None:
    """Raise ``DataError`` when ``path`` is empty, binary, header-only or split by another delimiter."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES + 1)
    if not head.strip():
        raise DataError(f"{path}: empty file (no header, no rows)")
    whole = len(head) <= SNIFF_BYTES
    chunk = head[:SNIFF_BYTES]
    text = _check_text(path, chunk, whole)
    lines = [line for line in text.splitlines() if line.strip()]
    if whole and len(lines) < 2:
        raise DataError(f"{path}: header only, no data rows")
    header = lines[0]
    expected = list(expected_columns or [])
    if expected and delimiter not in header and len(expected) > 1:
        found = next((d for d in (",", *_OTHER_DELIMITERS) if d != delimiter and d in header), None)
        if found is not None:
            raise DataError(f"{path}: the header is split by {found!r}, not {delimiter!r}; expected columns such as "
                            f"{expected[0]!r}")
