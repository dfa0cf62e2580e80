"""KFP wrapper of the skew monitor (components/monitor/executor.py); no logic lives here."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def monitor(
    statistics: Input[Artifact],
    serving_log_uri: str,
    thresholds: str,
    drift: Output[Artifact],
    drift_report: Output[Markdown],
    drift_report_html: Output[HTML],
    metrics: Output[Metrics],
) -> bool:
    """Compare the logged serving inputs with the training statistics; True when drift is detected.

    Args:
        statistics: ingest's statistics artifact of the training run behind the served model.
        serving_log_uri: the predictor's log: an s3:// prefix (what the InferenceService writes,
            s3://<bucket>/<prefix>/serving-log/<name>/), a folder, a glob, or one JSON Lines file.
        thresholds: "" for the defaults, or e.g. "psi=0.3,mean_shift=0.5".
        drift: drift.json (every column's distances, sample sizes and verdict) and the reports.
        drift_report: the verdict per column as Markdown.
        drift_report_html: training vs serving histograms per column.
        metrics: the largest distances and the number of drifted columns.
    """
    import shutil
    import sys
    from pathlib import Path

    from mlengine.components.monitor.executor import (
        REPORT_HTML_FILE,
        REPORT_MARKDOWN_FILE,
        metrics_summary,
        run_monitor,
    )
    from mlengine.components.shared.reports import log_metrics

    result = run_monitor(statistics.path, serving_log_uri, drift.path, thresholds=thresholds,
                         progress=lambda line: print(line, file=sys.stderr, flush=True))
    shutil.copyfile(Path(drift.path) / REPORT_MARKDOWN_FILE, drift_report.path)
    shutil.copyfile(Path(drift.path) / REPORT_HTML_FILE, drift_report_html.path)
    log_metrics(metrics, metrics_summary(result))
    drift.metadata.update({"status": result["status"], "columns_drifted": result["columns_drifted"]})
    return bool(result["drift_detected"])
