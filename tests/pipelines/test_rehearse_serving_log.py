"""The rehearsal's monitor wiring without Docker: the predictor env the rendered InferenceService asks for."""

from __future__ import annotations

import json

from mlengine.components.deploy.cluster import render_inference_service
from mlengine.constants import ENV_S3_ACCESS_KEY, ENV_S3_ENDPOINT, ENV_S3_SECRET_KEY, K8S_S3_SECRET
from mlengine.pipelines.manifests import render_cluster_manifests
from mlengine.pipelines.rehearse import DATA_ROOT, MODEL_URI, predictor_serving_log, resolve_env


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
