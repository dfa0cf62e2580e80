"""Training input: Parquet parts streamed as batched ``(features, label)`` tf.data datasets.

Files are read Arrow record batch by record batch (never a whole split in memory) and cut into
model batches with numpy, so Python runs once per batch, not once per row. Shuffling permutes
rows inside each read chunk and then shuffles whole batches through a bounded buffer: shuffling
single elements halves the throughput (DESIGN.md). With a ``tf.distribute.InputContext`` each
input pipeline reads only its share of the files (or of the rows, when there are fewer files
than pipelines).
"""

from __future__ import annotations

import math

import numpy as np

from mlengine.components.transform.logic import iter_record_batches
from mlengine.components.transform.logic import list_parquet_files as _list_parquet_files
from mlengine.errors import DataError

SHUFFLE_BUFFER_BATCHES = 64
READ_CHUNK_BATCHES = 16  # rows are permuted within chunks of this many batches
_TF_DTYPES = {"float": "float32", "int": "int64", "string": "string"}
_NUMPY_DTYPES = {"float": np.float32, "int": np.int64}


def list_parquet_files(split_dir: str) -> list[str]:
    """The sorted ``part-*.parquet`` files of one split directory (DataError when there are none)."""
    return _list_parquet_files(split_dir)


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


def shard_plan(files: list[str], pipeline_id: int, num_pipelines: int) -> tuple[list[str], tuple[int, int] | None]:
    """Which files one input pipeline reads, and a (index, count) row shard when files are too few."""
    files = sorted(files)
    if num_pipelines <= 1:
        return files, None
    if len(files) >= num_pipelines:
        return files[pipeline_id::num_pipelines], None
    return files, (pipeline_id, num_pipelines)


class _BatchGenerator:
    """Callable that tf.data's from_generator invokes once per pass over the data."""

    def __init__(self, files, spec, batch_size, shuffle, row_shard, seed):
        self.files = files
        self.spec = spec
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.row_shard = row_shard
        self.seed = seed
        self.passes = 0
        self.names = [*spec.column_names, spec.label.name]
        self.types = {col.name: col.type for col in spec.all_columns}

    def _convert(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, values in columns.items():
            kind = self.types[name]
            if name == self.spec.label.name:
                out[name] = values.astype(np.float32)
            elif kind == "string":
                out[name] = values.astype(object)
            else:
                out[name] = values.astype(_NUMPY_DTYPES[kind])
        return out

    def __call__(self):
        rng = np.random.default_rng([self.seed, self.passes])
        self.passes += 1
        files = list(self.files)
        if self.shuffle:
            rng.shuffle(files)
        label = self.spec.label.name
        read_rows = self.batch_size * READ_CHUNK_BATCHES
        pending: dict[str, np.ndarray] | None = None
        current_path, seen = None, 0
        for path, chunk in iter_record_batches(files, self.names, batch_rows=read_rows):
            if path != current_path:
                current_path, seen = path, 0
            size = len(chunk[label])
            if self.row_shard is not None:
                index, count = self.row_shard
                first = (index - seen) % count  # rows whose position in their file % count == index
                chunk = {k: v[first::count] for k, v in chunk.items()}
            seen += size
            chunk = self._convert(chunk)
            if pending is not None:
                chunk = {k: np.concatenate([pending[k], v]) for k, v in chunk.items()}
                pending = None
            rows = len(chunk[label])
            if self.shuffle and rows > 1:
                order = rng.permutation(rows)
                chunk = {k: v[order] for k, v in chunk.items()}
            full = rows - rows % self.batch_size
            for start in range(0, full, self.batch_size):
                batch = {k: v[start:start + self.batch_size] for k, v in chunk.items()}
                target = batch.pop(label)
                yield batch, target
            if full < rows:
                pending = {k: v[full:] for k, v in chunk.items()}
        if pending is not None and len(pending[label]):
            target = pending.pop(label)
            yield pending, target


def make_dataset(files: list[str], spec, batch_size: int, *, shuffle: bool, repeat: bool,
                 input_context=None, seed: int = 0):
    """A tf.data.Dataset of ``({column: [B] tensor}, label [B] float32)`` batches.

    ``batch_size`` is the global batch size: with an ``input_context`` each pipeline batches
    ``input_context.get_per_replica_batch_size(batch_size)`` rows and reads only its shard.
    """
    from mlengine.components.train.tfenv import import_tf

    tf, _ = import_tf()
    if not files:
        raise DataError("make_dataset: no Parquet files given")
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    pipeline_id, num_pipelines = 0, 1
    if input_context is not None:
        batch_size = max(1, input_context.get_per_replica_batch_size(batch_size))
        pipeline_id, num_pipelines = input_context.input_pipeline_id, input_context.num_input_pipelines
    shard_files, row_shard = shard_plan(files, pipeline_id, num_pipelines)
    generator = _BatchGenerator(shard_files, spec, batch_size, shuffle, row_shard, seed + 7919 * pipeline_id)
    signature = (
        {col.name: tf.TensorSpec([None], getattr(tf, _TF_DTYPES[col.type]), name=col.name) for col in spec.columns},
        tf.TensorSpec([None], tf.float32, name=spec.label.name),
    )
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        dataset = dataset.shuffle(SHUFFLE_BUFFER_BATCHES, seed=seed + pipeline_id, reshuffle_each_iteration=True)
    options = tf.data.Options()
    # sharding is done above by files/rows; tf.distribute must not try to re-shard a generator
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def steps_for(rows: int, batch_size: int) -> int:
    """Batches needed to cover ``rows`` once at ``batch_size`` (at least 1)."""
    return max(1, math.ceil(rows / batch_size))
