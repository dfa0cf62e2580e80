"""The Katib Experiment: valid against Katib's OpenAPI schema and the TFJob CRD, the same search space
as the local study, and run_experiment against a fake Kubernetes API."""

from __future__ import annotations

import copy
import json
import logging
import re

import optuna
import pytest
import yaml

from mlengine.components.shared.distributed import Topology
from mlengine.components.tune import cluster as katib
from mlengine.components.tune.search_space import katib_string
from mlengine.components.tune.space_loader import load_search_space, space_from_dict
from mlengine.components.tune.trial import build_parser as trial_parser
from mlengine.constants import TRIALS_FILE
from mlengine.errors import MlengineError
from tests.k8s_fake import FakeKubeAPI
from tests.schema_utils import errors, katib_experiment_schema, tfjob_schema

optuna.logging.set_verbosity(optuna.logging.WARNING)
DATA = {"train_uri": "s3://mlpipeline/run-1/train", "eval_uri": "s3://mlpipeline/run-1/eval",
        "spec_uri": "s3://mlpipeline/run-1/statistics", "output_uri": "s3://mlpipeline/run-1/study/trials"}
NAMESPACE = "kubeflow-user"


def render(space=None, **kwargs):
    return katib.render_experiment("taxi-tune", space or load_search_space(), namespace=NAMESPACE,
                                   **{**DATA, **kwargs})


def containers(tfjob: dict) -> dict[str, list[dict]]:
    return {role: spec["template"]["spec"]["containers"] for role, spec in tfjob["spec"]["tfReplicaSpecs"].items()}


def substitute(trial_spec: dict, values: dict[str, str]) -> dict:
    """What Katib does to the template for one trial: replace ${trialParameters.<name>} with strings."""
    text = json.dumps(trial_spec)
    for name, value in values.items():
        text = text.replace(f"${{trialParameters.{name}}}", value)
    assert "${trialParameters." not in text, "a placeholder was left unsubstituted"
    return json.loads(text)


@pytest.mark.parametrize("algorithm", ["tpe", "random", "bayesianoptimization", "multivariate-tpe"])
@pytest.mark.parametrize("topology", [Topology(workers=1, ps=0), Topology(workers=2, ps=1)],
                         ids=["single", "parameter-server"])
def test_experiment_validates_against_katib_and_its_trial_against_the_tfjob_crd(algorithm, topology):
    space = load_search_space().with_overrides(algorithm=algorithm)
    shared = None if topology.is_single_process else "mlengine-shared"  # parameter-server pods share a PVC
    experiment = render(space, trial_topology=topology, shared_claim=shared)
    assert errors(experiment, katib_experiment_schema()) == []
    assert katib.webhook_problems(experiment) == []
    trial_spec = experiment["spec"]["trialTemplate"]["trialSpec"]
    assert trial_spec["apiVersion"] == "kubeflow.org/v1" and trial_spec["kind"] == "TFJob"
    assert "name" not in trial_spec.get("metadata", {}) and "namespace" not in trial_spec.get("metadata", {})
    # the template validates once Katib has substituted a trial's values (it is a TFJob then)
    values = {p["name"]: "1" for p in experiment["spec"]["trialTemplate"]["trialParameters"]}
    concrete = substitute(trial_spec, values)
    concrete["metadata"] = {"name": "taxi-tune-abc123", "namespace": NAMESPACE}
    assert errors(concrete, tfjob_schema()) == []
    replicas = concrete["spec"]["tfReplicaSpecs"]
    assert set(replicas) <= {"Chief", "PS", "Worker"}
    for replica in replicas.values():
        assert replica.get("restartPolicy", "Never") in {"Always", "OnFailure", "Never", "ExitCode"}
    expected = {"Worker"} if topology.is_single_process else {"Chief", "PS", "Worker"}
    assert set(replicas) == expected
    for role, role_containers in containers(trial_spec).items():
        primary = [c for c in role_containers if c["name"] == katib.PRIMARY_CONTAINER]
        assert len(primary) == 1, role
        command = [*primary[0].get("command", []), *primary[0].get("args", [])]
        assert command[:3] == katib.TRIAL_PROGRAM, role


