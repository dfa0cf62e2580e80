"""Real TensorFlow on local processes: parameter-server training, a fault, resume (the heavy cases).

Kept to two tests on tiny data: each starts a chief, workers and a parameter server (about
5-10 s of TensorFlow start-up per process on 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlengine.components.shared.distributed import Topology
from mlengine.components.shared.savedmodel import load_model_dir
from mlengine.components.train import local
from mlengine.components.train.local import run_local_cluster
from mlengine.components.train.trainer import TrainConfig
from mlengine.constants import HISTORY_FILE, SERVING_MODEL_SUBDIR
from tests.distributed_fixtures import child_processes, taxi_training_setup
from tests.log_capture import logged_lines

pytestmark = pytest.mark.e2e


def _eval_columns(eval_dir: str) -> dict[str, np.ndarray]:
    table = pq.read_table(sorted(Path(eval_dir).glob("*.parquet")))
    return {name: table.column(name).to_numpy() for name in table.column_names}


def test_parameter_server_cluster_trains_exports_and_leaves_no_processes(tmp_path):
    paths = taxi_training_setup(tmp_path)
    config = TrainConfig(**paths, hidden_units=[16, 8], learning_rate=0.02, batch_size=128, epochs=2,
                         steps_per_epoch=30)
    lines: list[str] = []
    with logged_lines(local.__name__, lines.append):
        result = run_local_cluster(config, Topology(workers=1, ps=1), connect_timeout=120)

    assert result["strategy"] == "parameter_server" and result["task"] == "chief-0"
    assert result["topology"]["resolved_strategy"] == "parameter_server"
    assert any(line.startswith("[ps-0] mlengine-task: ready") for line in lines)
    assert any(line.startswith("[worker-0] mlengine-task: ready") for line in lines)
    assert "[chief-0] rmse=" + format(result["eval_rmse"], ".6g") in lines  # Katib's stdout metric line
    # better than the untrained baseline that predicts the mean label
    columns = _eval_columns(paths["eval_dir"])
    labels = columns.pop("fare_amount")
    baseline_rmse = float(np.sqrt(np.mean((labels - labels.mean()) ** 2)))
    assert result["eval_rmse"] < 0.9 * baseline_rmse
    # the exported serving model needs no cluster: it loads and predicts here
    assert (Path(paths["model_dir"]) / SERVING_MODEL_SUBDIR / "saved_model.pb").is_file()
    predictions = load_model_dir(paths["model_dir"])(columns)
    assert predictions.shape == labels.shape
    assert float(np.sqrt(np.mean((predictions - labels) ** 2))) < baseline_rmse
    assert json.loads((Path(paths["model_dir"]) / HISTORY_FILE).read_text())["epoch"] == [1, 2]
    assert child_processes() == []


def test_killed_worker_and_chief_are_restarted_and_training_resumes(tmp_path):
    paths = taxi_training_setup(tmp_path)
    epochs = 4
    config = TrainConfig(**paths, hidden_units=[16, 8], learning_rate=0.02, batch_size=64, epochs=epochs,
                         steps_per_epoch=150)
    pids: dict[str, int] = {}
    killed: list[str] = []
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        ready = re.match(r"\[(\S+)\] mlengine-task: ready .*\(pid (\d+)\)", line)
        if ready:
            pids[ready.group(1)] = int(ready.group(2))
        # kill a worker after the first epoch, the chief after the second (each once)
        if line.startswith(f"[chief-0] train: epoch 1/{epochs}") and "worker-0" not in killed:
            killed.append("worker-0")
            os.kill(pids["worker-0"], signal.SIGKILL)
        if line.startswith(f"[chief-0] train: epoch 2/{epochs}") and "chief-0" not in killed:
            killed.append("chief-0")
            os.kill(pids["chief-0"], signal.SIGKILL)

    with logged_lines(local.__name__, log):
        result = run_local_cluster(config, Topology(workers=1, ps=1), max_restarts=2, connect_timeout=120)

    assert killed == ["worker-0", "chief-0"]
    assert result["restarts"] == {"worker-0": 1, "chief-0": 1}
    restarts = [line for line in lines if "restarted" in line]
    assert len(restarts) == 2, restarts  # one line per fault, nothing else about it
    assert restarts[0].startswith("train: worker-0 killed by SIGKILL during epoch 2; restarted 1/2, it rejoins")
    assert restarts[1].startswith("train: chief-0 killed by SIGKILL during epoch 3; restarted 1/2, resuming from "
                                  "the epoch-2 checkpoint")
    assert not any("Traceback" in line or "Connection refused" in line for line in lines)
    assert (Path(paths["model_dir"]) / "logs" / "chief-0.log").read_text().count("--- chief-0 start ") == 2
    # the restarted chief resumed from the epoch-2 checkpoint: its first epoch line is epoch 3
    epoch_lines = [line for line in lines if line.startswith("[chief-0] train: epoch ")]
    second_life = epoch_lines[epoch_lines.index(next(x for x in epoch_lines if x.startswith(
        f"[chief-0] train: epoch 2/{epochs}"))) + 1:]
    assert second_life and second_life[0].startswith(f"[chief-0] train: epoch 3/{epochs}")
    history = json.loads((Path(paths["model_dir"]) / HISTORY_FILE).read_text())
    assert history["epoch"] == [1, 2, 3, 4]
    assert (Path(paths["model_dir"]) / SERVING_MODEL_SUBDIR / "saved_model.pb").is_file()
    assert child_processes() == []
