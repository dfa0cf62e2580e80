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
    from mlengine.components.monitor.executor import run
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics

    setup_logging()
    result = run(statistics.path, serving_log_uri, drift.path, thresholds=thresholds,
                 markdown_path=drift_report.path, html_path=drift_report_html.path)
    log_metrics(metrics, result.metrics)
    drift.metadata.update({"status": result.status, "columns_drifted": result.columns_drifted})
    return result.drift_detected
