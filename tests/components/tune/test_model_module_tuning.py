"""A model module's HYPERPARAMETERS in tuning: the same search space locally (optuna) and on Katib, trial 0
all defaults, ``--hp`` fixing any hyperparameter in every trial and in the final model, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlengine.components.shared.model_module import load_module
from mlengine.components.tune import cluster as katib
from mlengine.components.tune.space_loader import load_search_space
from mlengine.components.tune.trial import build_parser as trial_parser
from mlengine.constants import DEFAULT_SPEC_PATH, TRIALS_FILE
from tests.schema_utils import errors, katib_experiment_schema, tfjob_schema

ROOT = Path(__file__).resolve().parents[3]
DEEP_CROSS = ROOT / "examples" / "models" / "deep_cross.py"
MODULE = """
HYPERPARAMETERS = {
    "dropout": {"default": 0.1, "min": 0.0, "max": 0.5},
    "decay": {"default": 0.01, "min": 0.001, "max": 0.1, "log": True},
    "depth": {"default": 2, "min": 1, "max": 4},
    "width": {"default": 64, "values": [32, 64, 128]},
}


def build_model(features, hp):
    return features.keras.layers.Dense(hp["width"], name="body")(features.numeric)
"""
DATA = {"train_uri": "s3://mlpipeline/run-1/train", "eval_uri": "s3://mlpipeline/run-1/eval",
        "spec_uri": "s3://mlpipeline/run-1/statistics", "output_uri": "s3://mlpipeline/run-1/study/trials"}


def module_runner(params, context, report):
    """A trial that trains nothing: records what it was given and scores it (picklable: module level)."""
    with (Path(context.trial_dir).parents[1] / "seen.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"number": context.number, "params": params, "module": context.model_module}) + "\n")
    report(1, 2.0)
    return 1.0 + abs(params["dropout"] - 0.3) + abs(params["depth"] - 3)


@pytest.fixture
def module_file(tmp_path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(MODULE, encoding="utf-8")
    return path


def _entries(path: Path) -> dict:
    return {name: p.space_entry() for name, p in load_module(path).parameters.items()}


def test_the_module_hyperparameters_join_the_space_with_the_built_in_rules(module_file):
    space = load_search_space().with_module(_entries(module_file))
    assert space.names[-4:] == ["dropout", "decay", "depth", "width"] and space.module_names == (
        "dropout", "decay", "depth", "width")
    katib_params = {p["name"]: p for p in space.to_katib_parameters()}
    assert katib_params["decay"] == {"name": "decay", "parameterType": "double",
                                     "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"}}
    assert katib_params["depth"]["parameterType"] == "int" and katib_params["width"]["parameterType"] == "discrete"
    narrowed = space.without(["nbuckets", "dropout"]).with_overrides(max_trials=3, algorithm="random")
    assert narrowed.module_names == ("decay", "depth", "width") and "dropout" not in narrowed.names
    params = narrowed.complete({"depth": 3}, {"dropout": 0.2, "nbuckets": 8})
    assert params["depth"] == 3 and params["dropout"] == 0.2 and params["nbuckets"] == 8
    assert params["hidden_units"] == "64,32"  # the built-in ones are typed and completed as before


def test_katib_trials_load_the_module_and_get_its_fixed_and_searched_values(module_file):
    space = load_search_space().with_module(_entries(module_file)).without(["dropout", "hidden_units"])
    fixed = {"nbuckets": 16, "hidden_units": "64,32", "learning_rate": 0.003, "batch_size": 512, "dropout": 0.25}
    uri = "s3://mlpipeline/v2/artifacts/run-1/tune/module"
    experiment = katib.render_experiment("taxi-tune", space, namespace="kubeflow-user", fixed_params=fixed,
                                         model_module_uri=uri, **DATA)
    assert errors(experiment, katib_experiment_schema()) == [] and katib.webhook_problems(experiment) == []
    trial_spec = experiment["spec"]["trialTemplate"]["trialSpec"]
    text = json.dumps(trial_spec)
    values = {p["name"]: "7" for p in experiment["spec"]["trialTemplate"]["trialParameters"]}
    values.update({"decay": "0.02", "width": "128", "depth": "3"})
    for name, value in values.items():
        text = text.replace(f"${{trialParameters.{name}}}", value)
    concrete = json.loads(text)
    concrete["metadata"] = {"name": "taxi-tune-abc", "namespace": "kubeflow-user"}
    assert errors(concrete, tfjob_schema()) == []
    args = concrete["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["args"]
    parsed = trial_parser().parse_args(args)
    assert parsed.model_module == uri
    assert sorted(parsed.hp) == ["decay=0.02", "depth=3", "dropout=0.25", "width=128"]
    assert "--hidden-units=64,32" in args  # fixed, not a trial parameter


def test_a_study_with_a_module_searches_its_hyperparameters_trial_0_is_the_defaults_and_hp_fixes_one(
        tmp_path, module_file):
    from mlengine.components.shared.hyperparameters import HyperParameters, module_values_of
    from mlengine.components.tune.executor import run

    result = run(str(tmp_path / "train"), str(tmp_path / "eval"), "", str(tmp_path / "study"),
                 fixed={"width": 32.0, "nbuckets": 8}, trials=4, parallel=1, algorithm="random", epochs=1,
                 model_module=str(module_file), trial_runner=module_runner,
                 hyperparameters_path=str(tmp_path / "hp.json"), markdown_path=str(tmp_path / "tuning.md"))
    seen = [json.loads(line) for line in (tmp_path / "study" / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 4
    defaults = {"dropout": 0.1, "decay": 0.01, "depth": 2}
    trial_0 = next(s for s in seen if s["number"] == 0)
    assert {k: trial_0["params"][k] for k in defaults} == defaults  # trial 0: all defaults
    assert all(s["params"]["width"] == 32 and s["params"]["nbuckets"] == 8 for s in seen)  # fixed everywhere
    assert len({(s["params"]["dropout"], s["params"]["depth"]) for s in seen}) == 4  # searched
    assert all(s["params"]["hidden_units"] == "64,32" for s in seen)  # the built-in network's: not searched
    assert all(Path(s["module"]).is_dir() and (Path(s["module"]) / "my_model.py").is_file() for s in seen)
    assert result.model_module == "my_model.py" and "hidden_units" not in result.searched
    assert set(result.searched) >= {"dropout", "decay", "depth"} and result.fixed == {"nbuckets": 8, "width": 32}
    best = json.loads((tmp_path / "study" / TRIALS_FILE).read_text())["best_params"]
    assert module_values_of(tmp_path / "hp.json") == {k: best[k] for k in ("dropout", "decay", "depth", "width")}
    assert module_values_of(tmp_path / "hp.json")["width"] == 32
    assert HyperParameters.load(tmp_path / "hp.json").nbuckets == 8  # transform reads what it always read
    markdown = (tmp_path / "tuning.md").read_text()
    assert "Fixed by you (not searched): built-in: `nbuckets`=8; model module my_model.py: `width`=32." in markdown
    assert "model module my_model.py: `dropout`, `decay`, `depth`" in markdown


def test_a_module_hyperparameter_without_the_module_and_a_bad_value_are_one_line_errors(tmp_path, module_file):
    from mlengine.components.shared.model_module import ModelModuleError
    from mlengine.components.tune.executor import run

    common = {"trials": 2, "epochs": 1, "trial_runner": module_runner}
    with pytest.raises(ModelModuleError, match="unknown hyperparameter 'width'"):
        run(str(tmp_path), str(tmp_path), "", str(tmp_path / "a"), fixed={"width": 32}, **common)
    with pytest.raises(ModelModuleError, match=r"my_model.py: width=48 is not one of \[32, 64, 128\]"):
        run(str(tmp_path), str(tmp_path), "", str(tmp_path / "b"), fixed={"width": 48},
            model_module=str(module_file), **common)


def test_on_a_cluster_tune_stages_the_module_and_every_trial_replica_loads_it(tmp_path, module_file, monkeypatch):
    from mlengine.components.shared import staging
    from mlengine.components.tune.executor import run
    from tests.components.tune.test_katib import optimal_status
    from tests.k8s_fake import FakeKubeAPI

    uploads = []
    monkeypatch.setattr(staging, "upload_dir", lambda local, uri: uploads.append((Path(local), uri)) or 2)
    kfp = "/minio/mlpipeline/v2/artifacts/run-7"
    real = staging.artifact_uri
    stats = tmp_path / "statistics"  # the spec the tiny-batch check reads (a downloaded artifact in a pod)
    stats.mkdir()
    (stats / "feature_spec.yaml").write_text(Path(DEFAULT_SPEC_PATH).read_text())
    mapped = {str(stats): "s3://mlpipeline/v2/artifacts/run-7/ingest/statistics",
              str(tmp_path / "module"): "s3://mlpipeline/v2/artifacts/run-7/tune/module"}
    monkeypatch.setattr(staging, "artifact_uri", lambda p: mapped.get(str(p)) or real(p))
    best = {"nbuckets": "12", "learning_rate": "0.002", "batch_size": "256", "dropout": "0.3", "decay": "0.05",
            "depth": "3", "width": "64"}
    with FakeKubeAPI() as fake:
        fake.on_create.append(lambda created: fake.script(
            "experiments", created["metadata"]["name"], [optimal_status(best, "1.1")], interval=0.2))
        result = run(f"{kfp}/ingest/train_data", f"{kfp}/ingest/eval", str(stats),
                     str(tmp_path / "study"), trials=3, algorithm="random", epochs=1, mode="cluster",
                     namespace="kubeflow-user", api=fake.custom_objects_api(), timeout=30, training_operator="tfjob",
                     output_uri="s3://mlpipeline/v2/artifacts/run-7/tune/study/trials",
                     model_module=str(module_file), module_dir=str(tmp_path / "module"))
        [experiment] = [o for (_, _, plural, _), o in fake.objects.items() if plural == "experiments"]
    assert uploads == [(tmp_path / "module", "s3://mlpipeline/v2/artifacts/run-7/tune/module")]
    assert (tmp_path / "module" / "my_model.py").read_text() == MODULE  # the copy read once
    for replica in experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"].values():
        args = replica["template"]["spec"]["containers"][0]["args"]
        assert "--model-module=s3://mlpipeline/v2/artifacts/run-7/tune/module" in args
        assert "--hp=dropout=${trialParameters.dropout}" in args
    names = {p["name"] for p in experiment["spec"]["parameters"]}
    assert {"dropout", "decay", "depth", "width"} <= names and "hidden_units" not in names
    assert result.module_values == {"dropout": 0.3, "decay": 0.05, "depth": 3, "width": 64}


@pytest.mark.e2e
def test_mlengine_tune_then_train_with_a_module_and_a_fixed_hp_reaches_every_trial_and_the_final_model(
        tmp_path, capsys):
    """``mlengine tune --model-module ... --hp ...`` (through the executor), then the train step with its output."""
    import tensorflow as tf

    from mlengine.cli import main
    from mlengine.components.shared.hyperparameters import HyperParameters, module_values_of
    from mlengine.components.train.executor import run as train
    from tests.model_fixtures import write_taxi_splits

    splits = write_taxi_splits(tmp_path, rows=2500)
    out = tmp_path / "study"
    code = main(["tune", "--train-dir", str(splits["train"]), "--eval-dir", str(splits["eval"]), "--out", str(out),
                 "--model-module", str(DEEP_CROSS), "--hp", "cross_layers=3", "--hp", "deep_units=32",
                 "--nbuckets", "6", "--trials", "3", "--epochs", "1", "--algorithm", "random"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["trials"] == 3
    trials = json.loads((out / TRIALS_FILE).read_text())["trials"]
    assert all(t["params"]["cross_layers"] == 3 and t["params"]["deep_units"] == 32 for t in trials)
    assert len({(t["params"]["deep_layers"], t["params"]["dropout"]) for t in trials}) == 3  # the module's, varied
    assert (out / "tuning.md").is_file() and (out / "model_module" / "deep_cross.py").is_file()

    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import load_spec

    hparams = HyperParameters.load(out / "hyperparameters.json")
    analyze(str(splits["train"]), load_spec(None), hparams.nbuckets).save(tmp_path / "transform")
    result = train(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                   transform_dir=str(tmp_path / "transform"), model_dir=str(tmp_path / "model"),
                   hyperparameters=hparams, epochs=1, model_module=str(out / "model_module"),
                   module_values=module_values_of(out / "hyperparameters.json"), study_file=out / TRIALS_FILE)
    assert result.model_metadata["model_module"] == "deep_cross.py"
    assert result.model_metadata["model_module_hyperparameters"]["cross_layers"] == 3
    names = {v.name for v in tf.saved_model.load(str(tmp_path / "model" / "serving")).variables}
    assert any(n.startswith("dcn_cross_2/") for n in names) and not any(n.startswith("dcn_cross_3/") for n in names)
    assert any(n.startswith("dcn_deep_0/") for n in names)


@pytest.mark.e2e
def test_the_trial_program_of_a_katib_replica_trains_the_module_with_its_hp_arguments(tmp_path, capsys):
    """``python -m mlengine.components.tune.trial`` as a Katib trial runs it, on a module artifact folder."""
    import tensorflow as tf

    from mlengine.components.shared.model_module import write_artifact
    from mlengine.components.tune.trial import run as trial
    from tests.model_fixtures import write_taxi_splits

    splits = write_taxi_splits(tmp_path, rows=2000)
    write_artifact(DEEP_CROSS, tmp_path / "module")
    code = trial([f"--train-dir={splits['train']}", f"--eval-dir={splits['eval']}", f"--out={tmp_path / 'trial'}",
                  "--epochs=1", "--nbuckets=5", f"--model-module={tmp_path / 'module'}", "--hp=cross_layers=1",
                  "--hp=deep_units=32", "--hp=dropout=0.1"])
    assert code == 0
    assert "rmse=" in capsys.readouterr().out  # the line Katib's metrics collector reads
    saved = tf.saved_model.load(str(tmp_path / "trial" / "model" / "serving"))
    names = {v.name for v in saved.variables}
    assert any(n.startswith("dcn_cross_0/") for n in names) and not any(n.startswith("dcn_cross_1/") for n in names)
    record = json.loads((tmp_path / "trial" / "model" / "train_config.json").read_text())
    assert json.loads(record["model_hp"]) == {"cross_layers": 1, "deep_units": 32, "dropout": 0.1}
