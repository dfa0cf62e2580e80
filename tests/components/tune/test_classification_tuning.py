"""Tuning a classifier: trials minimise the eval log loss, locally (optuna) and as Katib's objective."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlengine.components.shared.featurespec import spec_from_dict
from mlengine.components.tune import cluster as katib
from mlengine.components.tune import executor
from mlengine.components.tune.space_loader import load_search_space
from mlengine.constants import SPEC_FILE
from tests.classifier_fixtures import BINARY_SPEC, classification_columns
from tests.model_fixtures import write_splits

REPO = Path(__file__).resolve().parents[3]
DATA = {"train_uri": "s3://mlpipeline/run-1/train", "eval_uri": "s3://mlpipeline/run-1/eval",
        "spec_uri": "s3://mlpipeline/run-1/statistics", "output_uri": "s3://mlpipeline/run-1/study/trials"}


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    spec = spec_from_dict(BINARY_SPEC)
    splits = write_splits(classification_columns(BINARY_SPEC, 400), spec, root / "data")
    spec_dir = root / "statistics"
    spec_dir.mkdir()
    spec.save(spec_dir / SPEC_FILE)
    return splits, spec_dir


def test_a_classification_spec_makes_log_loss_the_katib_objective(binary):
    _, spec_dir = binary
    space = executor._for_task(load_search_space(), str(spec_dir))
    assert space.metric == "log_loss"
    manifest = katib.render_experiment("sold-tune", space, **DATA)
    assert manifest["spec"]["objective"]["objectiveMetricName"] == "log_loss"
    assert manifest["spec"]["objective"]["type"] == "minimize"
    assert manifest["spec"]["objective"]["metricStrategies"] == [{"name": "log_loss", "value": "latest"}]
    assert not katib.webhook_problems(manifest)
    # a regression spec keeps rmse
    assert executor._for_task(load_search_space(), "").metric == "rmse"


@pytest.mark.e2e
def test_a_local_study_of_a_classifier_minimises_log_loss_with_the_default_first(tmp_path, binary):
    splits, spec_dir = binary
    result = executor.run(str(splits["train"]), str(splits["eval"]), str(spec_dir), str(tmp_path / "study"),
                          trials=2, epochs=2, algorithm="random")
    study = result.study
    assert study["metric"] == "log_loss"
    complete = [t for t in study["trials"] if t["state"] == "COMPLETE"]
    assert complete and all(0 < t["rmse"] < math.log(2) + 0.2 for t in complete)  # below ~the prior's log loss
    # trial 0 is the default configuration; its figure is the eval log loss of its model's history
    assert study["trials"][0]["number"] == 0 and study["default_rmse"] == study["trials"][0]["rmse"]
    assert study["best_rmse"] == min(t["rmse"] for t in complete)


@pytest.mark.e2e
def test_the_trial_program_prints_log_loss_lines_for_katib(tmp_path, binary):
    splits, spec_dir = binary
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "mlengine.components.tune.trial", f"--train-dir={splits['train']}",
         f"--eval-dir={splits['eval']}", f"--spec={spec_dir}", f"--out={tmp_path / 'trial'}", "--nbuckets=4",
         "--hidden-units=8", "--learning-rate=0.03", "--batch-size=32", "--epochs=2"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("log_loss=")]
    assert not [line for line in run.stdout.splitlines() if line.startswith("rmse=")]
    pattern = re.compile(katib.METRICS_FORMAT)
    assert len(lines) == 3 and all(pattern.fullmatch(line) for line in lines)
    history = json.loads((tmp_path / "trial" / "model" / "history.json").read_text())
    assert float(lines[-1].split("=")[1]) == pytest.approx(history["val_log_loss"][-1], rel=1e-5)


def test_the_tuning_report_names_the_log_loss_of_a_classifier_study():
    from mlengine.components.tune.report import render_tuning_html, render_tuning_markdown

    trials = [{"number": 0, "params": {"nbuckets": 8}, "rmse": 0.41, "state": "COMPLETE", "default": True},
              {"number": 1, "params": {"nbuckets": 4}, "rmse": 0.38, "state": "COMPLETE"}]
    study = {"algorithm": "random", "trials": trials, "best_params": {"nbuckets": 4}, "best_rmse": 0.38,
             "best_trial": 1, "default_rmse": 0.41, "default_trial": 0, "metric": "log_loss"}
    markdown = render_tuning_markdown(study)
    assert "Best eval log loss **0.3800**" in markdown and "| log_loss |" in markdown and "RMSE" not in markdown
    assert "eval log loss by trial with the running best" in render_tuning_html(study)
    regression = render_tuning_markdown({**study, "metric": "rmse"})
    assert "Best eval RMSE **0.3800**" in regression and "| rmse |" in regression
