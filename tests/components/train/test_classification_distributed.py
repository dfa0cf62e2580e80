"""A binary classifier on the local parameter-server cluster (chief, 2 workers, 1 ps as local processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlengine.components.shared.analyze import analyze
from mlengine.components.shared.distributed import Topology
from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.components.shared.labels import class_indices
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.components.train import local
from mlengine.components.train.local import run_local_cluster
from mlengine.components.train.trainer import TrainConfig
from mlengine.constants import OUTPUT_CLASS, OUTPUT_PROBABILITIES
from tests.classifier_fixtures import BINARY_SPEC, classification_columns
from tests.distributed_fixtures import child_processes
from tests.log_capture import logged_lines
from tests.model_fixtures import write_splits

pytestmark = pytest.mark.e2e


def test_a_binary_classifier_trains_on_the_parameter_server_cluster(tmp_path):
    spec = spec_from_dict(BINARY_SPEC)
    splits = write_splits(classification_columns(BINARY_SPEC, 1000, seed=4), spec, tmp_path / "data")
    analyze(str(splits["train"]), spec, 4).save(tmp_path / "transform")
    config = TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                         transform_dir=str(tmp_path / "transform"), model_dir=str(tmp_path / "model"),
                         hidden_units=[16, 8], learning_rate=0.03, batch_size=32, epochs=2, steps_per_epoch=30)
    lines: list[str] = []
    with logged_lines(local.__name__, lines.append):
        result = run_local_cluster(config, Topology(workers=2, ps=1), connect_timeout=180)

    assert result["strategy"] == "parameter_server" and result["task"] == "chief-0"
    assert result["eval_metric"] == "log_loss" and result["history"]["epoch"] == [1, 2]
    # the chief's stdout names the objective for Katib
    assert "[chief-0] log_loss=" + format(result["eval_log_loss"], ".6g") in lines
    table = pq.read_table(sorted(Path(splits["eval"]).glob("*.parquet")))
    columns = {name: np.asarray(table.column(name).to_pylist(), dtype=object if name == "colour" else None)
               for name in spec.column_names}
    truth = class_indices(spec, table.column("sold").to_numpy())
    served = load_model_dir(tmp_path / "model").outputs(columns)
    probabilities = served[OUTPUT_PROBABILITIES]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert served[OUTPUT_CLASS].tolist() == probabilities.argmax(axis=1).tolist()  # classes [0, 1]
    majority = np.bincount(truth).max() / len(truth)
    assert float(np.mean(probabilities.argmax(axis=1) == truth)) > majority + 0.2
    assert child_processes() == []
