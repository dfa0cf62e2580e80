"""Training input: Parquet parts streamed as batched ``(features, label)`` tf.data datasets.

Files are read Arrow record batch by record batch (never a whole split in memory) and cut into
model batches with numpy, so Python runs once per batch, not once per row. Shuffling permutes
rows inside each read chunk and then shuffles whole batches through a bounded buffer: shuffling
single elements halves the throughput. With a ``tf.distribute.InputContext`` each
input pipeline reads only its share of the files (or of the rows, when there are fewer files
than pipelines).

The label comes out as the model's target: float32 for a regression label; for a class label the
int64 index of its class in the vocabulary (``labels.class_indices``). The mapping is done here,
in numpy once per read chunk, rather than by a lookup table inside the model's loss: the exported
model never sees a label, a parameter-server worker then needs no table resource of its own, and
evaluation maps its labels with the same function.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from mlengine.components.shared.featurespec import DTYPES
from mlengine.components.shared.labels import class_indices
from mlengine.components.shared.parquet import iter_record_batches
from mlengine.errors import DataError

SHUFFLE_BUFFER_BATCHES = 64
READ_CHUNK_BATCHES = 16  # rows are permuted within chunks of this many batches
GRAPH_INPUT_SUFFIX = ".tfrecord"
GRAPH_INPUT_DONE = "_COMPLETE"
GRAPH_RECORD_ROWS = 1024  # rows per TFRecord record of the graph-only input


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
                out[name] = label_target(self.spec, values)
            elif kind == "string":
                out[name] = values.astype(object)
            else:
                out[name] = values.astype(DTYPES[kind].numpy)
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
            if full:
                # one element = a stack of whole batches [k, batch]; unbatch() splits it in C++
                stacked = {k: v[:full].reshape(-1, self.batch_size) for k, v in chunk.items()}
                target = stacked.pop(label)
                yield stacked, target
            if full < rows:
                pending = {k: v[full:] for k, v in chunk.items()}
        if pending is not None and len(pending[label]):
            stacked = {k: v.reshape(1, -1) for k, v in pending.items()}
            target = stacked.pop(label)
            yield stacked, target


def label_target(spec, values: np.ndarray) -> np.ndarray:
    """Raw label values -> the training target: float32, or int64 class indices for a class label."""
    if spec.is_classification:
        return class_indices(spec, values)
    return values.astype(np.float32)


def label_dtype(spec, tf):
    """The target's TensorFlow dtype (see ``label_target``)."""
    return tf.int64 if spec.is_classification else tf.float32


def make_dataset(files: list[str], spec, batch_size: int, *, shuffle: bool, repeat: bool,
                 input_context=None, seed: int = 0):
    """A tf.data.Dataset of ``({column: [B] tensor}, label [B])`` batches (the target: see ``label_target``).

    ``batch_size`` is the global batch size: with an ``input_context`` each pipeline batches
    ``input_context.get_per_replica_batch_size(batch_size)`` rows and reads only its shard.
    ``files`` are Parquet parts (streamed through Python, once per chunk of batches) or the
    ``.tfrecord`` files of ``prepare_graph_input`` (read by TensorFlow ops only, as
    ParameterServerStrategy needs: its workers run no Python of ours).
    """
    from mlengine.components.shared.tf import import_tf

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
    if all(str(f).endswith(GRAPH_INPUT_SUFFIX) for f in files):
        return _graph_dataset(tf, shard_files, row_shard, spec, batch_size, shuffle=shuffle, repeat=repeat,
                              seed=seed + pipeline_id)
    generator = _BatchGenerator(shard_files, spec, batch_size, shuffle, row_shard, seed + 7919 * pipeline_id)
    signature = (
        {col.name: tf.TensorSpec([None, None], getattr(tf, col.dtypes.tf), name=col.name)
         for col in spec.columns},
        tf.TensorSpec([None, None], label_dtype(spec, tf), name=spec.label.name),
    )
    # Python runs once per read chunk (READ_CHUNK_BATCHES batches), tf.data splits it
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature).unbatch()
    if repeat:
        dataset = dataset.repeat()
    return _finish(tf, dataset, shuffle=shuffle, seed=seed + pipeline_id)


