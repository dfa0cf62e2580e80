"""KFP wrapper of the ingest logic (components/ingest/executor.py); no logic lives here."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def ingest(
    data_uri: str,
    spec_uri: str,
    split_seed: int,
    train_data: Output[Dataset],
    eval_data: Output[Dataset],
    test_data: Output[Dataset],
    rejects: Output[Dataset],
    statistics: Output[Artifact],
    statistics_view: Output[Markdown],
    statistics_html: Output[HTML],
    metrics: Output[Metrics],
    runner: str = "local",
    beam_options: str = "",
    workers: int = 0,
    task: str = "",
) -> NamedTuple("IngestOutputs", rows_read=int, rows_rejected=int):
    """Stream raw CSV (file, folder, glob or s3://), quarantine bad rows, split, write Parquet + statistics.

    Args:
        data_uri: a CSV file, a folder of CSV shards, a glob, or an s3:// URI (MinIO; the endpoint
            and credentials come from the environment).
        spec_uri: the feature spec YAML; empty for the built-in taxi spec.
        split_seed: seed of the hash split into train/eval/test (80/10/10).
        train_data: the training split (Parquet parts).
        eval_data: the eval split (Parquet parts).
        test_data: the test split (Parquet parts).
        rejects: rows that failed validation, with file, line and reason (rejects.jsonl).
        statistics: per-column statistics of the training split, and the spec it was read with.
        statistics_view: the statistics as tables and text histograms.
        statistics_html: the statistics as tables, a histogram plot per numeric column and bar
            charts of the top values of string columns and of a class label's classes.
        metrics: rows read and rejected.
        runner: local (this step's process) or beam (the same logic as an Apache Beam pipeline).
        beam_options: with runner beam, Beam pipeline options separated by spaces (default: Beam's
            in-process runner; e.g. --runner=PortableRunner --job_endpoint=HOST:8099 for Flink).
        workers: with runner local, worker processes (0: one per core this step may use, its CPU
            affinity capped by its cgroup CPU limit); the output does not depend on it.
        task: the task the pipeline expects (regression, binary, multiclass; empty: the spec's):
            a spec whose label says another task is refused before any row is read.
    """
    from collections import namedtuple
    from pathlib import Path

    from mlengine.components.ingest.executor import run
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics
    from mlengine.constants import REJECTS_FILE

    setup_logging()
    spec = load_spec(spec_uri)
    result = run(
        data_uri,
        spec,
        {"train": train_data.path, "eval": eval_data.path, "test": test_data.path},
        str(Path(rejects.path) / REJECTS_FILE),
        statistics.path,
        statistics_view_path=statistics_view.path,
        html_path=statistics_html.path,
        runner=runner,
        beam_options=beam_options,
        split_seed=split_seed,
        workers=workers,
        task=task,
    )
    train_data.metadata["rows"] = result.rows_per_split["train"]
    eval_data.metadata["rows"] = result.rows_per_split["eval"]
    test_data.metadata["rows"] = result.rows_per_split["test"]
    rejects.metadata["rows"] = result.rows_rejected
    statistics.metadata.update({"spec": spec.name, "source": data_uri})
    log_metrics(metrics, {"rows_read": result.rows_read, "rows_rejected": result.rows_rejected})
    outputs = namedtuple("IngestOutputs", ["rows_read", "rows_rejected"])
    return outputs(result.rows_read, result.rows_rejected)
