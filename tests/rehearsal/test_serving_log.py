"""The rehearsal's monitor wiring without Docker: the predictor env the rendered InferenceService asks for."""

from __future__ import annotations

import json

from mlengine.components.deploy.cluster import render_inference_service
from mlengine.constants import ENV_S3_ACCESS_KEY, ENV_S3_ENDPOINT, ENV_S3_SECRET_KEY, K8S_S3_SECRET
from mlengine.kubeflow.manifests import render_cluster_manifests
from mlengine.rehearsal.engine import DATA_ROOT, MODEL_URI, resolve_env
from mlengine.rehearsal.monitor import predictor_serving_log


def test_the_rendered_predictor_logs_to_the_bucket_with_the_secrets_credentials():
    manifests = render_cluster_manifests(data_root=DATA_ROOT, model_uri=MODEL_URI,
                                         previous_model_uri="s3://mlpipeline/mlengine/models/v1",
                                         serving_log_flush_seconds=3)
    isvc = manifests["inferenceservice-canary.yaml"]
    assert predictor_serving_log(isvc) == "s3://mlpipeline/mlengine/serving-log/taxi-fare/"
    secret = {ENV_S3_ACCESS_KEY: "AKIAUNITTEST", ENV_S3_SECRET_KEY: "unit-secret-1", ENV_S3_ENDPOINT: "minio:9000"}
    env = resolve_env(isvc["spec"]["predictor"]["model"]["env"], secret, K8S_S3_SECRET, "predictor")
    assert env["MLENGINE_SERVING_LOG_FLUSH_SECONDS"] == "3" and env[ENV_S3_ENDPOINT] == "minio:9000"
    assert env[ENV_S3_ACCESS_KEY] == "AKIAUNITTEST"
    text = json.dumps(manifests)
    assert "AKIAUNITTEST" not in text and "unit-secret-1" not in text
    assert predictor_serving_log(render_inference_service("x", "s3://b/p/m", runtime="tfserving")) is None


def test_image_registry_names_every_image_the_rehearsal_runs(tmp_path, monkeypatch):
    """--image-registry: the TFJob, the ServingRuntime and the pipeline-image containers all use it."""
    import docker
    import pytest
    import yaml

    from mlengine import __version__
    from mlengine.rehearsal import rehearse as rehearse_module

    registry = "registry.example.com/ml"
    images = rehearse_module.rehearsal_images(registry)
    assert images == {role: f"{registry}/mlengine-{role}:{__version__}" for role in ("trainer", "server", "pipeline")}
    with pytest.raises(rehearse_module.RehearsalError, match="--image-registry"):
        rehearse_module.rehearsal_images("HTTP://Bad")

    asked: list[str] = []

    class FakeImages:
        def get(self, name):
            asked.append(name)
            raise docker.errors.ImageNotFound(name)

    class FakeNetwork:
        name = "net"

        def remove(self):
            pass

    class FakeClient:
        images = FakeImages()

        class networks:
            @staticmethod
            def create(name, **kwargs):
                return FakeNetwork()

            @staticmethod
            def list(**kwargs):
                return []

            @staticmethod
            def get(name):
                return FakeNetwork()

        class containers:
            @staticmethod
            def list(**kwargs):
                return []

        class volumes:
            @staticmethod
            def list(**kwargs):
                return []

        def ping(self):
            return True

    monkeypatch.setattr(docker, "from_env", lambda **kwargs: FakeClient())
    options = rehearse_module.Options(out=tmp_path / "out", image_registry=registry)
    with pytest.raises(rehearse_module.RehearsalError, match=f"{registry}/mlengine-pipeline:{__version__} is not in"):
        rehearse_module.rehearse(options)
    assert asked == [images["pipeline"]]  # the S3 stand-in is built on the registry's pipeline image
    tfjob = yaml.safe_load((tmp_path / "out" / "manifests" / "tfjob.yaml").read_text())
    assert {spec["template"]["spec"]["containers"][0]["image"]
            for spec in tfjob["spec"]["tfReplicaSpecs"].values()} == {images["trainer"]}
    runtime = yaml.safe_load((tmp_path / "out" / "manifests" / "servingruntime.yaml").read_text())
    assert runtime["spec"]["containers"][0]["image"] == images["server"]