def test_experiment_fields_follow_the_search_space():
    space = load_search_space()
    spec = render(space)["spec"]
    assert spec["objective"]["type"] == "minimize" and spec["objective"]["objectiveMetricName"] == "rmse"
    assert spec["objective"]["metricStrategies"] == [{"name": "rmse", "value": "latest"}]
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]} == {
        "n_startup_trials": "5", "random_state": "42"}
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (
        space.max_trials, space.parallel_trials, space.max_failed_trials)
    assert spec["parameters"] == space.to_katib_parameters()
    for param in spec["parameters"]:
        for key, value in param["feasibleSpace"].items():
            assert all(isinstance(v, str) for v in value) if key == "list" else isinstance(value, str)
    assert spec["earlyStopping"] == {"algorithmName": "medianstop", "algorithmSettings": [
        {"name": "min_trials_required", "value": str(space.early_stopping.min_trials_required)},
        {"name": "start_step", "value": str(space.early_stopping.start_step)}]}
    assert spec["metricsCollectorSpec"]["collector"] == {"kind": "StdOut"}
    [metrics_format] = spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    match = re.compile(metrics_format).search("rmse=1.084213")
    assert match and match.group(1) == "rmse" and float(match.group(2)) == pytest.approx(1.084213)
    template = spec["trialTemplate"]
    assert template["primaryContainerName"] == "tensorflow"
    assert template["primaryPodLabels"] == {"training.kubeflow.org/job-role": "master"}
    assert template["successCondition"] == 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
    assert template["failureCondition"] == 'status.conditions.#(type=="Failed")#|#(status=="True")#'
    references = {p["name"]: p["reference"] for p in template["trialParameters"]}
    assert references == {**{n: n for n in space.names}, "trialName": "${trialSpec.Name}"}
    assert all(p["description"] for p in template["trialParameters"])


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_the_same_space_reaches_the_trial_program_with_the_same_values(algorithm):
    """Optuna's suggestions, passed through the Experiment as Katib strings, parse back identically."""
    space = load_search_space().with_overrides(algorithm=algorithm)
    experiment = render(space, epochs=3)
    trial_spec = experiment["spec"]["trialTemplate"]["trialSpec"]
    binding = space.to_optuna(seed=11)
    study = optuna.create_study(sampler=binding.sampler, direction=binding.direction)
    for index in range(25):
        trial = study.ask()
        params = binding.suggest(trial)
        study.tell(trial, float(index % 5))
        values = {name: katib_string(value) for name, value in params.items()}
        concrete = substitute(trial_spec, {**values, "trialName": f"taxi-tune-{index}"})
        for role, role_containers in containers(concrete).items():
            [primary] = [c for c in role_containers if c["name"] == "tensorflow"]
            argv = [*primary.get("command", []), *primary.get("args", [])][3:]
            parsed = trial_parser().parse_args(argv)
            assert parsed.nbuckets == params["nbuckets"], role
            assert parsed.hidden_units == params["hidden_units"]
            assert parsed.learning_rate == params["learning_rate"]
            assert parsed.batch_size == params["batch_size"]
            assert parsed.epochs == 3
            assert parsed.train_dir == DATA["train_uri"] and parsed.spec == DATA["spec_uri"]
            assert parsed.out == f"{DATA['output_uri']}/taxi-tune-{index}"


def test_untuned_hyperparameters_are_fixed_arguments():
    raw = load_search_space().to_dict()
    raw["parameters"] = {"nbuckets": {"type": "int", "min": 4, "max": 12, "step": 4}}
    space = space_from_dict(raw)
    experiment = render(space, fixed_params={"hidden_units": "128,64", "learning_rate": 0.002, "batch_size": 256})
    assert katib.webhook_problems(experiment) == []
    args = " ".join(containers(experiment["spec"]["trialTemplate"]["trialSpec"])["Worker"][0]["args"])
    assert "--nbuckets=${trialParameters.nbuckets}" in args
    assert "--hidden-units=128,64" in args and "--learning-rate=0.002" in args and "--batch-size=256" in args
    assert "trialParameters.learning_rate" not in args


def test_bad_names_and_broken_templates_are_caught():
    with pytest.raises(MlengineError, match="experiment name 'Taxi_Tune'"):
        katib.render_experiment("Taxi_Tune", load_search_space(), **DATA)
    experiment = render()
    broken = copy.deepcopy(experiment)
    broken["spec"]["trialTemplate"]["trialParameters"] = [
        p for p in broken["spec"]["trialTemplate"]["trialParameters"] if p["name"] != "nbuckets"]
    assert any("${trialParameters.nbuckets}" in p for p in katib.webhook_problems(broken))
    broken = copy.deepcopy(experiment)
    broken["spec"]["parallelTrialCount"] = broken["spec"]["maxTrialCount"] + 1
    assert any("parallelTrialCount" in p for p in katib.webhook_problems(broken))
    broken = copy.deepcopy(experiment)
    broken["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"name": "fixed"}
    assert any("metadata.name" in p for p in katib.webhook_problems(broken))
    broken = copy.deepcopy(experiment)
    broken["spec"]["parameters"][0]["feasibleSpace"]["min"] = 4  # a number, not a string
    assert errors(broken, katib_experiment_schema()) != []


def optimal_status(assignments: dict[str, str], rmse: str, condition: str = "Succeeded") -> dict:
    return {
        "conditions": [{"type": "Created", "status": "True", "reason": "ExperimentCreated"},
                       {"type": "Running", "status": "False", "reason": "ExperimentRunning"},
                       {"type": condition, "status": "True", "reason": f"Experiment{condition}",
                        "message": f"Experiment has {condition.lower()} because max trial count has reached"}],
        "currentOptimalTrial": {
            "bestTrialName": "taxi-tune-x7k2",
            "parameterAssignments": [{"name": n, "value": v} for n, v in assignments.items()],
            "observation": {"metrics": [{"name": "rmse", "latest": rmse, "min": rmse, "max": "2.5"}]},
        },
        "trials": 3, "trialsSucceeded": 3,
    }


def katib_trial(name: str, assignments: dict[str, str], rmse: str | None, condition: str) -> dict:
    status = {"conditions": [{"type": condition, "status": "True", "reason": f"Trial{condition}",
                              "message": f"Trial {condition.lower()}"}]}
    if rmse is not None:
        status["observation"] = {"metrics": [{"name": "rmse", "latest": rmse, "min": rmse, "max": rmse}]}
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {"katib.kubeflow.org/experiment": "taxi-tune"}},
            "spec": {"parameterAssignments": [{"name": n, "value": v} for n, v in assignments.items()]},
            "status": status}


