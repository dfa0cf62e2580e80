"""Reading the ingested splits: Parquet parts streamed record batch by record batch.

Every consumer of a split (the analyze pass, training input, evaluation, batch jobs) reads it
through these functions, so a split is never loaded whole and an unreadable or incomplete file
is one line naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlengine.constants import PARQUET_PART_PATTERN
from mlengine.errors import DataError

READ_BATCH_ROWS = 65_536


def list_parquet_files(split_dir: str | Path) -> list[str]:
    """The Parquet parts of one split directory, sorted; a clear error when there are none."""
    directory = Path(split_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: split directory not found")
    prefix = PARQUET_PART_PATTERN.split("{", 1)[0]
    files = sorted(str(p) for p in directory.glob(f"{prefix}*.parquet") if p.is_file())
    if not files:
        files = sorted(str(p) for p in directory.glob("*.parquet") if p.is_file())
    if not files:
        raise DataError(f"{directory}: no Parquet files ({prefix}*.parquet) in this split directory")
    return files


def read_columns(path: str, batch, names: list[str]) -> dict[str, np.ndarray]:
    """Numpy columns of one Arrow record batch: float64 / int64 / object (str); nulls rejected."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        index = batch.schema.get_field_index(name)
        if index < 0:
            raise DataError(f"{path}: column {name!r} is missing (columns: {', '.join(batch.schema.names)})")
        array = batch.column(index)
        if array.null_count:
            raise DataError(f"{path}: column {name!r} has {array.null_count} missing values; "
                            "ingest must fill or reject them")
        out[name] = array.to_numpy(zero_copy_only=False)
    return out


def iter_record_batches(files: list[str], names: list[str], batch_rows: int = READ_BATCH_ROWS):
    """Yield ``(path, numpy columns)`` per Arrow record batch of every file, in order."""
    import pyarrow.parquet as pq

    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises several types for unreadable files
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"{path}: not a readable Parquet file: {reason}") from None
        missing = [n for n in names if n not in parquet.schema_arrow.names]
        if missing:
            present = ", ".join(parquet.schema_arrow.names)
            raise DataError(f"{path}: column {missing[0]!r} is missing (columns: {present})")
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=names):
            yield path, read_columns(path, batch, names)


def count_rows(files: list[str]) -> int:
    """Rows of the given Parquet files, from their footers (no data read)."""
    import pyarrow.parquet as pq

    total = 0
    for path in files:
        try:
            total += pq.ParquetFile(path).metadata.num_rows
        except Exception as err:  # pyarrow raises several types for unreadable files
            raise DataError(f"{path}: not a readable Parquet file: {err}") from None
    return total
