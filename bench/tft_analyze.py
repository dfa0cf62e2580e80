"""The analyze pass with tensorflow-transform on Beam's DirectRunner (run in .venv-tft, not .venv).

Reads the taxi CSV the preprocessing benchmark generated, computes what our analyze pass does for
each numeric column (mean, variance, quantile boundaries) with ``tft.AnalyzeDataset`` and prints
one JSON line ``{"rows": N, "seconds": S, "tft": version}``. It imports nothing from mlengine:
tensorflow-transform and tfx-bsl live in their own venv so the project's venv is left as it is
(checked 2026-12: tft 1.21.0 resolved there with TensorFlow 2.21.0, Beam 2.77.0, protobuf 6.33).

    .venv-tft/bin/python bench/tft_analyze.py CSV --nbuckets 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--nbuckets", type=int, default=16)
    args = parser.parse_args(argv)

    import apache_beam as beam
    import pyarrow.csv as pacsv
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    started = time.perf_counter()
    table = pacsv.read_csv(args.csv)
    columns = table.column_names
    records = table.to_pylist()
    feature_spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in columns}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))

    def preprocessing_fn(inputs):
        outputs = {}
        for name in columns:
            value = tf.cast(inputs[name], tf.float32)
            outputs[f"{name}_z"] = tft.scale_to_z_score(value)
            outputs[f"{name}_b"] = tft.bucketize(value, args.nbuckets)
        return outputs

    records = [{name: float(row[name]) for name in columns} for row in records]
    with beam.Pipeline(runner="DirectRunner") as pipeline, tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        data = pipeline | beam.Create(records)
        _ = (data, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(records), "seconds": round(seconds, 4), "tft": tft.__version__,
                      "beam": beam.__version__, "tensorflow": tf.__version__}), flush=True)
    # TF 2.21 + tft 1.21 here segfault in interpreter shutdown (exit 139) after the work is done: skip it
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
