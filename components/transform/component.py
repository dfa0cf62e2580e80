"""KFP wrapper of the transform step (components/transform/executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def transform(
    train_data: Input[Dataset],
    statistics: Input[Artifact],
    hyperparameters: Input[Artifact],
    transform_fn: Output[Artifact],
    runner: str = "local",
    beam_options: str = "",
):
    """Analyze the training split: bucket boundaries for this run's nbuckets, means and stds, vocabularies.

    Args:
        train_data: the ingested training split (Parquet parts).
        statistics: ingest's statistics artifact; the feature spec is read from it.
        hyperparameters: the HyperParameters tune chose (or passed through); nbuckets is used here.
        transform_fn: transform.json, which the trained model carries inside as its preprocessing.
        runner: local (this step's process) or beam (the analyze pass as an Apache Beam pipeline).
        beam_options: with runner beam, Beam pipeline options separated by spaces (default: Beam's
            in-process runner).
    """
    from pathlib import Path

    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.transform.executor import run
    from mlengine.constants import SPEC_FILE

    setup_logging()
    result = run(train_data.path, load_spec(Path(statistics.path) / SPEC_FILE),
                 HyperParameters.load(hyperparameters.path).nbuckets, transform_fn.path, runner=runner,
                 beam_options=beam_options)
    transform_fn.metadata.update(result.metadata)
