"""A rehearsal with a model module, without Docker: the rendered jobs and trials name the staged module
folder, the folder is uploaded with the data, and a broken module ends before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlengine.components.shared.model_module import MANIFEST_FILE, ModelModuleError, load_optional, write_artifact
from mlengine.rehearsal.katib import first_suggestion, trial_job
from mlengine.rehearsal.module import MODULE_URI, module_entry, trained_with_module
from mlengine.rehearsal.rehearse import Options, rehearsal_images, render, stage_data

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "models" / "mlp_batchnorm.py"


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("module") / "model_module"
    write_artifact(str(EXAMPLE), folder)
    return load_optional(folder)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_the_rendered_jobs_and_trials_carry_the_modules_s3_prefix_and_values(module, tmp_path):
    manifests = render(Options(out=tmp_path), rehearsal_images(), module)
    for replica in manifests["tfjob.yaml"]["spec"]["tfReplicaSpecs"].values():  # chief, workers, ps
        args = replica["template"]["spec"]["containers"][0]["args"]
        assert _flag(args, "--model-module") == MODULE_URI == "s3://mlpipeline/mlengine/run/model_module"
        assert json.loads(_flag(args, "--model-hp")) == module.defaults() and module.defaults()["layers"] == 2
    env = {e["name"]: e["value"] for e in manifests["trainjob.yaml"]["spec"]["trainer"]["env"]}
    task_args = json.loads(env["MLENGINE_TASK_ARGS"])
    assert _flag(task_args, "--model-module") == MODULE_URI
    assert json.loads(_flag(task_args, "--model-hp")) == module.defaults()
    # the trials: the module's own hyperparameters are searched, hidden_units (the built-in body's) is not
    for name in ("katib-experiment.yaml", "katib-experiment-trainjob.yaml"):
        experiment = manifests[name]
        searched = [p["name"] for p in experiment["spec"]["parameters"]]
        assert set(module.parameters) <= set(searched) and "hidden_units" not in searched
    experiment = manifests["katib-experiment.yaml"]
    job = trial_job(experiment, first_suggestion(experiment), "trial-1")
    args = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["args"]
    assert f"--model-module={MODULE_URI}" in args and "--hp=layers=1" in args and "--hp=units=64" in args
    # without a module nothing of it is rendered
    plain = render(Options(out=tmp_path), rehearsal_images())
    assert MODULE_URI not in json.dumps(plain) and "--hp=" not in json.dumps(plain)


class _RecordingS3:
    def __init__(self):
        self.keys: dict[str, str] = {}

    def upload_file(self, local, bucket, key):
        self.keys[f"{bucket}/{key}"] = local


def test_the_module_folder_is_staged_next_to_the_data(module, tmp_path):
    data = tmp_path / "data"
    for part in ("train", "eval", "test", "transform", "statistics"):
        (data / part).mkdir(parents=True)
        (data / part / "x.parquet").write_bytes(b"rows")
    s3 = _RecordingS3()
    count = stage_data(s3, data, module.path.parent)
    prefix = "mlpipeline/mlengine/run"
    assert count == 7 and f"{prefix}/train/x.parquet" in s3.keys
    assert f"{prefix}/model_module/mlp_batchnorm.py" in s3.keys
    staged = json.loads(Path(s3.keys[f"{prefix}/model_module/{MANIFEST_FILE}"]).read_text(encoding="utf-8"))
    assert staged["file"] == "mlp_batchnorm.py" and staged["sha256"] == module.sha256
    entry = module_entry(module)
    assert entry["uri"] == MODULE_URI and entry["sha256"] == module.sha256 and entry["hyperparameters"]["units"] == 128
    assert stage_data(_RecordingS3(), data) == 5  # without a module: the data only


def test_a_model_trained_without_the_module_or_with_other_values_is_caught(module):
    values = json.dumps(module.defaults(), sort_keys=True)
    assert trained_with_module({"model_module": "/scratch/model_module", "model_hp": values}, module) is None
    assert "built-in network" in trained_with_module({"model_module": "", "model_hp": ""}, module)
    other = json.dumps({**module.defaults(), "units": 64})
    assert "not the module's" in trained_with_module({"model_module": "/x", "model_hp": other}, module)


def test_a_broken_module_ends_in_one_line_before_any_container_starts(tmp_path, monkeypatch):
    import docker

    def no_engine(**kwargs):
        raise AssertionError("the Docker engine was asked for")

    monkeypatch.setattr(docker, "from_env", no_engine)
    broken = tmp_path / "broken.py"
    broken.write_text("def build_model(features, hp)\n    return None\n", encoding="utf-8")
    from mlengine.rehearsal.rehearse import rehearse

    with pytest.raises(ModelModuleError, match=r"broken\.py:1: syntax error"):
        rehearse(Options(out=tmp_path / "out", model_module=str(broken)))
    assert not (tmp_path / "out" / "manifests").exists()
