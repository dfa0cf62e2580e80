"""The data-file sniff: binary files named without their bytes, text cut at the sniff boundary kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlengine.components.shared.datafiles import SNIFF_BYTES, sniff_csv_file
from mlengine.components.shared.featurespec import load_spec
from mlengine.errors import DataError

HEADER = ",".join(load_spec().column_names) + ",fare_amount\n"


def test_a_cut_multibyte_character_at_the_sniff_boundary_is_not_binary(tmp_path: Path) -> None:
    row = "é," * 10 + "1\n"
    path = tmp_path / "big.csv"
    path.write_text(HEADER + row * (SNIFF_BYTES // len(row.encode()) + 10), encoding="utf-8")
    sniff_csv_file(path, load_spec().column_names)  # no error


def test_sniff_names_the_problem_without_bytes(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00\xff\xfe\xc3\x28 secret\x07\x1b[31m" * 20)
    with pytest.raises(DataError) as info:
        sniff_csv_file(path)
    assert str(info.value) == f"{path}: binary file (a NUL byte at byte 5), not text"
