"""The monitoring pipeline: compare the served model's logged inputs with its training statistics.

Upload its YAML next to the training pipeline and give it a recurring run (e.g. hourly) in the
Kubeflow UI: each run imports the ingest statistics of the training run behind the served model,
reads the predictor's serving-input log and reports drift (mean shift, variance ratio, PSI) as
Metrics, Markdown and an HTML page of histograms; its bool output says whether drift was found.
"""

from kfp import dsl

from mlengine.components.monitor.component import monitor
from mlengine.pipelines import platform

PIPELINE_NAME = "mlengine-skew-monitor"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Training/serving skew: logged serving inputs vs the training statistics.",
)
def monitoring_pipeline(statistics_uri: str, serving_log_uri: str, thresholds: str = "") -> bool:
    """Drift of the logged serving inputs against the training statistics; True when found.

    Args:
        statistics_uri: the ingest statistics artifact of the training run behind the served model.
        serving_log_uri: the predictor's serving-input log (s3:// prefix or object, folder, glob).
        thresholds: "" for the defaults, or e.g. "psi=0.3,mean_shift=0.5".
    """
    statistics = dsl.importer(artifact_uri=statistics_uri, artifact_class=dsl.Artifact, reimport=False)
    statistics.set_display_name("training statistics")
    check = monitor(statistics=statistics.output, serving_log_uri=serving_log_uri, thresholds=thresholds)
    check.set_display_name("compare serving inputs with training")
    check.set_caching_options(enable_caching=False)  # the log grows between runs: always re-read it
    platform.finish()  # image registry; on a cluster the MinIO Secret
    return check.outputs["Output"]
