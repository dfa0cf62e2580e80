"""The cluster target's YAML: mode=cluster, the MinIO Secret and the shared PVC in the platform spec, one registry."""

from __future__ import annotations

import json

import pytest
import yaml
from google.protobuf import json_format
from kfp import dsl
from kfp.pipeline_spec import pipeline_spec_pb2

from mlengine.constants import ENV_IMAGE_REGISTRY, IMAGE_REGISTRY, K8S_S3_SECRET, image_for
from mlengine.errors import MlengineError
from mlengine.pipelines.platform import (
    CLUSTER_DEFAULTS,
    SHARED_VOLUME_MOUNT,
    SHARED_VOLUME_NAME,
    Target,
    compile_for,
)
from mlengine.version import __version__

S3_KEYS = {"MLENGINE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def _compile(tmp_path, **target) -> dict[str, list[dict]]:
    """{pipeline name: its YAML documents} for one target."""
    paths = compile_for(Target(**target), tmp_path / target.get("name", "local"))
    return {name: list(yaml.safe_load_all(open(path, encoding="utf-8"))) for name, path in paths.items()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> dict[str, list[dict]]:
    return _compile(tmp_path_factory.mktemp("cluster"), name="cluster")


def test_cluster_yaml_is_a_strict_pipeline_spec_and_platform_spec_with_mode_cluster(cluster):
    spec_doc, platform_doc = cluster["mlengine-training"]
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    defaults = spec_doc["root"]["inputDefinitions"]["parameters"]
    assert defaults["mode"]["defaultValue"] == "cluster"
    for name, value in CLUSTER_DEFAULTS.items():
        assert defaults[name]["defaultValue"] == value, name
    assert {"createpvc", "ingest", "tune", "transform", "train", "evaluate"} <= set(_steps(spec_doc))
    assert "deletepvc" in spec.root.dag.tasks


def test_kfp_loads_the_cluster_yaml_back_with_its_platform_spec(tmp_path):
    from kfp import components

    path = compile_for(Target(name="cluster"), tmp_path)["mlengine-training"]
    loaded = components.load_component_from_file(path)
    assert loaded.name == "mlengine-training"
    assert "exec-train" in loaded.platform_spec.platforms["kubernetes"].deployment_spec.executors


def test_every_step_gets_the_minio_secret_as_env_and_never_a_value(cluster):
    for name, (spec_doc, platform_doc) in [(n, docs) for n, docs in cluster.items()]:
        executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        ours = [e for e, body in spec_doc["deploymentSpec"]["executors"].items()
                if "container" in body and not body["container"]["image"].startswith("argostub/")]
        assert ours and set(ours) <= set(executors), name
        for executor in ours:
            secrets = executors[executor]["secretAsEnv"]
            required = [s for s in secrets if not s.get("optional")]
            assert len(required) == 1 and required[0]["secretName"] == K8S_S3_SECRET
            assert {k["envVar"] for k in required[0]["keyToEnv"]} == S3_KEYS
            assert {k["secretKey"] for k in required[0]["keyToEnv"]} == S3_KEYS
            optional = [s for s in secrets if s.get("optional")]
            assert [k["envVar"] for s in optional for k in s["keyToEnv"]] == ["MLENGINE_S3_SECURE"]
        for body in spec_doc["deploymentSpec"]["executors"].values():  # nothing secret as a plain env value
            assert not {e["name"] for e in body.get("container", {}).get("env", [])} & S3_KEYS


def _steps(spec_doc: dict) -> dict:
    """The tasks inside the training pipeline's exit handler (every step but the PVC's deletion)."""
    (handler,) = [task for task in spec_doc["root"]["dag"]["tasks"].values()
                  if task["componentRef"]["name"].startswith("comp-exit-handler")]
    return spec_doc["components"][handler["componentRef"]["name"]]["dag"]["tasks"]


def test_the_shared_volume_is_created_per_run_mounted_in_tune_and_train_and_deleted_even_on_failure(cluster):
    spec_doc, platform_doc = cluster["mlengine-training"]
    root, steps = spec_doc["root"]["dag"]["tasks"], _steps(spec_doc)
    assert len(root) == 2 and "deletepvc" in root  # the exit handler's group and its exit task
    create = steps["createpvc"]["inputs"]["parameters"]
    assert create["access_modes"]["runtimeValue"]["constant"] == ["ReadWriteMany"]
    assert create["size"]["runtimeValue"]["constant"] == "10Gi"
    # the run's UUID names the claim: KFP's driver resolves the placeholder only as a whole value
    assert create["pvc_name"]["runtimeValue"]["constant"] == SHARED_VOLUME_NAME == dsl.PIPELINE_JOB_ID_PLACEHOLDER
    assert steps["createpvc"]["cachingOptions"].get("enableCache") is not True  # a cached step creates no claim
    executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("tune", "train"):
        assert steps[step]["inputs"]["parameters"]["shared_claim"]["runtimeValue"]["constant"] == SHARED_VOLUME_NAME
        assert "createpvc" in steps[step]["dependentTasks"]  # mounted only once it exists
        (mount,) = executors[f"exec-{step}"]["pvcMount"]
        assert mount["mountPath"] == SHARED_VOLUME_MOUNT
        assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == SHARED_VOLUME_NAME
    # deleted by the exit handler: after every step, whether they succeeded or failed
    delete = root["deletepvc"]
    assert delete["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert delete["dependentTasks"] == [name for name in root if name != "deletepvc"]
    assert delete["inputs"]["parameters"]["pvc_name"]["runtimeValue"]["constant"] == SHARED_VOLUME_NAME
    assert delete["cachingOptions"].get("enableCache") is not True
    assert "pvcMount" not in json.dumps({k: v for k, v in executors.items() if k not in ("exec-tune", "exec-train")})


def test_the_cluster_training_pipeline_has_the_local_parameters_and_no_pipeline_outputs(cluster, tmp_path):
    local_doc = _compile(tmp_path, name="local")["mlengine-training"][0]
    spec_doc = cluster["mlengine-training"][0]
    parameters = spec_doc["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(local_doc["root"]["inputDefinitions"]["parameters"])
    assert local_doc["root"]["outputDefinitions"]  # locally the summary reads them
    assert "outputDefinitions" not in spec_doc["root"]  # KFP takes none from inside an exit handler
    assert {"ingest", "tune", "transform", "train", "evaluate"} <= set(_steps(spec_doc))


def test_secret_name_volume_size_and_storage_class_are_compile_options(tmp_path):
    docs = _compile(tmp_path, name="cluster", s3_secret="team-minio", shared_volume_size="50Gi",
                    storage_class="nfs-client")["mlengine-training"]
    spec_doc, platform_doc = docs
    assert "mlengine-minio-credentials" not in json.dumps(platform_doc)
    assert json.dumps(platform_doc).count('"secretName": "team-minio"') >= 14  # 7 steps, required + optional
    create = _steps(spec_doc)["createpvc"]["inputs"]["parameters"]
    assert create["size"]["runtimeValue"]["constant"] == "50Gi"
    assert create["storage_class_name"]["runtimeValue"]["constant"] == "nfs-client"
    for bad in ({"s3_secret": "Bad_Name"}, {"shared_volume_size": "lots"}, {"image_registry": "https://x.io/a"}):
        with pytest.raises(MlengineError):
            Target(name="cluster", **bad)


def test_local_target_keeps_mode_local_and_has_no_kubernetes_platform_config(tmp_path):
    for name, docs in _compile(tmp_path, name="local").items():
        assert len(docs) == 1, name  # no platform spec: kfp.local runs it as is
        assert not {"createpvc", "deletepvc"} & set(docs[0]["root"]["dag"]["tasks"])
    training = _compile(tmp_path, name="local")["mlengine-training"][0]
    assert training["root"]["inputDefinitions"]["parameters"]["mode"]["defaultValue"] == "local"


def test_target_names_are_in_the_file_names(tmp_path):
    cluster = compile_for(Target(name="cluster"), tmp_path)
    local = compile_for(Target(name="local"), tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["monitoring_pipeline.cluster.yaml", "monitoring_pipeline.local.yaml",
                     "training_pipeline.cluster.yaml", "training_pipeline.local.yaml"]
    assert set(cluster.values()).isdisjoint(local.values())


@pytest.mark.parametrize("via", ["option", "environment"])
def test_one_registry_setting_names_every_image_even_though_the_components_were_imported_before(
        tmp_path, monkeypatch, via):
    import mlengine.pipelines.training  # noqa: F401 (components capture their base image at import time)

    registry = "registry.example.com:5000/ml-team"
    monkeypatch.delenv(ENV_IMAGE_REGISTRY, raising=False)
    if via == "environment":
        monkeypatch.setenv(ENV_IMAGE_REGISTRY, registry)
    target = {"image_registry": registry} if via == "option" else {}
    for target_name in ("cluster", "local"):
        for name, docs in _compile(tmp_path / via, name=target_name, **target).items():
            for executor, body in docs[0]["deploymentSpec"]["executors"].items():
                image = body.get("container", {}).get("image", "argostub/importer")
                if image.startswith("argostub/"):  # KFP's importer and PVC steps, run by its driver
                    continue
                assert image == f"{registry}/mlengine-pipeline:{__version__}", (name, executor)
                # the step renders TFJobs / trials with the same registry
                assert {"name": ENV_IMAGE_REGISTRY, "value": registry} in body["container"]["env"]
    monkeypatch.delenv(ENV_IMAGE_REGISTRY, raising=False)
    assert image_for("trainer") == f"{IMAGE_REGISTRY}/mlengine-trainer:{__version__}"
    monkeypatch.setenv(ENV_IMAGE_REGISTRY, registry + "/")
    assert image_for("trainer") == f"{registry}/mlengine-trainer:{__version__}"


def test_manifests_name_the_trainer_image_of_the_given_registry(tmp_path, capsys):
    from mlengine.cli import main

    assert main(["manifests", "--out", str(tmp_path), "--image-registry", "reg.example.com/ml"]) == 0
    images = set()
    for path in tmp_path.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        images |= {line.split("image:", 1)[1].strip() for line in text.splitlines() if "image:" in line}
    assert images == {f"reg.example.com/ml/mlengine-trainer:{__version__}",
                      f"reg.example.com/ml/mlengine-server:{__version__}"}  # the ServingRuntime's
    assert main(["manifests", "--out", str(tmp_path), "--image-registry", "Reg.Example.com"]) == 2
    assert "--image-registry" in capsys.readouterr().err


def test_a_step_started_with_the_compiled_registry_renders_tfjobs_and_trials_with_it(tmp_path):
    """A pod of the compiled YAML: MLENGINE_IMAGE_REGISTRY in its environment, then the launchers' defaults."""
    import os
    import subprocess
    import sys

    script = (
        "from mlengine.components.shared.distributed import Topology\n"
        "from mlengine.components.shared.tfjob import render_tfjob\n"
        "from mlengine.components.tune import cluster\n"
        "import inspect\n"
        "job = render_tfjob('t', ['--epochs', '1'], Topology(workers=1, ps=0))\n"
        "print(job['spec']['tfReplicaSpecs']['Worker']['template']['spec']['containers'][0]['image'])\n"
        "print(inspect.signature(cluster.render_experiment).parameters['image'].default)\n"
    )
    env = {**os.environ, ENV_IMAGE_REGISTRY: "registry.example.com/ml"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"registry.example.com/ml/mlengine-trainer:{__version__}"] * 2
