"""One REAL tuning trial (transform with the trial's nbuckets + training), locally and as the Katib program."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlengine.components.tune.local import run_local_study
from mlengine.components.tune.space_loader import space_from_dict
from mlengine.constants import TRANSFORM_FILE
from tests.model_fixtures import write_taxi_splits

pytestmark = pytest.mark.e2e  # starts servers or processes: not in the quick loop (-m "not e2e")

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("taxi")
    written = write_taxi_splits(root, rows=3000, seed=5)
    return str(written["train"]), str(written["eval"])


def test_real_trial_retransforms_with_its_nbuckets_and_reports_each_epoch(tmp_path, splits):
    train_dir, eval_dir = splits
    space = space_from_dict({
        "algorithm": "random", "algorithm_settings": {"random_state": 1}, "max_trials": 1, "parallel_trials": 1,
        "parameters": {"nbuckets": {"type": "int", "min": 5, "max": 7},
                       "hidden_units": {"type": "categorical", "values": ["16"]},
                       "learning_rate": {"type": "double", "min": 0.005, "max": 0.01, "log": True}},
    })
    result = run_local_study(train_dir, eval_dir, None, space, str(tmp_path / "study"), epochs=2)
    [trial] = result["trials"]
    assert trial["state"] == "COMPLETE", trial
    assert math.isfinite(trial["rmse"]) and 0.5 < trial["rmse"] < 50
    assert list(trial["intermediate"]) == ["1", "2"]  # per-epoch eval RMSE reached the pruner
    assert trial["intermediate"]["2"] == pytest.approx(trial["rmse"], rel=1e-6)
    trial_dir = tmp_path / "study" / "trials" / "trial-0000"
    state = json.loads((trial_dir / "transform" / TRANSFORM_FILE).read_text())
    assert state["nbuckets"] == trial["params"]["nbuckets"]  # the preprocessing was redone for this trial
    assert all(len(edges) <= trial["params"]["nbuckets"] - 1 for edges in state["boundaries"].values())
    assert not (trial_dir / "model" / "serving").exists()  # trial models are not kept by default
    assert "train: epoch 2/2" in (trial_dir / "log.txt").read_text()
    assert result["best_params"]["hidden_units"] == "16"


def test_trial_program_prints_the_lines_katib_collects(tmp_path, splits):
    train_dir, eval_dir = splits
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "mlengine.components.tune.trial", f"--train-dir={train_dir}",
         f"--eval-dir={eval_dir}", f"--out={tmp_path / 'trial'}", "--nbuckets=6", "--hidden-units=16",
         "--learning-rate=0.01", "--batch-size=256", "--epochs=2"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    metric_lines = [line for line in run.stdout.splitlines() if line.startswith("rmse=")]
    # Katib's StdOut collector default filter: ([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)
    pattern = re.compile(r"^([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)$")
    assert len(metric_lines) == 3  # one per epoch, then the objective
    assert all(pattern.match(line) for line in metric_lines)
    assert metric_lines[-1] == metric_lines[-2]  # the objective is the last epoch's eval RMSE
    state = json.loads((tmp_path / "trial" / "transform" / TRANSFORM_FILE).read_text())
    assert state["nbuckets"] == 6
