"""examples/: the pipeline that composes the suite with your own components, and the Python walk-through.

Each example is loaded from its file and run as a user runs it, on a few generated taxi rows.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from mlengine.constants import SPLITS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUITE = ("ingest", "tune", "transform", "train", "evaluate")


def _load(relative: str):
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose():
    return _load("pipelines/compose.py")


def test_compose_compiles_for_the_cluster_with_the_suite_and_the_user_components(compose, tmp_path):
    path = compose.compile_pipeline(tmp_path, "cluster", image_registry="registry.example.com/ml")
    assert path.name == "compose_pipeline.cluster.yaml"
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    pipeline, platform = documents
    components = set(pipeline["components"])
    assert {f"comp-{name}" for name in (*SUITE, "check-rows", "notify")} <= components
    assert "comp-createpvc" in components  # the shared volume of parameter-server training
    assert pipeline["root"]["inputDefinitions"]["parameters"]["mode"]["defaultValue"] == "cluster"
    images = {executor["container"]["image"] for executor in pipeline["deploymentSpec"]["executors"].values()
              if "container" in executor and "pvc" not in executor["container"]["image"]}
    assert images == {"registry.example.com/ml/mlengine-pipeline:" + _version()}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all("secretAsEnv" in executor for name, executor in executors.items() if name != "exec-createpvc")
    assert {"exec-check-rows", "exec-notify", "exec-train"} <= set(executors)


def _version() -> str:
    from mlengine.version import __version__

    return __version__


@pytest.mark.e2e
def test_compose_runs_under_kfp_local(compose, small_taxi_csv, tmp_path):
    message = compose.run_locally(str(small_taxi_csv), tmp_path, epochs=1, min_rows=100)
    assert message.startswith("model trained on ") and " rows is " in message
    rows = int(message.split()[3].replace(",", ""))
    assert 2000 < rows < 3000  # the train split of 3,000 clean rows (80%)
    notes = list((tmp_path / "pipeline-root").rglob("note"))
    assert len(notes) == 1 and message in notes[0].read_text(encoding="utf-8")


@pytest.mark.e2e
def test_compose_stops_at_the_users_row_check(compose, small_taxi_csv, tmp_path):
    with pytest.raises(RuntimeError, match="check-rows"):
        compose.run_locally(str(small_taxi_csv), tmp_path, epochs=1, min_rows=10**6)
    assert not list((tmp_path / "pipeline-root").rglob("transform_fn"))  # nothing after the check ran


@pytest.mark.e2e
def test_python_walk_through_runs_every_step(small_taxi_csv, tmp_path, capsys):
    walk = _load("python_api.py")
    assert walk.main(["--out", str(tmp_path), "--data", str(small_taxi_csv), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("\n{\n") + 1:])  # the JSON summary printed last
    assert summary["rows_read"] == 3000 and summary["rows_rejected"] == 0
    assert summary["rows_predicted"] == 3000
    assert summary["eval_rmse"] > 0 and isinstance(summary["blessed"], bool)
    assert all((tmp_path / "data" / split).is_dir() for split in SPLITS)
    assert (Path(summary["model_dir"]) / "serving").is_dir()
    assert json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    for step in ("ingest:", "transform:", "train:", "evaluate:", "batch predict:"):
        assert step in printed
