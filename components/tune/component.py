"""KFP wrapper of hyperparameter tuning: local optuna trials, or a Katib Experiment on a cluster."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def tune(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    statistics: Input[Artifact],
    trials: int,
    parallel: int,
    algorithm: str,
    epochs: int,
    nbuckets: int,
    hidden_units: str,
    learning_rate: float,
    batch_size: int,
    mode: str,
    study: Output[Artifact],
    tuning_report: Output[HTML],
    tuning_table: Output[Markdown],
) -> NamedTuple("TuneOutputs", nbuckets=int, hidden_units=str, learning_rate=float, batch_size=int):
    """Search nbuckets (a preprocessing choice), layers, learning rate and batch size.

    With 0 trials the given hyperparameters pass through unchanged.
    """
    import sys
    from collections import namedtuple
    from pathlib import Path

    from mlengine.components.tune.launch import tune_hyperparameters

    defaults = {"nbuckets": nbuckets, "hidden_units": hidden_units, "learning_rate": learning_rate,
                "batch_size": batch_size}
    best, markdown, html = tune_hyperparameters(
        train_data.path, eval_data.path, statistics.path, study.path, defaults=defaults, trials=trials,
        parallel=parallel, algorithm=algorithm, epochs=epochs, mode=mode,
        output_uri=study.uri.rstrip("/") + "/trials",
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    Path(tuning_table.path).write_text(markdown, encoding="utf-8")
    Path(tuning_report.path).write_text(html, encoding="utf-8")
    study.metadata.update({"trials": trials, "algorithm": algorithm, "best": best})
    outputs = namedtuple("TuneOutputs", ["nbuckets", "hidden_units", "learning_rate", "batch_size"])
    return outputs(int(best["nbuckets"]), str(best["hidden_units"]), float(best["learning_rate"]),
                   int(best["batch_size"]))
