"""Batch prediction (Cloud ML Engine's prediction jobs): raw rows in, predictions out, in bounded memory.

Input is a CSV or Parquet file, a folder of them, a glob, or an ``s3://`` URI (MinIO). Files are
streamed in large record batches (never a whole file in memory; a large local CSV is parsed in
byte ranges on every core, ``_FileBatches``); every batch is validated
against the model's feature spec (missing cells, non-numbers, non-integers, NaN/inf, values out
of the declared range), the valid rows go through the SavedModel's ``serving_default`` signature
in one call, and the output is written as Parquet parts as it goes (CSV too on request): the
input row number (0-based over all input files in order), the kept columns and ``prediction``
(a classifier's class, with ``probabilities`` next to it: ``outputs.py``).
Rows that fail go to ``rejects.jsonl`` with file, row and reason; ``rows_read = rows_predicted +
rows_rejected`` always holds and is written to ``batch_prediction.json``.

``run`` is the entry point: it returns a :class:`BatchPredictResult`; progress goes to the
``mlengine.batch_predict`` logger.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlengine.components.shared.logs import component_logger
from mlengine.errors import DataError, MlengineError

log = component_logger("batch_predict")
BATCH_ROWS = 65_536  # rows per model call and per output row group
CSV_BLOCK_BYTES = 8 << 20
OUTPUT_PART = "predictions-{index:05d}.parquet"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "batch_prediction.json"
ROW_COLUMN = "row"
PREDICTION_COLUMN = "prediction"
PROGRESS_EVERY_ROWS = 500_000
PREFETCH_BATCHES = 2  # batches read and validated ahead of the model call
MAX_BAD_VALUES = 8  # distinct bad cells in a column of a batch taken one by one; more: one regex pass
MIN_PIECE_BYTES = 8 << 20  # a CSV byte range read by one thread: no smaller (each has its reader's start-up)
MAX_PIECE_BYTES = 32 << 20  # nor larger: a range is held whole until its turn (memory: workers + 2 of them)
PIECES_PER_WORKER = 4
NOT_A_NUMBER_PREFIX = "\x00not a number: "  # + a numeric column's name: the text of its cells that are not numbers
_clock = time.monotonic  # one clock for every timing (a test moves it)


@dataclass(frozen=True)
class BatchPredictResult:
    """What one batch prediction did.

    ``rows_per_second`` is ``rows_read / predict_seconds``: the time from the first batch to the
    last written row, without the model load (``load_seconds``); ``seconds`` is the whole run;
    ``model_seconds`` is the time in model calls summed over the worker threads (batches are
    predicted in parallel, so it may exceed ``predict_seconds``).
    """

    rows_read: int
    rows_predicted: int
    rows_rejected: int
    files: list[str]
    model_dir: str
    out_dir: str
    outputs: list[str]
    rejects: str
    summary: str
    kept_columns: list[str]
    batch_rows: int
    seconds: float
    load_seconds: float
    predict_seconds: float
    model_seconds: float
    rows_per_second: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def metrics(self) -> dict:
        """The scalars a pipeline step logs."""
        return {"rows_read": self.rows_read, "rows_predicted": self.rows_predicted,
                "rows_rejected": self.rows_rejected, "rows_per_second": float(self.rows_per_second)}


def keep_list(keep: str | Sequence[str]) -> list[str]:
    """``"id, hour"`` or ``["id", "hour"]`` -> ``["id", "hour"]`` (blanks dropped, order and duplicates kept once)."""
    names = keep.split(",") if isinstance(keep, str) else list(keep or [])
    return list(dict.fromkeys(name.strip() for name in names if name and name.strip()))


def available_cores() -> int:
    """Cores this process may run on (``taskset`` / cgroup cpusets respected)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_files(data_uri: str) -> list[str]:
    """CSV and Parquet files a URI names: a file, a folder (its *.csv / *.parquet), a glob, or s3://."""
    from mlengine.components.shared import storage

    local = data_uri[len("file://"):] if data_uri.startswith("file://") else data_uri
    if not storage.is_s3_uri(data_uri) and Path(local).is_dir():
        files = sorted(str(p) for p in Path(local).iterdir()
                       if p.is_file() and (storage.is_csv_name(p.name) or p.name.endswith(".parquet")))
        if not files:
            raise DataError(f"{data_uri}: folder has no CSV or Parquet files")
        return files
    return storage.resolve_inputs(data_uri)


