"""KFP wrapper of batch prediction (components/batch_predict/executor.py)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def batch_predict(
    model: Input[Model],
    data_uri: str,
    keep_columns: str,
    csv_output: bool,
    predictions: Output[Dataset],
    metrics: Output[Metrics],
) -> int:
    """Predict every row of a CSV/Parquet file, folder, glob or s3:// prefix with a trained model.

    Writes Parquet parts (and a CSV on request) with the input row number, the kept columns and
    the prediction; rows that fail validation go to rejects.jsonl with their reason. Returns the
    number of rejected rows.

    Args:
        model: the trained model directory (serving/ SavedModel over raw features + feature_spec.yaml).
        data_uri: CSV or Parquet file, folder, glob, or s3:// URI (MinIO) of the rows to predict.
        keep_columns: comma-separated input columns copied to the output (keys such as an id); "" for none.
        csv_output: also write predictions-00000.csv.
        predictions: predictions-*.parquet, rejects.jsonl and batch_prediction.json (the counts).
        metrics: rows read, predicted and rejected, rows per second.
    """
    from mlengine.components.batch_predict.executor import run
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.shared.reports import log_metrics

    setup_logging()
    result = run(model.path, data_uri, predictions.path, keep=keep_columns, csv_output=csv_output)
    log_metrics(metrics, result.metrics)
    return result.rows_rejected
