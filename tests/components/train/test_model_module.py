"""A user's model module: loading, the contract checks before training, the examples trained and exported.

The broken modules go through ``mlengine run`` in-process: each ends in one line naming the file,
exit 2, before the pipeline writes anything. The examples train for one epoch on a few thousand
generated taxi rows; the exported SavedModel carries the module's layers and serves without it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlengine.components.shared.model_module import ModelModuleError, load_module, parse_hyperparameters
from mlengine.components.train.model_module import check_model_module
from mlengine.constants import SERVING_MODEL_SUBDIR

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "models"
GOOD = """
HYPERPARAMETERS = {"width": {"default": 8, "values": [4, 8]}, "dropout": {"default": 0.1, "min": 0.0, "max": 0.5}}
SEEN = []


def build_model(features, hp):
    SEEN.append(dict(hp))
    keras = features.keras
    x = keras.layers.Dense(hp["width"], activation="relu", name="tiny_body")(features.numeric)
    return keras.layers.Dropout(hp["dropout"], name="tiny_dropout")(x)
"""
RAISES = """def build_model(features, hp):
    rate = hp["learning_rate"]
    raise ValueError("boom in the body")
"""
BROKEN = {
    "syntax": ("def build_model(features, hp)\n    return 1\n", "bad.py:1: syntax error"),
    "no build_model": ("VALUE = 1\n", "bad.py: defines no build_model(features, hp)"),
    "build_model not callable": ("build_model = 3\n", "build_model is a int, not a function"),
    "import fails": ("import mlengine_no_such_package_xyz\n", "bad.py:1: importing it raised ModuleNotFoundError"),
    "returns a number": ("def build_model(features, hp):\n    return 3\n", "build_model returned int, expected"),
    "returns rank 3": ("def build_model(features, hp):\n"
                       "    return features.keras.layers.Reshape((8, 1))(features.numeric)\n",
                       "shape (None, 8, 1), expected rank 2"),
    "returns int ids": ("def build_model(features, hp):\n"
                        "    return features.keras.layers.Reshape((1,))(features.ids['categorical/dayofweek'])\n",
                        "int64 tensor, expected float"),
    "raises inside": (RAISES, "bad.py:3: build_model raised ValueError: boom in the body"),
    "default outside range": ("HYPERPARAMETERS = {'dropout': {'default': 0.7, 'min': 0.0, 'max': 0.5}}\n"
                              "def build_model(features, hp):\n    return features.numeric\n",
                              "HYPERPARAMETERS['dropout']: default 0.7 is outside [min, max] = [0.0, 0.5]"),
    "values not a list": ("HYPERPARAMETERS = {'width': {'default': 64, 'values': 64}}\n"
                          "def build_model(features, hp):\n    return features.numeric\n",
                          "HYPERPARAMETERS['width']: 'values' must be a non-empty list"),
    "unknown key": ("HYPERPARAMETERS = {'width': {'default': 64, 'choices': [64]}}\n"
                    "def build_model(features, hp):\n    return features.numeric\n",
                    "HYPERPARAMETERS['width']: unknown key 'choices'"),
    "not a dict": ("HYPERPARAMETERS = [1, 2]\ndef build_model(features, hp):\n    return features.numeric\n",
                   "HYPERPARAMETERS must be a dict"),
}


def _write(tmp_path: Path, text: str, name: str = "bad.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_module_fails_mlengine_run_in_one_line_naming_the_file_before_anything_runs(tmp_path, capsys,
                                                                                          case):
    from mlengine.cli import main

    text, expected = BROKEN[case]
    path = _write(tmp_path, text)
    code = main(["run", "--model-module", str(path), "--out", str(tmp_path / "out"), "--rows", "200"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert str(path) in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ingested, nothing trained


def test_debug_shows_the_traceback_inside_build_model(tmp_path, capsys):
    from mlengine.cli import main

    path = _write(tmp_path, RAISES)
    code = main(["--debug", "run", "--model-module", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" in err and 'raise ValueError("boom in the body")' in err
    assert err.strip().splitlines()[-1].startswith("mlengine run: error: ")


def test_hp_names_a_hyperparameter_the_module_does_not_declare_in_one_line(tmp_path, capsys):
    from mlengine.cli import main

    path = _write(tmp_path, GOOD, "good.py")
    for argv, expected in ((["--hp", "depth=3"], "unknown hyperparameter 'depth'; the module declares width, dropout"),
                           (["--hp", "width=5"], "width='5' is not one of [4, 8]"),
                           (["--hp", "dropout=0.9"], "dropout='0.9' is outside [0.0, 0.5]"),
                           (["--hp", "width"], "expected NAME=VALUE")):
        code = main(["run", "--model-module", str(path), "--out", str(tmp_path / "out"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
    code = main(["run", "--out", str(tmp_path / "out"), "--hp", "width=8"])  # no module: a module's name is unknown
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "unknown hyperparameter 'width'" in err[0]


def test_hp_holds_the_module_values_and_the_built_in_ones_that_apply(tmp_path):
    loaded = check_model_module(_write(tmp_path, GOOD, "good.py"), values={"width": "4"},
                                builtin={"nbuckets": 6, "learning_rate": 0.01})
    hp = loaded.module.SEEN[-1]
    assert hp == {"width": 4, "dropout": 0.1, "nbuckets": 6, "learning_rate": 0.01, "batch_size": 512}
    assert "hidden_units" not in hp


def test_hyperparameters_are_typed_like_search_space_parameters():
    params = parse_hyperparameters({
        "dropout": {"default": 0.1, "min": 0.0, "max": 0.5},
        "lr_decay": {"default": 0.01, "min": 0.001, "max": 0.1, "log": True},
        "layers": {"default": 2, "min": 1, "max": 4},
        "width": {"default": 64, "values": [32, 64, 128]},
        "activation": {"default": "relu", "values": ["relu", "gelu"]},
    }, "m.py")
    assert [p.type for p in params.values()] == ["double", "double", "int", "categorical", "categorical"]
    assert params["lr_decay"].space_entry() == {"type": "double", "min": 0.001, "max": 0.1, "log": True}
    assert params["width"].coerce("128", "--hp") == 128 and params["layers"].coerce(3.0, "kfp") == 3
    for bad, message in (({"nbuckets": {"default": 8, "min": 2, "max": 9}}, "nbuckets is a built-in"),
                         ({"x": {"default": 1, "min": 0.1, "max": 1, "log": True, "step": 0.1}}, "cannot have a step"),
                         ({"x": {"min": 0, "max": 1}}, "has no 'default'"),
                         ({"x": {"default": 3, "values": [1, 2]}}, "default 3 is not one of the values"),
                         ({"x": {"default": 1, "min": 0, "max": 5, "step": 2}}, "multiple of step 2"),
                         ({"bad name": {"default": 1, "values": [1]}}, "Python identifier")):
        with pytest.raises(ModelModuleError, match=re.escape(message)) as caught:
            parse_hyperparameters(bad, "m.py")
        assert str(caught.value).startswith("m.py: HYPERPARAMETERS[")


@pytest.mark.parametrize("example", ["deep_cross.py", "mlp_batchnorm.py"])
def test_the_examples_follow_the_contract(example):
    loaded = check_model_module(EXAMPLES / example)
    assert loaded.parameters and all(p.default is not None for p in loaded.parameters.values())


def _train_with(tmp_path: Path, module: Path, hp: dict, **overrides) -> tuple[dict, Path]:
    from mlengine.components.train.trainer import TrainConfig, train
    from tests.distributed_fixtures import taxi_training_setup

    paths = taxi_training_setup(tmp_path, rows=3000)
    config = TrainConfig(**paths, hidden_units=[8], learning_rate=0.01, batch_size=128, epochs=1,
                         model_module=str(module), model_hp=hp, **overrides)
    return train(config), Path(paths["model_dir"])


@pytest.mark.parametrize(("example", "hp", "layer"), [
    ("deep_cross.py", {"cross_layers": 3}, "dcn_cross_2"),
    ("mlp_batchnorm.py", {"layers": 1, "units": 64}, "mlp_batchnorm_0"),
])
def test_an_example_trains_and_its_exported_saved_model_has_its_layers_and_serves_without_it(tmp_path, example, hp,
                                                                                                layer):
    import tensorflow as tf

    result, model_dir = _train_with(tmp_path, EXAMPLES / example, hp)
    assert np.isfinite(result["eval_rmse"])
    saved = tf.saved_model.load(str(model_dir / SERVING_MODEL_SUBDIR))
    names = {v.name for v in saved.variables}
    assert any(name.startswith(f"{layer}/") for name in names), sorted(names)
    assert any(name.startswith("head/") for name in names)  # mlengine's head on the module's body
    assert not any(name.startswith(("hidden_", "wide_")) for name in names)  # no built-in network
    record = json.loads((model_dir / "train_config.json").read_text())
    assert record["model_module"].endswith(example) and json.loads(record["model_hp"]) == hp
    # a fresh interpreter that never imports the module serves the SavedModel
    probe = (
        "import sys, numpy as np\n"
        "from mlengine.components.shared.savedmodel import load_model_dir\n"
        "from mlengine.components.shared.featurespec import load_spec\n"
        "from mlengine.components.train.model_module import tiny_batch\n"
        f"out = load_model_dir({str(model_dir)!r})(tiny_batch(load_spec(None)))\n"
        "assert out.shape == (2,) and np.isfinite(out).all(), out\n"
        "assert not [m for m in sys.modules if m.startswith('mlengine_model_module')]\n"
        "print('served', out.tolist())\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "served" in proc.stdout, proc.stderr[-2000:]


def test_checkpoints_of_another_module_are_not_resumed(tmp_path):
    from mlengine.components.train.trainer import TrainConfig, train
    from mlengine.errors import MlengineError

    _train_with(tmp_path, EXAMPLES / "deep_cross.py", {})
    paths = {key: str(tmp_path / "data" / split) for key, split in (("train_dir", "train"), ("eval_dir", "eval"))}
    other = TrainConfig(**paths, transform_dir=str(tmp_path / "transform"), model_dir=str(tmp_path / "model"),
                        hidden_units=[8], learning_rate=0.01, batch_size=128, epochs=2,
                        model_module=str(EXAMPLES / "deep_cross.py"), model_hp={"cross_layers": 1})
    with pytest.raises(MlengineError, match="holds checkpoints of a different model"):
        train(other)


@pytest.mark.e2e
def test_the_local_parameter_server_cluster_trains_with_a_module(tmp_path):
    import tensorflow as tf

    from mlengine.components.shared.distributed import Topology
    from mlengine.components.train import local
    from mlengine.components.train.local import run_local_cluster
    from mlengine.components.train.trainer import TrainConfig
    from tests.distributed_fixtures import child_processes, taxi_training_setup
    from tests.log_capture import logged_lines

    paths = taxi_training_setup(tmp_path)
    config = TrainConfig(**paths, hidden_units=[8], learning_rate=0.02, batch_size=128, epochs=1, steps_per_epoch=20,
                         model_module=str(EXAMPLES / "deep_cross.py"), model_hp={"cross_layers": 1, "deep_layers": 1})
    lines: list[str] = []
    with logged_lines(local.__name__, lines.append):
        result = run_local_cluster(config, Topology(workers=1, ps=1), connect_timeout=120)
    assert result["strategy"] == "parameter_server" and np.isfinite(result["eval_rmse"])
    assert any("model module deep_cross.py" in line for line in lines if line.startswith("[chief-0]"))
    names = {v.name for v in tf.saved_model.load(str(Path(paths["model_dir"]) / SERVING_MODEL_SUBDIR)).variables}
    assert any(name.startswith("dcn_cross_0/") for name in names)
    assert not any(name.startswith("dcn_cross_1/") for name in names)  # the fixed cross_layers=1 reached the chief
    assert child_processes() == []


def test_load_module_reads_an_artifact_folder_and_a_run_without_a_module(tmp_path):
    from mlengine.components.shared.model_module import load_optional, write_artifact

    manifest = write_artifact(EXAMPLES / "deep_cross.py", tmp_path / "artifact")
    assert manifest["file"] == "deep_cross.py" and "cross_layers" in manifest["hyperparameters"]
    assert load_module(tmp_path / "artifact").name == "deep_cross.py"
    assert write_artifact("", tmp_path / "none") == {"file": None}
    assert load_optional(tmp_path / "none") is None
    with pytest.raises(ModelModuleError, match=r"missing\.py: model module not found"):
        write_artifact(tmp_path / "missing.py", tmp_path / "x")


def test_the_tfjob_of_a_cluster_train_step_carries_the_module_and_its_values(tmp_path):
    """What the rehearsal and a cluster run rely on: the module's object-storage prefix and its values
    reach every TFJob replica's task.py arguments, and task.py reads them back."""
    import argparse

    from mlengine.components.shared.distributed import Topology
    from mlengine.components.shared.model_module import write_artifact
    from mlengine.components.shared.tfjob import render_tfjob
    from mlengine.components.train.cluster import training_args
    from mlengine.components.train.executor import _module_of
    from mlengine.components.train.task import add_config_arguments, config_from_args
    from mlengine.components.train.trainer import TrainConfig

    kfp_path = tmp_path / "minio" / "mlpipeline" / "v2" / "artifacts" / "run-1" / "tune" / "module"
    write_artifact(EXAMPLES / "deep_cross.py", kfp_path)
    with pytest.raises(ModelModuleError, match="cross_layers=9 is outside"):
        _module_of(str(kfp_path), {"cross_layers": 9}, "local")
    module, values, name = _module_of(str(kfp_path), {"cross_layers": 3.0}, "local")  # a KFP dict's 3.0
    assert (module, name) == (str(kfp_path), "deep_cross.py") and values["cross_layers"] == 3
    config = TrainConfig(train_dir="s3://b/train", eval_dir="s3://b/eval", transform_dir="s3://b/transform",
                         model_dir="s3://b/model", hidden_units=[8], learning_rate=0.01, batch_size=64, epochs=1,
                         model_module="s3://mlpipeline/v2/artifacts/run-1/tune/module", model_hp=values)
    args = training_args(config)
    manifest = render_tfjob("mlengine-train-abc", args, Topology(workers=2, ps=1), shared_claim="claim")
    for replica in manifest["spec"]["tfReplicaSpecs"].values():
        replica_args = replica["template"]["spec"]["containers"][0]["args"]
        assert "--model-module" in replica_args and "s3://mlpipeline/v2/artifacts/run-1/tune/module" in replica_args
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    parsed = config_from_args(parser.parse_args(args))
    assert parsed.model_module == config.model_module and parsed.module_values == values


@pytest.mark.parametrize("command", ["train", "tune"])
def test_mlengine_train_and_tune_refuse_a_broken_module_in_one_line_before_training(tmp_path, capsys, command):
    from mlengine.cli import main
    from tests.distributed_fixtures import taxi_training_setup

    paths = taxi_training_setup(tmp_path, rows=600)
    path = _write(tmp_path, BROKEN["returns rank 3"][0])
    if command == "train":
        argv = ["train", "--train-dir", paths["train_dir"], "--eval-dir", paths["eval_dir"], "--transform-dir",
                paths["transform_dir"], "--model-dir", paths["model_dir"]]
    else:
        argv = ["tune", "--train-dir", paths["train_dir"], "--eval-dir", paths["eval_dir"], "--out",
                str(tmp_path / "study"), "--trials", "2", "--epochs", "1"]
    code = main([*argv, "--model-module", str(path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[-1].startswith(f"mlengine {command}: error: {path}: build_model returned a tensor of shape")
    assert "Traceback" not in "\n".join(lines)
    assert not Path(paths["model_dir"]).exists() and not (tmp_path / "study" / "trials").exists()