def test_run_experiment_against_a_fake_api_returns_the_optimal_trial_typed(tmp_path, caplog):
    space = load_search_space()
    best = {"nbuckets": "18", "hidden_units": "64,32", "learning_rate": "0.0031", "batch_size": "512"}
    other = {"nbuckets": "6", "hidden_units": "32", "learning_rate": "0.02", "batch_size": "1024"}
    caplog.set_level(logging.INFO, logger="mlengine.components.tune.cluster")
    with FakeKubeAPI() as fake:
        fake.served_group_versions = ["kubeflow.org/v1"]  # a Training Operator v1 cluster: TFJob trials
        def controller(created: dict) -> None:
            if created.get("kind") != "Experiment":
                return
            fake.put(katib_trial("taxi-tune-x7k2", best, "1.0612", "Succeeded"), "trials")
            fake.put(katib_trial("taxi-tune-p9q1", other, None, "Failed"), "trials")
            running = {"conditions": [{"type": "Running", "status": "True", "reason": "ExperimentRunning"}],
                       "trials": 2, "trialsRunning": 2}
            fake.script("experiments", created["metadata"]["name"], [running, optimal_status(best, "1.0612")],
                        interval=0.3)

        fake.on_create.append(controller)
        name_file = tmp_path / "experiment-name"
        result = katib.run_experiment("taxi-tune", space, namespace=NAMESPACE, api=fake.custom_objects_api(),
                                      name_file=str(name_file), timeout=30, poll_interval=0.2,
                                      **DATA)
        stored = fake.find("experiments", "taxi-tune")
        assert errors(stored, katib_experiment_schema()) == []  # the status we played is Katib-shaped too
        # a restarted launcher re-attaches by the name it wrote first: no second Experiment
        again = katib.run_experiment("taxi-tune", space, namespace=NAMESPACE, api=fake.custom_objects_api(),
                                     name_file=str(name_file), timeout=30, poll_interval=0.2, **DATA)
        assert fake.count("POST", "experiments") == 1
    assert result["best_params"] == {"nbuckets": 18, "hidden_units": "64,32", "learning_rate": 0.0031,
                                     "batch_size": 512, "class_weight": "none"}
    assert again["best_params"] == result["best_params"]
    assert result["best_rmse"] == pytest.approx(1.0612)
    assert name_file.read_text() == "taxi-tune"
    states = {t["name"]: (t["state"], t["rmse"]) for t in result["trials"]}
    assert states == {"taxi-tune-x7k2": ("COMPLETE", pytest.approx(1.0612)), "taxi-tune-p9q1": ("FAIL", None)}
    assert any("Katib Experiment kubeflow-user/taxi-tune" in r.getMessage() for r in caplog.records)


def test_a_failed_experiment_is_a_one_line_error():
    with FakeKubeAPI() as fake:
        fake.served_group_versions = ["kubeflow.org/v1"]  # a Training Operator v1 cluster: TFJob trials
        fake.on_create.append(lambda created: fake.script(
            "experiments", created["metadata"]["name"],
            [{"conditions": [{"type": "Failed", "status": "True", "reason": "ExperimentFailed",
                              "message": "Experiment has failed because max failed count has reached"}]}],
            interval=0.1))
        with pytest.raises(MlengineError, match="max failed count has reached") as info:
            katib.run_experiment("taxi-tune", load_search_space(), namespace=NAMESPACE,
                                 api=fake.custom_objects_api(), timeout=30, poll_interval=0.2, **DATA)
    assert "\n" not in str(info.value)