class _FileBatches:
    """Arrow tables of ``batch_rows`` rows (the last may be shorter) from one file, with each row's
    0-based data row index in the file; ragged CSV lines (wrong cell count) go to ``ragged``.

    A large local uncompressed CSV is read in byte ranges cut at line ends, ``workers`` of them at
    a time on threads of their own (each range one buffer that Arrow's parser reads without the
    GIL); its lines are re-joined in file order into the same batches a single reader gives, so
    the output does not depend on the cut (from the first range with a quote on, one reader:
    ``_pieces``). A gzip stream or an S3 object is read by one reader.

    In byte ranges, the ``numeric`` columns come as doubles (``_numbers_read``): Arrow's parser
    reads them straight as numbers, or where a range holds a cell that is not a number, as text
    turned into numbers on the reading thread. Elsewhere every column comes as text.
    """

    def __init__(self, uri: str, names: list[str], batch_rows: int, workers: int = 1, piece_bytes: int = 0,
                 numeric: Sequence[str] = ()):
        self.uri, self.names, self.batch_rows = uri, names, batch_rows
        self.workers, self.piece_bytes = workers, piece_bytes
        wanted = set(numeric)
        self.numeric = [name for name in names if name in wanted]
        self.ragged: list[tuple[int, str]] = []  # (data row index, reason) up to the last batch, drained by the caller
        self.rows = 0  # data rows of the file (parsed + ragged), final once iteration ends

    def __iter__(self) -> Iterator:
        if self.uri.endswith(".parquet"):
            yield from self._parquet()
        else:
            yield from self._rebatched(self._csv_chunks())

    def _parquet(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from mlengine.components.shared import storage

        uri = self.uri
        if storage.is_s3_uri(uri):  # Parquet needs random access: a local copy of this one file
            import tempfile

            from mlengine.components.shared.staging import download_prefix

            scratch = Path(tempfile.mkdtemp(prefix="mlengine-batch-"))
            download_prefix(uri, scratch, required=True)
            uri = str(next(scratch.rglob("*.parquet")))
        parquet = pq.ParquetFile(uri)
        missing = [n for n in self.names if n not in parquet.schema_arrow.names]
        if missing:
            raise DataError(f"{self.uri}: has no column {missing[0]!r} (the model's feature spec needs it)")
        for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=self.names):
            index = np.arange(self.rows, self.rows + batch.num_rows, dtype=np.int64)
            self.rows += batch.num_rows
            yield pa.Table.from_batches([batch]), index

    def _csv_chunks(self) -> Iterator[tuple]:
        """(record batch, data row indices in the file, ragged rows) in file order; sets ``rows``."""
        import os

        from mlengine.components.shared import storage
        from mlengine.components.shared.byteranges import MAX_LINE_BYTES, cut_at_line_ends

        with storage.open_binary(self.uri) as stream:
            header = stream.readline(MAX_LINE_BYTES)  # a longer header line is not CSV
            columns = _check_header(self.uri, header, self.names)
            ranges = []
            if not storage.is_s3_uri(self.uri) and not self.uri.lower().endswith(".gz"):
                size = os.fstat(stream.fileno()).st_size
                piece_bytes = self.piece_bytes or _piece_bytes(size, self.workers)
                if size - stream.tell() > piece_bytes:
                    ranges = cut_at_line_ends(stream, stream.tell(), size, piece_bytes, self.uri)
            if not ranges:  # one reader over the rest of the stream
                reader = _CsvReader(self.uri, self.names, header, stream)
                yield from reader
                self.rows = reader.rows
                return
        yield from self._pieces(header, columns, ranges)

    def _pieces(self, header: bytes, columns: list[str], ranges: list[tuple[int, int]]) -> Iterator[tuple]:
        """The byte ranges read ``workers`` at a time, handed on in order: ``workers + 1`` read or being
        read while the oldest one's batches are handed on.

        A cut may fall inside a quoted cell that spans lines, so from the first range holding a
        quote on, one reader takes the rest of the file (every range before it had no quote: its
        start is a record's start). Numeric CSVs have none; a file that quotes every row is read
        by one reader.
        """
        import threading
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        from mlengine.components.shared import storage

        own = threading.local()  # each reading thread's buffer, reused range after range
        as_text: set[str] = set()  # numeric columns a range found a cell not a number in: later ones read them as text
        as_text_lock = threading.Lock()

        def read(start: int, end: int) -> tuple[list, int] | None:
            import pyarrow as pa

            # the header and the range in one buffer: Arrow parses it without calling back into Python.
            # The parsed batches are copies (the buffer can be reused once the range is parsed), and a
            # reused buffer spares the kernel zeroing fresh pages for every range (a third of the page
            # faults of a 5M-row CSV)
            size = len(header) + end - start
            if len(getattr(own, "buffer", b"")) < size:
                own.buffer = bytearray(size)
            view = memoryview(own.buffer)[:size]
            view[:len(header)] = header
            with storage.open_binary(self.uri) as stream:
                stream.seek(start)
                left = view[len(header):]
                while left:
                    count = stream.readinto(left)
                    if not count:
                        raise DataError(f"{self.uri}: the file got shorter while it was read (bytes {start}-{end})")
                    left = left[count:]
            if own.buffer.find(b'"', len(header), size) >= 0:
                return None
            with as_text_lock:
                text = set(as_text)
            while True:  # Arrow reads numbers straight as doubles; a column with a cell that is not one, as text
                reader = _CsvReader(self.uri, self.names, b"", pa.BufferReader(pa.py_buffer(view)),
                                    where=f"bytes {start}-{end}",
                                    doubles=[n for n in self.numeric if n not in text], columns=columns)
                try:
                    chunks = list(reader)
                    break
                except _NotNumbers as err:
                    text.add(err.column)
                    with as_text_lock:
                        as_text.add(err.column)
            return [(_numbers_read(batch, self.numeric), index, ragged) for batch, index, ragged in chunks], reader.rows

        pending: deque = deque()  # (range start, its future), in file order
        left = deque(ranges)
        quoted_from = -1

        def submit_next() -> None:
            if left:
                start, end = left.popleft()
                pending.append((start, pool.submit(read, start, end)))

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="batch-predict-read") as pool:
            try:
                for _ in range(self.workers + 1):
                    submit_next()
                while pending:
                    start, future = pending.popleft()
                    done = future.result()
                    if done is None:
                        quoted_from = start
                        break
                    submit_next()
                    chunks, rows = done
                    yield from self._after_rows_so_far(chunks)
                    self.rows += rows
            finally:
                for _start, future in pending:
                    future.cancel()
        if quoted_from >= 0:
            with storage.open_binary(self.uri) as stream:
                stream.seek(quoted_from)
                reader = _CsvReader(self.uri, self.names, header, stream, where=f"from byte {quoted_from}")
                # the same columns as the ranges before it: numbers as doubles
                yield from self._after_rows_so_far((_numbers_read(batch, self.numeric), index, ragged)
                                                   for batch, index, ragged in reader)
                self.rows += reader.rows

    def _after_rows_so_far(self, chunks) -> Iterator[tuple]:
        """A range's chunks (row indices from 0) with the file's rows before the range added."""
        for batch, index, ragged in chunks:
            yield batch, index + self.rows, [(row + self.rows, reason) for row, reason in ragged]

    def _rebatched(self, chunks: Iterator[tuple]) -> Iterator[tuple]:
        """Record batches of any size -> tables of ``batch_rows`` rows; a ragged row is handed on
        (``ragged``) with the batch its row number falls in, or at the end: the same at any cut."""
        import pyarrow as pa

        pending, indices, pending_rows, ragged = [], [], 0, []

        def emit(table, index):
            nonlocal ragged
            last = int(index[-1])
            self.ragged += [item for item in ragged if item[0] < last]
            ragged = [item for item in ragged if item[0] >= last]
            return table, index

        for batch, index, found in chunks:
            ragged += found
            pending.append(batch)
            indices.append(index)
            pending_rows += batch.num_rows
            while pending_rows >= self.batch_rows:
                table, index = pa.Table.from_batches(pending), np.concatenate(indices)
                yield emit(table.slice(0, self.batch_rows), index[:self.batch_rows])
                rest = table.slice(self.batch_rows)
                pending, indices, pending_rows = rest.to_batches(), [index[self.batch_rows:]], rest.num_rows
        if pending_rows:
            yield emit(pa.Table.from_batches(pending), np.concatenate(indices))
        self.ragged += ragged