def _finish(tf, dataset, *, shuffle: bool, seed: int):
    if shuffle:
        dataset = dataset.shuffle(SHUFFLE_BUFFER_BATCHES, seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    # sharding is done by files/rows above; tf.distribute must not try to re-shard
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


# --- the graph-only input (ParameterServerStrategy) ------------------------------------------------
def graph_input_dir(files: list[str], spec, job: str = "") -> Path:
    """Where ``prepare_graph_input`` puts the TFRecord copy of these files.

    The key depends only on the files' absolute paths and sizes, the spec's columns and ``job``
    (the trainer passes its model directory, so concurrent jobs never share a copy), so every
    process of a job that sees the same staged files at the same paths computes the same place.
    """
    key = hashlib.sha256(job.encode())
    for path in sorted(files):
        key.update(f"{Path(path).resolve()}:{Path(path).stat().st_size};".encode())
    key.update(json.dumps([c.to_dict() for c in spec.all_columns], sort_keys=True).encode())
    return Path(tempfile.gettempdir()) / "mlengine-graph-input" / key.hexdigest()[:20]


def prepare_graph_input(files: list[str], spec, out_dir: str | Path | None = None, *, seed: int = 0) -> list[str]:
    """Write a TFRecord copy of Parquet parts that TensorFlow ops alone can read; return its files.

    One ``.tfrecord`` per Parquet part; each record holds GRAPH_RECORD_ROWS rows (shuffled once,
    seeded) as one serialized tensor per column. Idempotent: an existing complete copy is reused.
    """
    from mlengine.components.shared.tf import import_tf

    tf, _ = import_tf()
    out = Path(out_dir) if out_dir is not None else graph_input_dir(files, spec)
    names = [*spec.column_names, spec.label.name]
    targets = [str(out / (Path(f).stem + GRAPH_INPUT_SUFFIX)) for f in sorted(files)]
    if (out / GRAPH_INPUT_DONE).is_file():
        return targets
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    types = {col.name: col.type for col in spec.all_columns}
    for source, target in zip(sorted(files), targets, strict=True):
        partial = target + ".partial"
        with tf.io.TFRecordWriter(partial) as writer:
            for _, chunk in iter_record_batches([source], names, batch_rows=GRAPH_RECORD_ROWS):
                order = rng.permutation(len(chunk[spec.label.name]))
                feature = {}
                for name in names:
                    values = chunk[name][order]
                    if name == spec.label.name:
                        tensor = tf.constant(label_target(spec, values))
                    elif types[name] == "string":
                        tensor = tf.constant(values.astype(object), tf.string)
                    else:
                        tensor = tf.constant(values.astype(DTYPES[types[name]].numpy))
                    serialized = tf.io.serialize_tensor(tensor).numpy()
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[serialized]))
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        os.replace(partial, target)
    (out / GRAPH_INPUT_DONE).write_text(json.dumps({"files": targets}), encoding="utf-8")
    return targets


def _graph_dataset(tf, files, row_shard, spec, batch_size, *, shuffle, repeat, seed):
    dtypes = {col.name: getattr(tf, col.dtypes.tf) for col in spec.columns}
    dtypes[spec.label.name] = label_dtype(spec, tf)
    description = {name: tf.io.FixedLenFeature([], tf.string) for name in dtypes}
    label = spec.label.name

    def parse(record):
        serialized = tf.io.parse_single_example(record, description)
        columns = {}
        for name, dtype in dtypes.items():
            values = tf.io.parse_tensor(serialized[name], dtype)
            values.set_shape([None])
            if row_shard is not None:
                values = values[row_shard[0]::row_shard[1]]
            columns[name] = values
        target = columns.pop(label)
        return columns, target

    dataset = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if repeat:
        dataset = dataset.repeat()
    # records are chunks of rows; rebatch cuts them into model batches without a per-row step
    dataset = dataset.rebatch(batch_size)
    return _finish(tf, dataset, shuffle=shuffle, seed=seed)


def steps_for(rows: int, batch_size: int) -> int:
    """Batches needed to cover ``rows`` once at ``batch_size`` (at least 1)."""
    return max(1, math.ceil(rows / batch_size))