def test_cli_writes_a_katib_manifest(tmp_path):
    from mlengine.cli import main

    out = tmp_path / "experiment.yaml"
    code = main(["tune", "--train-dir", DATA["train_uri"], "--eval-dir", DATA["eval_uri"], "--spec-dir",
                 DATA["spec_uri"], "--out", DATA["output_uri"], "--trials", "6", "--parallel", "3",
                 "--algorithm", "random", "--katib-manifest", str(out), "--experiment-name", "taxi-cli"])
    assert code == 0
    manifest = yaml.safe_load(out.read_text())
    assert manifest["metadata"]["name"] == "taxi-cli"
    assert (manifest["spec"]["maxTrialCount"], manifest["spec"]["parallelTrialCount"]) == (6, 3)
    assert manifest["spec"]["algorithm"]["algorithmName"] == "random"
    assert errors(manifest, katib_experiment_schema()) == []


def test_launch_in_cluster_mode_maps_kfp_paths_to_uris_and_returns_the_best(tmp_path, monkeypatch):
    from mlengine.components.tune.executor import run

    best = {"nbuckets": "22", "hidden_units": "128,64", "learning_rate": "0.0012", "batch_size": "256"}
    with FakeKubeAPI() as fake:
        fake.served_group_versions = ["kubeflow.org/v1"]  # a Training Operator v1 cluster: TFJob trials
        fake.on_create.append(lambda created: fake.script(
            "experiments", created["metadata"]["name"], [optimal_status(best, "1.047")], interval=0.2))
        kfp = "/minio/mlpipeline/v2/artifacts/run-7/ingest"
        result = run(
            f"{kfp}/train_data", f"{kfp}/eval", f"{kfp}/statistics", str(tmp_path / "study"),
            trials=4, parallel=2, algorithm="random", epochs=2, mode="cluster",
            namespace=NAMESPACE, api=fake.custom_objects_api(), timeout=30, training_operator="tfjob",
            output_uri="s3://mlpipeline/v2/artifacts/run-7/tune/study/trials", shared_claim="run-7-shared")
        chosen, markdown, page = result.hyperparameters.to_dict(), result.markdown, result.html
        [experiment] = [o for (_, _, plural, _), o in fake.objects.items() if plural == "experiments"]
    assert chosen == {"nbuckets": 22, "hidden_units": "128,64", "learning_rate": 0.0012, "batch_size": 256,
                      "class_weight": "none"}
    assert experiment["spec"]["maxTrialCount"] == 4 and experiment["spec"]["algorithm"]["algorithmName"] == "random"
    args = containers(experiment["spec"]["trialTemplate"]["trialSpec"])["Worker"][0]["args"]
    assert "--train-dir=s3://mlpipeline/v2/artifacts/run-7/ingest/train_data" in args
    assert "--spec=s3://mlpipeline/v2/artifacts/run-7/ingest/statistics" in args
    assert "--out=s3://mlpipeline/v2/artifacts/run-7/tune/study/trials/${trialParameters.trialName}" in args
    assert (tmp_path / "study" / "experiment-name").read_text() == experiment["metadata"]["name"]
    assert json.loads((tmp_path / "study" / TRIALS_FILE).read_text())["best_rmse"] == pytest.approx(1.047)
    assert "1.0470" in markdown and page.count("data:image/png;base64,") == 2
    # the shared PVC is the argument the component passes down, never read from the environment
    worker = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["tfReplicaSpecs"]["Worker"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in worker["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["run-7-shared"]
    monkeypatch.setenv("MLENGINE_SHARED_CLAIM", "from-the-environment")
    manifest = katib.render_experiment("taxi-env", load_search_space(), namespace=NAMESPACE, **DATA)
    assert "from-the-environment" not in json.dumps(manifest)


def test_grid_experiment_budget_fits_the_grid_katib_enumerates():
    raw = load_search_space().to_dict()
    raw.update(algorithm="grid", algorithm_settings={}, max_trials=50, parallel_trials=4)
    raw["parameters"] = {"nbuckets": {"type": "int", "min": 4, "max": 12, "step": 4},
                         "learning_rate": {"type": "double", "min": 0.001, "max": 0.003, "step": 0.001}}
    space = space_from_dict(raw)
    experiment = render(space)
    assert experiment["spec"]["maxTrialCount"] == 9 == space.trial_budget()
    assert katib.webhook_problems(experiment) == []
    grid = {p["name"]: katib.katib_grid_values(p) for p in experiment["spec"]["parameters"]}
    assert grid == {name: [katib_string(v) for v in space.parameter(name).grid_values()] for name in space.names}
    too_many = copy.deepcopy(experiment)
    too_many["spec"]["maxTrialCount"] = 10
    assert any("9 grid combinations" in p for p in katib.webhook_problems(too_many))