def _piece_bytes(size: int, workers: int) -> int:
    """About ``PIECES_PER_WORKER`` ranges per worker (the last ones end close together), within bounds."""
    return int(min(MAX_PIECE_BYTES, max(MIN_PIECE_BYTES, size // (workers * PIECES_PER_WORKER))))


def _check_header(uri: str, header: bytes, names: list[str]) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        columns = pacsv.read_csv(pa.py_buffer(header)).column_names
    except pa.ArrowInvalid as err:
        raise DataError(f"{uri}: cannot read the CSV header: {err}") from None
    missing = [n for n in names if n not in columns]
    if missing:
        raise DataError(f"{uri}: header has no column {missing[0]!r} (the model's feature spec needs it)")
    return columns


class _NotNumbers(Exception):
    """A column read as doubles holds a cell that is not a number (read it as text)."""

    def __init__(self, column: str):
        super().__init__(column)
        self.column = column


# Arrow's message when a cell does not convert: "In CSV column #2: [Row #3: ]CSV conversion error to double: ..."
_CONVERSION_ERROR = re.compile(r"^In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to double")


class _CsvReader:
    """Arrow's CSV reader over the header line, then a stream of data lines (a file's rest), or over
    one buffer holding both (``header`` empty: a byte range): yields (record batch, data row
    indices from 0, ragged rows); ``rows`` counts parsed and ragged rows once done.

    Columns come as text, but ``doubles`` as numbers (blank cells null); a cell in one of them that
    is not a number raises ``_NotNumbers`` naming the column (``columns``: the file's header).
    """

    def __init__(self, uri: str, names: list[str], header: bytes, stream, where: str = "",
                 doubles: Sequence[str] = (), columns: Sequence[str] = ()):
        self.uri, self.names, self.header, self.stream, self.where = uri, names, header, stream, where
        self.doubles, self.columns = list(doubles), list(columns)
        self.rows = 0
        self._found: list[tuple[int, str]] = []  # ragged rows since the last batch
        self._ragged_rows: list[int] = []  # every ragged row so far (sorted: the parser is sequential)

    def _on_invalid(self, row) -> str:
        index = int(row.number) - 2 if row.number is not None else -1  # line 1 is the header
        self._found.append((index, f"ragged row: {row.actual_columns} cells, the header has {row.expected_columns}"))
        self._ragged_rows.append(index)
        return "skip"

    def _indices(self, parsed_start: int, count: int) -> np.ndarray:
        """Data row indices of parsed rows ``parsed_start ..``: shifted past every ragged row before them."""
        index = np.arange(parsed_start, parsed_start + count, dtype=np.int64)
        if self._ragged_rows:
            # the i-th ragged row comes after (its index - i) parsed rows: shift by how many precede each row
            before = np.asarray(self._ragged_rows, np.int64) - np.arange(len(self._ragged_rows))
            index += np.searchsorted(before, index, side="right")
        return index

    def _not_numbers(self, err: Exception) -> _NotNumbers | None:
        """The column read as doubles that Arrow found a cell that is not a number in, if that is the error."""
        found = _CONVERSION_ERROR.match(str(err))
        index = int(found.group(1)) if found else -1
        if 0 <= index < len(self.columns) and self.columns[index] in self.doubles:
            return _NotNumbers(self.columns[index])
        return None

    def _malformed(self, rows: int, err: Exception) -> DataError:
        where = f" ({self.where})" if self.where else ""
        return DataError(f"{self.uri}: malformed CSV after data row {rows}{where}: {err}")

    def __iter__(self) -> Iterator[tuple]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        types = {**dict.fromkeys(self.names, pa.string()), **dict.fromkeys(self.doubles, pa.float64())}
        try:
            # one thread: the invalid-row handler then knows each line's number; only the columns
            # used are converted (a column left out is still counted, for ragged rows). Only a blank
            # cell is null: "NA" or "null" in a number column is a cell that is not a number, as in text
            reader = pacsv.open_csv(
                _Prefixed(self.header, self.stream) if self.header else self.stream,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=self._on_invalid),
                convert_options=pacsv.ConvertOptions(column_types=types, include_columns=self.names,
                                                     strings_can_be_null=False, null_values=[""]))
        except pa.ArrowInvalid as err:  # the header was read already: the first block of data is bad
            raise self._not_numbers(err) or self._malformed(0, err) from None
        parsed = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as err:
                raise self._not_numbers(err) or self._malformed(parsed + len(self._ragged_rows), err) from None
            found, self._found = self._found, []
            yield batch, self._indices(parsed, batch.num_rows), found
            parsed += batch.num_rows
        self.rows = parsed + len(self._ragged_rows)
        if self._found:  # ragged lines after the last parsed one
            yield _empty_batch(reader.schema), np.empty(0, np.int64), self._found


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already (the header line): those, then the rest."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count] = self.head[:count]
            self.head = self.head[count:]
            return count
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _numbers_read(batch, numeric: Sequence[str]):
    """``batch`` with every ``numeric`` column as doubles, null where the cell is blank or not a
    number, and after each the text of its cells that are not numbers (null elsewhere): every
    range gives the same columns, whichever of them it had to read as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, fields = [], []
    for field, array in zip(batch.schema, batch.columns, strict=True):
        if field.name not in numeric:
            arrays.append(array)
            fields.append(field)
            continue
        if pa.types.is_floating(field.type):
            not_numbers = pa.nulls(len(array), pa.string())
        else:  # read as text: the same parse as validation's (parse_numbers)
            values, blank, junk = parse_numbers(array)
            not_numbers = (pc.if_else(pa.array(junk), array, pa.scalar(None, pa.string())) if junk.any()
                           else pa.nulls(len(array), pa.string()))
            array = pa.array(values, mask=blank | junk)
        arrays += [array, not_numbers]
        fields += [pa.field(field.name, pa.float64()), pa.field(NOT_A_NUMBER_PREFIX + field.name, pa.string())]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _empty_batch(schema):
    import pyarrow as pa

    return pa.RecordBatch.from_arrays([pa.array([], field.type) for field in schema], schema=schema)


# a number, or nan/inf (caught later as not finite), with optional blanks around: one regex pass in C++
_NUMBER = r"^\s*[-+]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|nan|inf|infinity)\s*$"


def parse_numbers(array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSV cells (strings) -> float64 (NaN where not a number), blank mask, not-a-number mask; in Arrow's C++.

    A column of clean numbers is one cast. A column with bad cells usually has few distinct bad
    values (blanks, ``NA``): the cast names the first one, its cells become nulls, and the cast is
    tried again (``MAX_BAD_VALUES`` times); else a regex over every cell tells the kinds apart.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = len(array)
    blank, junk = np.zeros(rows, dtype=bool), np.zeros(rows, dtype=bool)
    cells = array
    for _ in range(MAX_BAD_VALUES + 1):
        try:
            values = pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
            return values, blank, junk
        except pa.ArrowInvalid as err:
            bad = _bad_cell(str(err))
        if bad is None or re.match(_NUMBER, bad, re.IGNORECASE):  # unknown message, or blanks around a number
            break
        mask = pc.equal(array, bad)
        found = mask.to_numpy(zero_copy_only=False)
        if not found.any():
            break
        (blank if bad == "" else junk)[found] = True
        cells = pc.if_else(mask, pa.scalar(None, pa.string()), cells)
    return _parse_dirty(array)


def _bad_cell(message: str) -> str | None:
    """The cell a failed string -> double cast names, or None if the message has another form."""
    prefix, suffix = "Failed to parse string: '", "' as a scalar of type double"
    if message.startswith(prefix) and message.endswith(suffix):
        return message[len(prefix):-len(suffix)]
    return None


def _parse_dirty(array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells with blanks or junk among the numbers: each kind found by a regex over every cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = pc.equal(array, "")
    number = pc.match_substring_regex(array, _NUMBER, ignore_case=True)
    junk = pc.invert(pc.or_(blank, number))
    cells = pc.if_else(number, array, pa.scalar("nan"))
    try:
        values = pc.cast(cells, pa.float64())
    except pa.ArrowInvalid:  # blanks around a number: trim, then parse
        values = pc.cast(pc.utf8_trim_whitespace(cells), pa.float64())
    return (values.to_numpy(zero_copy_only=False), blank.to_numpy(zero_copy_only=False),
            junk.to_numpy(zero_copy_only=False))


def validate(table, spec) -> tuple[dict[str, np.ndarray], np.ndarray, list[str | None]]:
    """Typed columns, a mask of valid rows and a reason for each invalid one (None where valid)."""
    rows = table.num_rows
    ok = np.ones(rows, dtype=bool)
    reasons: list[str | None] = [None] * rows
    columns: dict[str, np.ndarray] = {}

    def reject(mask: np.ndarray, message) -> None:
        for index in np.flatnonzero(mask & ok):
            reasons[index] = message(index)
        ok[mask] = False

    for col in spec.columns:
        array = table.column(col.name)
        if col.type == "string":
            values = array.to_numpy(zero_copy_only=False).astype(object)
            if array.null_count:
                reject(np.asarray(array.is_null()), lambda _i, n=col.name: f"column {n!r}: missing value")
            columns[col.name] = values
            continue
        import pyarrow as pa

        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            numbers, blank, junk = parse_numbers(array)
            if blank.any():
                reject(blank, lambda _i, n=col.name: f"column {n!r}: missing value")
            if junk.any():  # the bad cells looked up one by one: the whole column as Python strings costs more
                reject(junk, lambda i, n=col.name, a=array:
                       f"column {n!r}: not a number: {str(a[int(i)].as_py())[:40]!r}")
        else:
            numbers = array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            not_numbers = NOT_A_NUMBER_PREFIX + col.name  # a CSV range's cells that are not numbers (nulls here)
            if not_numbers in table.column_names and table.column(not_numbers).null_count < rows:
                cells = table.column(not_numbers)
                reject(np.asarray(cells.is_valid()), lambda i, n=col.name, a=cells:
                       f"column {n!r}: not a number: {str(a[int(i)].as_py())[:40]!r}")
            if array.null_count:
                reject(np.asarray(array.is_null()), lambda _i, n=col.name: f"column {n!r}: missing value")
        finite = np.isfinite(numbers)
        every_finite = bool(finite.all())  # the common case: the checks below skip their masking
        if not every_finite:
            reject(~finite, lambda i, n=col.name, v=numbers: f"column {n!r}: not finite: {v[i]}")
        if col.type == "int" and not pa.types.is_integer(array.type):
            with np.errstate(invalid="ignore"):
                fraction = numbers != np.round(numbers)
            reject(fraction if every_finite else fraction & finite,
                   lambda i, n=col.name, v=numbers: f"column {n!r}: not an integer: {v[i]:g}")
        if col.range is not None:
            low, high = col.range
            with np.errstate(invalid="ignore"):  # NaN compares False: outside only where finite
                outside = (numbers < low) | (numbers > high)
            reject(outside, lambda i, n=col.name, v=numbers, lo=low, hi=high:
                   f"column {n!r}: {v[i]:g} is outside the range [{lo}, {hi}]")
        filled = numbers if every_finite else np.where(finite, numbers, 0.0)
        columns[col.name] = filled.astype(np.int64) if col.type == "int" else filled.astype(np.float32)
    return columns, ok, reasons


def run(model_dir: str, data_uri: str, out_dir: str, *, keep: str | Sequence[str] = (),
        batch_rows: int = BATCH_ROWS, csv_output: bool = False, threads: int | None = None,
        prefetch: int = PREFETCH_BATCHES, piece_bytes: int = 0) -> BatchPredictResult:
    """Predict every row of ``data_uri`` with the model in ``model_dir`` and write ``out_dir``.

    Args:
        model_dir: the trained model directory (serving/ SavedModel + feature_spec.yaml).
        data_uri: CSV or Parquet file, folder, glob, or s3:// URI.
        out_dir: output folder: predictions-*.parquet (CSV on request), rejects.jsonl, batch_prediction.json.
        keep: input columns copied to the output (a list or a comma-separated string); columns of the
            feature spec keep the spec's type (int64 / float32), others keep the input's.
        batch_rows: rows per model call and per output row group.
        csv_output: also write predictions-00000.csv.
        threads: cores to use (default: every core this process may run on): that many worker
            threads each validate and predict a batch at a time (TensorFlow: one intra-op thread
            per call, ``threads`` inter-op threads), so predictions do not depend on it; a large
            local CSV is parsed in byte ranges on as many threads (``threads + 2`` ranges of at
            most ``MAX_PIECE_BYTES`` held at once).
        prefetch: batches read and validated ahead of the model (bounds the memory: each is
            ``batch_rows`` rows).
        piece_bytes: size of the byte ranges a large local CSV is read in, ``threads`` at a time
            (0: from the file size, ``MIN_PIECE_BYTES`` to ``MAX_PIECE_BYTES``); the output does
            not depend on it.

    Returns:
        The counts, paths and timings (also written to ``batch_prediction.json``).
    """
    import pyarrow.parquet as pq

    from mlengine.components.batch_predict import outputs as prediction_outputs
    from mlengine.components.batch_predict import report
    from mlengine.components.shared.hugepages import transparent_huge_pages_off
    from mlengine.components.shared.savedmodel import load_model_dir
    from mlengine.components.shared.tf import configure_tf_threads

    if batch_rows < 1 or prefetch < 1:
        raise MlengineError(f"batch_rows and prefetch must be positive, got {batch_rows} and {prefetch}")
    threads = threads or available_cores()
    keep = keep_list(keep)
    for name in keep:
        if name in (ROW_COLUMN, PREDICTION_COLUMN, prediction_outputs.PROBABILITIES_COLUMN):
            raise MlengineError(f"--keep {name!r}: that name is the output's own column")
    started = _clock()
    # batches are predicted in parallel, one per worker thread, each model call on one TF thread: no
    # call waits on a shard whose core the reader took, and a batch's result does not depend on `threads`
    configure_tf_threads(threads, intra_op=1)
    model = load_model_dir(model_dir)
    load_seconds = _clock() - started
    spec = model.spec
    names = list(spec.column_names)
    files = resolve_files(data_uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("predictions-*"):
        old.unlink()
    counts = {"rows_read": 0, "rows_predicted": 0, "rows_rejected": 0}
    writer = None
    csv_handle = None
    next_progress = PROGRESS_EVERY_ROWS
    model_seconds = 0.0
    offset = 0  # rows of the earlier files: row numbers run on across files
    predict_started = _clock()  # rows/s counts from here: the model load is not prediction
    # huge pages off while Arrow buffers come and go batch after batch (shared/hugepages.py)
    with transparent_huge_pages_off():
        try:
            rejects = (out / REJECTS_FILE).open("w", encoding="utf-8")
            with rejects:
                def predict(valid: dict) -> dict:  # the task's prediction columns of one batch's valid rows
                    return prediction_outputs.predict(model, spec, {n: valid[n] for n in names})

                batches = _predicted_batches(files, list(dict.fromkeys([*names, *keep])), spec, batch_rows,
                                             predict=predict, workers=threads, prefetch=prefetch,
                                             piece_bytes=piece_bytes)
                for item in batches:
                    uri, offset = item["uri"], item["offset"]
                    found = list(item["ragged"])  # (row in the file, reason)
                    counts["rows_rejected"] += len(found)
                    if item["table"] is None:  # the end of one file
                        _write_rejects(rejects, uri, offset, found)
                        offset += item["file_rows"]
                        counts["rows_read"] = counts["rows_predicted"] + counts["rows_rejected"]
                        continue
                    table, file_index, ok, reasons = (item[k] for k in ("table", "index", "ok", "reasons"))
                    row_numbers = offset + file_index
                    found += [(int(file_index[index]), reasons[index]) for index in np.flatnonzero(~ok)]
                    _write_rejects(rejects, uri, offset, found)
                    if item["predictions"] is not None:
                        model_seconds += item["model_seconds"]
                        result = _output_table(table, row_numbers, ok, item["valid"], keep, item["predictions"])
                        if writer is None:
                            # row numbers and predictions are nearly all distinct: dictionaries only cost time
                            writer = pq.ParquetWriter(out / OUTPUT_PART.format(index=0), result.schema,
                                                      use_dictionary=False, write_statistics=False)
                        writer.write_table(result)
                        if csv_output:
                            csv_handle = _write_csv(out, prediction_outputs.csv_table(result, spec), csv_handle)
                    counts["rows_predicted"] += int(ok.sum())
                    counts["rows_rejected"] += int(table.num_rows - ok.sum())
                    counts["rows_read"] = counts["rows_predicted"] + counts["rows_rejected"]
                    if counts["rows_read"] >= next_progress:
                        next_progress += PROGRESS_EVERY_ROWS
                        log.info(report.progress_line(counts))
        finally:
            if writer is not None:
                writer.close()
            if csv_handle is not None:
                csv_handle.close()
    if offset != counts["rows_read"]:  # an invariant, never a user error
        raise MlengineError(f"batch prediction lost rows: {offset} data rows, {counts['rows_read']} accounted for")
    finished = _clock()
    predict_seconds = finished - predict_started
    result = BatchPredictResult(
        **counts, files=files, model_dir=str(model_dir), out_dir=str(out),
        outputs=sorted(str(p) for p in out.glob("predictions-*")), rejects=str(out / REJECTS_FILE),
        summary=str(out / SUMMARY_FILE), kept_columns=keep, batch_rows=batch_rows,
        seconds=round(finished - started, 3), load_seconds=round(load_seconds, 3),
        predict_seconds=round(predict_seconds, 6), model_seconds=round(model_seconds, 3),
        rows_per_second=counts["rows_read"] / predict_seconds if predict_seconds > 0 else 0.0)
    (out / SUMMARY_FILE).write_text(report.summary_json(result.as_dict()), encoding="utf-8")
    log.info(report.done_line(result.as_dict()))
    return result


def _write_rejects(rejects, uri: str, offset: int, found: list[tuple[int, str]]) -> None:
    """One JSON line per rejected row, in row order: ``file_row`` in its file, ``row`` over every input file."""
    for index, reason in sorted(found, key=lambda item: item[0]):
        rejects.write(json.dumps({"file": uri, "row": offset + index, "file_row": index, "reason": reason}) + "\n")


def _read_batches(files: list[str], names: list[str], batch_rows: int, workers: int = 1,
                  piece_bytes: int = 0, numeric: Sequence[str] = ()) -> Iterator[dict]:
    """Every file's batches in order, and one item (table None) at the end of each file."""
    offset = 0
    for uri in files:
        batches = _FileBatches(uri, names, batch_rows, workers, piece_bytes, numeric)
        for table, index in batches:
            ragged, batches.ragged = batches.ragged, []
            yield {"uri": uri, "offset": offset, "table": table, "index": index, "ragged": ragged}
        ragged, batches.ragged = batches.ragged, []
        yield {"uri": uri, "offset": offset, "table": None, "ragged": ragged, "file_rows": batches.rows}
        offset += batches.rows


def _output_table(table, row_numbers: np.ndarray, ok: np.ndarray, valid: dict[str, np.ndarray], keep: list[str],
                  predictions: dict):
    """The output rows of one batch (its valid rows): ``row``, the kept columns, the model's outputs."""
    import pyarrow as pa

    every = bool(ok.all())
    output = {ROW_COLUMN: pa.array(row_numbers if every else row_numbers[ok])}
    for name in keep:
        if name in valid:  # a feature: the validated, typed values
            output[name] = pa.array(valid[name])
        else:
            output[name] = table.column(name) if every else table.column(name).filter(pa.array(ok))
    output.update(predictions)  # the task's prediction columns (outputs.predict)
    return pa.table(output)


def _validate_and_predict(table, spec, predict) -> dict:
    """One batch on one worker thread: validated, then its valid rows predicted."""
    columns, ok, reasons = validate(table, spec)
    result = {"ok": ok, "reasons": reasons, "valid": None, "predictions": None, "model_seconds": 0.0}
    if ok.any():
        valid = columns if ok.all() else {name: values[ok] for name, values in columns.items()}
        tick = time.perf_counter()
        result.update(valid=valid, predictions=predict(valid), model_seconds=time.perf_counter() - tick)
    return result


def _predicted_batches(files: list[str], names: list[str], spec, batch_rows: int, predict, workers: int,
                       prefetch: int, piece_bytes: int = 0) -> Iterator[dict]:
    """Every file's batches read (a large CSV in ``workers`` parallel byte ranges), then
    validated and predicted, each batch on one of ``workers`` threads, handed back in input order.

    At most ``workers + prefetch`` batches are in flight (bounded memory). Reading, validating and
    predicting overlap in C++ code that releases the GIL (Arrow, numpy, TensorFlow).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch-predict") as pool:
        try:
            numeric = [col.name for col in spec.columns if col.type != "string"]
            for item in _prefetched(_read_batches(files, names, batch_rows, workers, piece_bytes, numeric),
                                    depth=prefetch):
                work = (pool.submit(_validate_and_predict, item["table"], spec, predict)
                        if item["table"] is not None else None)
                pending.append((item, work))
                while len(pending) > workers + prefetch - 1:  # bounded: in order, the oldest first
                    yield _finished(*pending.popleft())
            while pending:
                yield _finished(*pending.popleft())
        finally:
            for _item, work in pending:
                if work is not None:
                    work.cancel()


def _finished(item: dict, work) -> dict:
    if work is not None:
        item.update(work.result())
    return item


def _prefetched(items: Iterator[dict], depth: int = 2) -> Iterator[dict]:
    """Run ``items`` in a thread, ``depth`` ahead: reading and validating (Arrow, GIL released) overlap
    the model calls (TensorFlow, GIL released) on another core."""
    import queue
    import threading

    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(("done", done))
        except BaseException as err:  # handed to the consumer, raised there
            handoff.put(("error", err))

    thread = threading.Thread(target=produce, name="batch-predict-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = handoff.get()
            if kind == "done":
                return
            if kind == "error":
                raise payload
            yield payload
    finally:
        stop.set()
        thread.join(timeout=5)


def _write_csv(out: Path, table, handle):
    import pyarrow.csv as pacsv

    if handle is None:
        handle = pacsv.CSVWriter(str(out / "predictions-00000.csv"), table.schema)
    handle.write_table(table)
    return handle
