"""The compiled training pipeline is a valid KFP PipelineSpec a Kubeflow user can upload."""

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from mlengine.constants import PIPELINE_IMAGE
from mlengine.pipelines.local_run import compile_pipelines
from mlengine.pipelines.training import PIPELINE_NAME


def _compiled(tmp_path) -> dict:
    paths = compile_pipelines(tmp_path)
    with open(paths[PIPELINE_NAME]) as handle:
        return yaml.safe_load(handle)


def test_yaml_parses_as_pipeline_spec_with_unknown_fields_rejected(tmp_path):
    doc = _compiled(tmp_path)
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(doc, spec, ignore_unknown_fields=False)
    assert spec.pipeline_info.name == PIPELINE_NAME
    tasks = set(spec.root.dag.tasks)
    assert {"ingest", "tune", "transform", "train", "evaluate"} <= tasks
    assert "condition-branches-1" in tasks  # dsl.If(blessed) / dsl.Else
    branches = spec.components[spec.root.dag.tasks["condition-branches-1"].component_ref.name].dag.tasks
    assert len(branches) == 2  # blessed: deploy; else: settle a canary in flight
    for branch in branches.values():
        assert any(task.startswith("deploy") for task in spec.components[branch.component_ref.name].dag.tasks)


def test_monitoring_pipeline_compiles_to_a_pipeline_spec(tmp_path):
    from mlengine.pipelines.monitoring import PIPELINE_NAME as MONITORING_NAME

    with open(compile_pipelines(tmp_path)[MONITORING_NAME]) as handle:
        doc = yaml.safe_load(handle)
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(doc, spec, ignore_unknown_fields=False)
    assert set(spec.root.dag.tasks) == {"importer", "monitor"}
    assert spec.root.dag.tasks["monitor"].caching_options.enable_cache is False
    assert set(spec.root.input_definitions.parameters) == {"statistics_uri", "serving_log_uri", "thresholds"}


def test_dag_wires_one_hyperparameters_artifact_from_tune_and_gates_deploy_on_blessing(tmp_path):
    dag = _compiled(tmp_path)["root"]["dag"]["tasks"]
    for step in ("transform", "train"):
        hparams = dag[step]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"]
        assert hparams == {"producerTask": "tune", "outputArtifactKey": "hyperparameters"}, step
        assert not set(dag[step]["inputs"].get("parameters", {})) & {"nbuckets", "hidden_units", "learning_rate",
                                                                      "batch_size"}
    fixed = dag["tune"]["inputs"]["parameters"]["fixed_hyperparameters"]["componentInputParameter"]
    assert fixed == "hyperparameters"  # the pipeline's one dict of values the user fixes
    train_inputs = dag["train"]["inputs"]["artifacts"]
    assert train_inputs["transform_fn"]["taskOutputArtifact"]["producerTask"] == "transform"
    doc = _compiled(tmp_path)
    assert "evaluate" in dag["condition-branches-1"]["dependentTasks"]
    branches = doc["components"][dag["condition-branches-1"]["componentRef"]["name"]]["dag"]["tasks"]
    conditions = [task["triggerPolicy"]["condition"] for task in branches.values()]
    assert sorted(conditions) == sorted([
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true",
        "!(inputs.parameter_values['pipelinechannel--evaluate-Output'] == true)",
    ])


