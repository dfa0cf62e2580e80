"""The train executor's ``run``: the decision, model_choice.json and the loss curves, without TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

from mlengine.components.shared.hyperparameters import HyperParameters
from mlengine.components.train import executor
from mlengine.constants import HISTORY_FILE


def _fake_train(calls):
    def train_on(config, **kwargs):
        calls.append(kwargs)
        model_dir = Path(config.model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        history = {"epoch": [1], "rmse": [2.0], "val_rmse": [2.5]}
        (model_dir / HISTORY_FILE).write_text(json.dumps(history), encoding="utf-8")
        return {"eval_rmse": 2.5, "examples_per_second": 100.0, "best_epoch": 1, "epochs_run": 1}
    return train_on


def test_run_writes_the_choice_and_the_curves_and_passes_the_claim_down(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(executor, "_train_on", _fake_train(calls))
    model_dir = tmp_path / "model"
    result = executor.run(train_dir="t", eval_dir="e", transform_dir="x", model_dir=str(model_dir),
                          hyperparameters=HyperParameters.from_dict(None), epochs=1, workers=2, ps=1,
                          mode="cluster", study_file=tmp_path / "absent.json", shared_claim="pvc-1",
                          loss_curves_file=tmp_path / "curves.html")
    assert calls[0]["shared_claim"] == "pvc-1"
    choice = json.loads((model_dir / executor.MODEL_CHOICE_FILE).read_text(encoding="utf-8"))
    assert choice["kept"] == result.model_choice == "tuned"
    assert result.model_choice_reason == choice["reason"] == result.model_metadata["model_choice"]
    assert result.metrics == {"eval_rmse": 2.5, "examples_per_second": 100.0, "best_epoch": 1, "epochs_run": 1}
    assert "Training curves" in (tmp_path / "curves.html").read_text(encoding="utf-8")


def test_local_run_without_a_study_keeps_the_trained_model(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "_train_on", _fake_train([]))
    result = executor.run(train_dir="t", eval_dir="e", transform_dir="x", model_dir=str(tmp_path / "m"),
                          hyperparameters=HyperParameters.from_dict(None), epochs=1, study_file=None)
    assert result.model_choice == "trained" and result.eval_rmse == 2.5
