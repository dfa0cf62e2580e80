"""The model module in the training pipeline: a pipeline input on both targets, tune's artifact for train,
and one whole ``mlengine run``-style run on this machine with a module (the heavy case)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlengine.constants import ART_MODEL_MODULE, PARAM_MODEL_MODULE, SERVING_MODEL_SUBDIR
from mlengine.pipelines.platform import Target, compile_for

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "models" / "mlp_batchnorm.py"


def _training_spec(tmp_path: Path, target: str) -> dict:
    paths = compile_for(Target(name=target), tmp_path / target)
    return next(yaml.safe_load_all(open(paths["mlengine-training"], encoding="utf-8")))


def _tasks(spec: dict) -> dict:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for task in list(tasks.values()):  # the cluster target's steps sit inside an exit handler
        inner = spec["components"][task["componentRef"]["name"]].get("dag")
        if inner:
            tasks.update(inner["tasks"])
    return tasks


@pytest.mark.parametrize("target", ["cluster", "local"])
def test_the_compiled_pipeline_carries_the_module_as_an_input_that_tune_reads_and_hands_to_train(tmp_path, target):
    spec = _training_spec(tmp_path, target)
    parameter = spec["root"]["inputDefinitions"]["parameters"][PARAM_MODEL_MODULE]
    assert parameter["parameterType"] == "STRING" and parameter["defaultValue"] == ""
    assert "build_model(features, hp)" in parameter["description"]
    tasks = _tasks(spec)
    tune_input = tasks["tune"]["inputs"]["parameters"]["model_module"]
    assert PARAM_MODEL_MODULE in tune_input["componentInputParameter"]
    train_input = tasks["train"]["inputs"]["artifacts"]["model_module"]["taskOutputArtifact"]
    assert train_input == {"producerTask": "tune", "outputArtifactKey": ART_MODEL_MODULE}
    tune_outputs = spec["components"]["comp-tune"]["outputDefinitions"]["artifacts"]
    assert tune_outputs[ART_MODEL_MODULE]["artifactType"]["schemaTitle"] == "system.Artifact"


@pytest.mark.e2e
def test_a_local_run_with_a_module_tunes_its_hyperparameters_and_serves_its_layers(tmp_path):
    import tensorflow as tf

    from mlengine.pipelines.local_run import run_training_locally

    out = tmp_path / "run"
    params = {"epochs": 2, "trials": 3, "parallel_trials": 1, "tune_epochs": 1, "tune_algorithm": "random",
              "hyperparameters": {"nbuckets": 8, "units": 64}, PARAM_MODEL_MODULE: str(MLP)}
    summary = run_training_locally(out, rows=3000, seed=3, params=params)
    assert summary["blessed"] in (True, False) and summary["rmse"] > 0
    # the module travels with the run: a copy in the run's output folder, named by content
    (copy,) = (out / "model-modules").glob("*/mlp_batchnorm.py")
    assert copy.read_bytes() == MLP.read_bytes() and summary["params"][PARAM_MODEL_MODULE] == str(copy)
    trials = summary["tuning"]["trials"]
    assert len(trials) == 3 and all(t["params"]["units"] == 64 and t["params"]["nbuckets"] == 8 for t in trials)
    assert len({(t["params"]["layers"], t["params"]["dropout"]) for t in trials}) == 3  # the module's own, varied
    values = summary["hyperparameters"]["values"]
    assert values["units"] == 64 and "units" in summary["hyperparameters"]["fixed"]
    names = {v.name for v in tf.saved_model.load(str(Path(summary["model_dir"]) / SERVING_MODEL_SUBDIR)).variables}
    assert any(name.startswith("mlp_batchnorm_0/") for name in names)
    record = json.loads((Path(summary["model_dir"]) / "train_config.json").read_text())
    assert json.loads(record["model_hp"])["units"] == 64  # the fixed value reached the final model
    markdown = next(Path(p) for p in summary["reports"] if p.endswith("tuning_table.md")).read_text()
    assert "model module mlp_batchnorm.py: `units`=64" in markdown