def test_the_pipeline_ingest_workers_parameter_is_the_ingest_steps_workers_input(tmp_path):
    doc = _compiled(tmp_path)
    ingest_inputs = doc["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]
    assert ingest_inputs["workers"] == {"componentInputParameter": "ingest_workers"}
    assert doc["root"]["inputDefinitions"]["parameters"]["ingest_workers"]["defaultValue"] == 0
    assert doc["components"]["comp-ingest"]["inputDefinitions"]["parameters"]["workers"]["defaultValue"] == 0


def test_every_step_uses_the_versioned_image_and_installs_nothing_at_run_time(tmp_path):
    executors = _compiled(tmp_path)["deploymentSpec"]["executors"]
    assert len(executors) == 7  # ingest, tune, transform, train, evaluate, deploy x2 (if / else)
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == PIPELINE_IMAGE, name
        assert not container["image"].endswith(":latest")
        assert "pip install" not in " ".join(container["command"]), name


def test_cli_run_fails_fast_with_one_line_for_bad_inputs(tmp_path):
    """Fatal input problems end before any pipeline task starts: one line, exit 2, no traceback."""
    import subprocess
    import sys

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "wrong.csv").write_text("a,b,c\n1,2,3\n")
    (tmp_path / "spec.yaml").write_text("name: x\nlabel: {name: y, type: float}\ncolumns: []\n")
    cases = [
        (["--data", str(tmp_path / "missing.csv")], "missing.csv"),
        (["--data", str(tmp_path / "empty.csv")], "empty.csv"),
        (["--data", str(tmp_path / "wrong.csv")], "wrong.csv"),
        (["--data", str(tmp_path / "wrong.csv"), "--spec", str(tmp_path / "spec.yaml")],
         "columns: must be a non-empty"),
        (["--data", str(tmp_path / "nothing-*.csv")], "nothing-*.csv"),
        (["--ingest-workers", "-1"], "--ingest-workers -1"),
    ]
    for args, expected in cases:
        proc = subprocess.run([sys.executable, "-m", "mlengine.cli", "run", "--out", str(tmp_path / "o"), *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert expected in lines[0] and "Traceback" not in proc.stderr
        assert not (tmp_path / "o" / "pipeline-root").exists()


@pytest.mark.parametrize("pipeline", ["training", "monitoring"])
def test_every_input_of_every_component_and_of_the_pipeline_has_a_description(tmp_path, pipeline):
    """The Kubeflow UI shows these: KFP takes them from the Google-style ``Args:`` docstrings."""
    from mlengine.pipelines.monitoring import PIPELINE_NAME as MONITORING_NAME

    paths = compile_pipelines(tmp_path)
    with open(paths[PIPELINE_NAME if pipeline == "training" else MONITORING_NAME]) as handle:
        doc = yaml.safe_load(handle)
    missing = []
    for name, component in doc["components"].items():
        # condition branches and KFP's own importer are not our components
        if not name.startswith("comp-") or name.startswith(("comp-condition", "comp-importer")):
            continue
        for kind in ("parameters", "artifacts"):
            for key, value in component.get("inputDefinitions", {}).get(kind, {}).items():
                if not value.get("description"):
                    missing.append(f"{name}.{key}")
    for key, value in doc["root"]["inputDefinitions"]["parameters"].items():
        if not value.get("description"):
            missing.append(f"pipeline.{key}")
    assert missing == []


def test_cli_flags_a_user_sets_become_fixed_hyperparameters():
    from mlengine.cli import build_parser
    from mlengine.pipelines.cli import _run_params

    args = build_parser().parse_args(["run", "--trials", "2", "--nbuckets", "8"])
    params = _run_params(args)
    assert params["hyperparameters"] == {"nbuckets": 8} and params["trials"] == 2
    assert "hyperparameters" not in _run_params(build_parser().parse_args(["run", "--trials", "2"]))


def test_every_pipeline_parameter_is_reachable_from_mlengine_run_and_flags_are_not_abbreviated():
    import inspect

    from mlengine.cli import build_parser
    from mlengine.pipelines.cli import _run_params
    from mlengine.pipelines.training import training_pipeline

    argv = ["run", "--spec", "s.yaml", "--nbuckets", "8", "--epochs", "3", "--trials", "2", "--parallel-trials", "2",
            "--tune-algorithm", "random", "--tune-epochs", "5", "--workers", "2", "--ps", "1", "--strategy",
            "parameter_server", "--split-seed", "7", "--blessing-margin", "0.1", "--baseline-tolerance", "0.02",
            "--baseline-model", "/m", "--model-name", "gems", "--canary-traffic-percent", "20", "--keep-serving",
            "--data-runner", "beam", "--beam-option=--direct_num_workers=1", "--model-module", "m.py",
            "--ingest-workers", "3", "--task", "regression"]
    params = _run_params(build_parser().parse_args(argv))
    pipeline_parameters = set(inspect.signature(training_pipeline.pipeline_func).parameters)
    # data_uri comes from --data / the generated rows; mode is "local" for mlengine run by definition, and
    # the cluster-only choices (which training operator, KServe's mode) are `mlengine submit --param`s
    cluster_only = {"mode", "training_operator", "deployment_mode"}
    assert pipeline_parameters - set(params) <= {"data_uri", *cluster_only}, pipeline_parameters - set(params)
    assert params["tune_epochs"] == 5 and params["split_seed"] == 7 and params["model_name"] == "gems"
    assert params["task"] == "regression"
    assert params["blessing_margin"] == 0.1 and params["canary_traffic_percent"] == 20
    assert params["baseline_model_uri"] == "/m" and params["baseline_tolerance"] == 0.02
    assert params["model_module"] == "m.py"
    assert params["ingest_workers"] == 3 and params["workers"] == 2  # ingest's and training's, apart
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--epoch", "3"])  # would be --epochs with abbreviations on
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--tune-epoch", "3"])
