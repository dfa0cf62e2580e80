"""The cluster deploy path: rendered InferenceServices against the real CRD, rollout decisions, and
applying them against the fake Kubernetes API (Ready, failure and timeout paths)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlengine.components.deploy.cluster import (
    ISVC_PLURAL,
    OUR_RUNTIME,
    SERVING_RUNTIME,
    TF_SERVING_IMAGE,
    apply_inference_service,
    deploy_to_cluster,
    inference_service_done,
    render_inference_service,
    render_serving_runtime,
    stage_for_tf_serving,
)
from mlengine.components.deploy.report import render_deploy_markdown
from mlengine.components.deploy.rollout import ANNOTATION_CANARY, ANNOTATION_STABLE, plan_rollout
from mlengine.constants import K8S_NAMESPACE, K8S_S3_SECRET, K8S_SERVING_SERVICE_ACCOUNT
from mlengine.errors import MlengineError
from tests.k8s_fake import FakeKubeAPI, merge_patch
from tests.log_capture import logged_lines
from tests.schema_utils import errors, inference_service_schema

OLD = "s3://mlpipeline/models/run-1"
NEW = "s3://mlpipeline/models/run-2"
NEWER = "s3://mlpipeline/models/run-3"
MANIFEST_DIR = Path(__file__).resolve().parents[3] / "manifests" / "base"


def assert_valid(manifest: dict) -> None:
    """The CRD schema (closed: unknown fields fail) plus the rules only the webhook enforces."""
    assert errors(manifest, inference_service_schema()) == []
    predictor = manifest["spec"]["predictor"]
    assert predictor["minReplicas"] >= 0
    assert predictor["maxReplicas"] >= max(1, predictor["minReplicas"])
    if "canaryTrafficPercent" in predictor:
        assert 0 <= predictor["canaryTrafficPercent"] <= 100
    for section in predictor["model"].get("resources", {}).values():
        assert all(isinstance(v, str) for v in section.values())


# --- rendering -----------------------------------------------------------------------------------
def test_default_manifest_is_our_server_image_in_serverless_mode():
    manifest = render_inference_service("taxi-fare", OLD)
    assert_valid(manifest)
    assert manifest["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
    model = manifest["spec"]["predictor"]["model"]
    assert model["runtime"] == OUR_RUNTIME and model["modelFormat"] == {"name": "mlengine"}
    assert model["storageUri"] == OLD  # the model directory itself, no TF Serving layout
    runtime = render_serving_runtime(image="registry.example.com/ml/mlengine-server:0.1.0")
    assert runtime["kind"] == "ServingRuntime" and runtime["metadata"]["name"] == OUR_RUNTIME
    assert {"name": "mlengine", "version": "1", "autoSelect": True} in runtime["spec"]["supportedModelFormats"]
    container = runtime["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/ml/mlengine-server:0.1.0"
    assert container["args"] == ["--model_name={{.Name}}", "--http_port=8080"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}


def test_serve_takes_kserve_flag_spellings():
    import argparse

    from mlengine.components.deploy.cli import add_cli

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", "/mnt/models", "--model_name=taxi-fare", "--http_port=8080"])
    assert (args.name, args.port) == ("taxi-fare", 8080)


def test_tfserving_manifest_scales_to_zero_on_the_tensorflow_runtime():
    manifest = render_inference_service("taxi-fare", OLD, runtime="tfserving")
    assert_valid(manifest)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["namespace"] == K8S_NAMESPACE
    predictor = manifest["spec"]["predictor"]
    assert predictor["minReplicas"] == 0 and predictor["maxReplicas"] == 3
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] == 8
    assert predictor["serviceAccountName"] == K8S_SERVING_SERVICE_ACCOUNT
    assert "canaryTrafficPercent" not in predictor
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "tensorflow"} and model["runtime"] == SERVING_RUNTIME
    assert model["storageUri"] == OLD and model["protocolVersion"] == "v1"
    assert list(manifest["spec"]) == ["predictor"]  # raw features in: no transformer


def test_options_render_valid_manifests_with_string_quantities():
    manifest = render_inference_service(
        "taxi", NEW, namespace="team-a", canary_traffic_percent=20, min_replicas=1, max_replicas=5,
        scale_metric="rps", scale_target=50, runtime=None, resources={"requests": {"cpu": 0.5, "memory": "512Mi"},
                                                                      "limits": {"cpu": 2}},
        annotations={ANNOTATION_STABLE: OLD})
    assert_valid(manifest)
    predictor = manifest["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20 and predictor["scaleMetric"] == "rps"
    assert predictor["model"]["resources"] == {"requests": {"cpu": "0.5", "memory": "512Mi"}, "limits": {"cpu": "2"}}
    assert "runtime" not in predictor["model"]
    assert manifest["metadata"]["annotations"] == {ANNOTATION_STABLE: OLD,
                                                   "serving.kserve.io/deploymentMode": "Knative"}


def test_the_schema_check_catches_a_typo():
    manifest = render_inference_service("taxi", OLD)
    manifest["spec"]["predictor"]["model"]["storageURI"] = manifest["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in e for e in errors(manifest, inference_service_schema()))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Taxi_Fare"}, "lowercase"),
    ({"name": "x" * 46}, "at most 45"),
    ({"storage_uri": "/local/model"}, "storage URI"),
    ({"storage_uri": "s3://"}, "storage URI"),
    ({"canary_traffic_percent": 101}, "0..100"),
    ({"canary_traffic_percent": -1}, "0..100"),
    ({"min_replicas": -1}, "min_replicas"),
    ({"max_replicas": 0}, "max_replicas"),
    ({"scale_metric": "latency"}, "scale_metric"),
    ({"scale_target": 0}, "scale_target"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "not a Kubernetes quantity"),
    ({"resources": {"requets": {"cpu": "1"}}}, "'requests' or 'limits'"),
])
def test_invalid_render_arguments_fail_with_one_line(kwargs, message):
    arguments = {"name": "taxi", "storage_uri": OLD} | kwargs
    with pytest.raises(MlengineError, match=message):
        render_inference_service(arguments.pop("name"), arguments.pop("storage_uri"), **arguments)


# --- rollout decisions --------------------------------------------------------------------------------
def stable_isvc(uri: str = OLD) -> dict:
    return render_inference_service("taxi", uri, annotations={ANNOTATION_STABLE: uri})


def after(decision, existing: dict | None) -> dict:
    """The object the API server stores once every step of the decision is applied."""
    obj = existing
    for step in decision.steps:
        obj = step.body if step.is_create else merge_patch(obj, step.body)
    return obj


def canary_isvc(percent: int = 10) -> dict:
    decision = plan_rollout(stable_isvc(OLD), NEW, True, percent, None)
    return after(decision, stable_isvc(OLD))


def test_first_deploy_of_a_blessed_model_takes_all_traffic():
    decision = plan_rollout(None, OLD, True, 10, None, name="taxi")
    assert decision.action == "create"
    assert decision.traffic == {OLD: 100}
    (step,) = decision.steps
    assert step.is_create
    assert_valid(step.body)
    assert "canaryTrafficPercent" not in step.body["spec"]["predictor"]


def test_first_deploy_of_an_unblessed_model_does_nothing():
    decision = plan_rollout(None, OLD, False, 10, None, name="taxi")
    assert decision.action == "skip" and decision.steps == [] and decision.traffic == {}


def test_a_new_blessed_model_starts_a_canary():
    existing = stable_isvc(OLD)
    decision = plan_rollout(existing, NEW, True, 10, None)
    assert decision.action == "canary"
    assert decision.traffic == {OLD: 90, NEW: 10}
    result = after(decision, existing)
    assert_valid(result)
    assert result["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert result["spec"]["predictor"]["model"]["storageUri"] == NEW
    assert result["metadata"]["annotations"][ANNOTATION_STABLE] == OLD
    assert result["metadata"]["annotations"][ANNOTATION_CANARY] == NEW


@pytest.mark.parametrize(("blessed", "uri", "reason"), [(False, NEW, "not blessed"), (True, OLD, "already serving")])
def test_an_unblessed_or_unchanged_model_keeps_the_stable_one(blessed, uri, reason):
    decision = plan_rollout(stable_isvc(OLD), uri, blessed, 10, None)
    assert decision.action == "keep" and not decision.steps and reason in decision.reason
    assert decision.traffic == {OLD: 100}


def test_canary_percent_100_replaces_directly():
    existing = stable_isvc(OLD)
    decision = plan_rollout(existing, NEW, True, 100, None)
    assert decision.action == "replace" and decision.traffic == {NEW: 100}
    result = after(decision, existing)
    assert_valid(result)
    assert result["spec"]["predictor"]["model"]["storageUri"] == NEW
    assert "canaryTrafficPercent" not in result["spec"]["predictor"]


def test_a_canary_that_passed_is_promoted():
    existing = canary_isvc()
    decision = plan_rollout(existing, NEW, True, 10, True)
    assert decision.action == "promote" and decision.traffic == {NEW: 100}
    result = after(decision, existing)
    assert_valid(result)
    assert "canaryTrafficPercent" not in result["spec"]["predictor"]
    assert result["spec"]["predictor"]["model"]["storageUri"] == NEW
    assert result["metadata"]["annotations"][ANNOTATION_STABLE] == NEW
    assert ANNOTATION_CANARY not in result["metadata"]["annotations"]


def test_a_canary_that_failed_is_rolled_back_to_the_stable_model():
    existing = canary_isvc()
    decision = plan_rollout(existing, NEW, True, 10, False)
    assert decision.action == "rollback" and decision.traffic == {OLD: 100}
    result = after(decision, existing)
    assert_valid(result)
    assert result["spec"]["predictor"]["model"]["storageUri"] == OLD
    assert "canaryTrafficPercent" not in result["spec"]["predictor"]
    assert ANNOTATION_CANARY not in result["metadata"]["annotations"]


def test_after_a_promote_or_rollback_a_newer_blessed_model_starts_its_own_canary():
    for ok, stable in ((True, NEW), (False, OLD)):
        existing = canary_isvc()
        decision = plan_rollout(existing, NEWER, True, 25, ok)
        assert [s.action for s in decision.steps] == [("promote" if ok else "rollback"), "canary"]
        assert decision.traffic == {stable: 75, NEWER: 25}
        result = after(decision, existing)
        assert_valid(result)
        assert result["spec"]["predictor"]["model"]["storageUri"] == NEWER
        assert result["spec"]["predictor"]["canaryTrafficPercent"] == 25
        assert result["metadata"]["annotations"][ANNOTATION_STABLE] == stable


def test_an_unevaluated_canary_is_held():
    existing = canary_isvc(30)
    decision = plan_rollout(existing, NEWER, True, 10, None)
    assert decision.action == "hold" and not decision.steps
    assert decision.traffic == {OLD: 70, NEW: 30}
    assert "not evaluated yet" in decision.reason and "waits" in decision.reason


def test_a_hand_made_canary_without_our_annotations_rolls_back_to_zero_percent():
    existing = render_inference_service("taxi", NEW, canary_traffic_percent=40)
    decision = plan_rollout(existing, NEW, True, 10, False)
    assert decision.action == "rollback"
    result = after(decision, existing)
    assert_valid(result)
    assert result["spec"]["predictor"]["canaryTrafficPercent"] == 0
    # the next run still sees the (now 0%) canary and can promote it once it is fixed
    promoted = plan_rollout(result, NEW, True, 10, True)
    assert promoted.action == "promote"
    assert "canaryTrafficPercent" not in after(promoted, result)["spec"]["predictor"]


@pytest.mark.parametrize("percent", [0, 101, True, 5.5])
def test_invalid_canary_percent(percent):
    with pytest.raises(MlengineError, match=r"1\.\.100"):
        plan_rollout(None, OLD, True, percent, None, name="taxi")


def test_deploy_report_markdown():
    decision = plan_rollout(stable_isvc(OLD), NEW, True, 10, None)
    text = render_deploy_markdown(decision, {"ready": True, "url": "http://taxi.kubeflow-user.example.com"})
    assert "# Deployment of `taxi`" in text and "**Action: canary**" in text
    assert f"| {OLD} | stable | 90 |" in text and f"| {NEW} | canary | 10 |" in text
    assert "start a 10% canary" in text and "http://taxi.kubeflow-user.example.com" in text
    kept = render_deploy_markdown(plan_rollout(stable_isvc(OLD), NEW, False, 10, None))
    assert "**Action: keep**" in kept and "No change was made to the cluster." in kept


# --- waiting ---------------------------------------------------------------------------------------------
def ready_status(generation: int = 1, url: str = "http://taxi.kubeflow-user.example.com") -> dict:
    return {"observedGeneration": generation, "url": url,
            "conditions": [{"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "True"}],
            "modelStatus": {"transitionStatus": "UpToDate"}}


def pending_status(generation: int = 1) -> dict:
    return {"observedGeneration": generation, "conditions": [
        {"type": "PredictorReady", "status": "False", "reason": "RevisionMissing",
         "message": "Configuration is waiting"},
        {"type": "Ready", "status": "False", "reason": "RevisionMissing"}]}


def failed_status() -> dict:
    return {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}],
            "modelStatus": {"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {
                "reason": "ModelLoadFailed", "message": "Could not find a version of servable taxi under /mnt/models"}}}


def obj_with(status: dict | None, generation: int = 1) -> dict:
    return {"metadata": {"name": "taxi", "generation": generation}, "status": status or {}}


def test_done_function_states():
    done = inference_service_done()
    assert done(obj_with(ready_status())) == (True, True, "Ready")
    assert done(obj_with(None))[:2] == (False, False)
    finished, ok, reason = done(obj_with(pending_status()))
    assert not finished and "RevisionMissing" in reason
    finished, ok, reason = done(obj_with(failed_status()))
    assert finished and not ok
    assert "BlockedByFailedLoad" in reason and "Could not find a version" in reason
    # Ready for an older generation is not ready yet
    assert done(obj_with(ready_status(generation=1), generation=2))[0] is False
    revision_failed = {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": "Container failed: OOMKilled"}]}
    finished, ok, reason = done(obj_with(revision_failed))
    assert (finished, ok) == (True, False) and "RevisionFailed: Container failed: OOMKilled" in reason


# --- applying against the fake API server ---------------------------------------------------------------------
@pytest.fixture
def fake():
    with FakeKubeAPI() as api:
        # the fake's watch streams are close-delimited, which urllib3 hands over only when a read
        # buffer fills or the window ends: poll instead (CustomResource.wait's fallback), so each
        # wait returns as soon as the status changes
        api.watch_supported = False
        yield api


def controller(fake: FakeKubeAPI, statuses: list[dict]):
    """Play a KServe controller: after a create, walk the object through ``statuses``."""
    def on_create(obj):
        fake.script(ISVC_PLURAL, obj["metadata"]["name"], statuses, interval=0.1)

    fake.on_create.append(on_create)


def test_first_deploy_is_created_and_waits_for_ready(fake, tmp_path):
    controller(fake, [pending_status(), ready_status()])
    decision = plan_rollout(None, OLD, True, 10, None, name="taxi")
    messages = []
    with logged_lines("mlengine.components", messages.append):  # the rollout's lines and the wait's
        result = apply_inference_service(decision, api=fake.custom_objects_api(), timeout=20, poll_interval=0.1,
                                         name_file=str(tmp_path / "isvc-name"))
    assert result == {"name": "taxi", "namespace": K8S_NAMESPACE, "action": "create", "ready": True,
                      "url": "http://taxi.kubeflow-user.example.com", "traffic": {OLD: 100}}
    stored = fake.find(ISVC_PLURAL, "taxi")
    assert_valid({k: v for k, v in stored.items() if k != "status"})
    assert (tmp_path / "isvc-name").read_text() == "taxi"
    assert messages[0].startswith("deploy taxi: create: create taxi serving") and messages[-1] == "deploy taxi: Ready"
    # a restarted launcher re-attaches instead of creating a second one
    again = apply_inference_service(decision, api=fake.custom_objects_api(), timeout=5, poll_interval=0.1,
                                    name_file=str(tmp_path / "isvc-name"))
    assert again["ready"] and fake.count("POST", ISVC_PLURAL) == 1


def test_a_model_that_fails_to_load_surfaces_the_reason(fake):
    controller(fake, [pending_status(), failed_status()])
    decision = plan_rollout(None, OLD, True, 10, None, name="taxi")
    with pytest.raises(MlengineError) as caught:
        apply_inference_service(decision, api=fake.custom_objects_api(), timeout=20, poll_interval=0.1)
    message = str(caught.value)
    assert "inferenceservices/taxi" in message and "BlockedByFailedLoad" in message
    assert "ModelLoadFailed: Could not find a version of servable taxi" in message


def test_waiting_is_bounded(fake):
    controller(fake, [pending_status()])
    decision = plan_rollout(None, OLD, True, 10, None, name="taxi")
    with pytest.raises(MlengineError, match=r"timed out after 2 s .*RevisionMissing"):
        apply_inference_service(decision, api=fake.custom_objects_api(), timeout=2, poll_interval=0.1)


def test_canary_promote_and_rollback_runs_against_the_api(fake):
    api = fake.custom_objects_api()
    controller(fake, [ready_status()])
    quiet = {"api": api, "timeout": 20, "poll_interval": 0.1}
    decision, result = deploy_to_cluster(OLD, name="taxi", blessed=True, canary_percent=10, **quiet)
    assert decision.action == "create" and result["ready"]

    def patched(statuses):  # the controller reacts to a spec change: not ready, then ready again
        fake.set_status(ISVC_PLURAL, "taxi", pending_status())
        fake.script(ISVC_PLURAL, "taxi", statuses, interval=0.2)

    patched([ready_status()])
    decision, result = deploy_to_cluster(NEW, name="taxi", blessed=True, canary_percent=10, **quiet)
    assert decision.action == "canary" and result["ready"] and result["traffic"] == {OLD: 90, NEW: 10}
    stored = fake.find(ISVC_PLURAL, "taxi")
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert stored["spec"]["predictor"]["model"]["storageUri"] == NEW

    patched([ready_status()])
    decision, result = deploy_to_cluster(NEWER, name="taxi", blessed=False, canary_percent=10,
                                         previous_canary_ok=False, **quiet)
    assert decision.action == "rollback" and result["traffic"] == {OLD: 100}
    stored = fake.find(ISVC_PLURAL, "taxi")
    assert stored["spec"]["predictor"]["model"]["storageUri"] == OLD
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert_valid({k: v for k, v in stored.items() if k != "status"})
    assert fake.count("POST", ISVC_PLURAL) == 1 and fake.count("PATCH", ISVC_PLURAL) == 2

    # a patch whose revision fails surfaces the failure
    fake.set_status(ISVC_PLURAL, "taxi", pending_status())
    fake.script(ISVC_PLURAL, "taxi", [failed_status()], interval=0.2)
    with pytest.raises(MlengineError, match="BlockedByFailedLoad"):
        deploy_to_cluster(NEW, name="taxi", blessed=True, canary_percent=10, **quiet)


# --- staging and the manifests ----------------------------------------------------------------------------------
def test_stage_for_tf_serving_makes_a_version_directory(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "serving" / "variables").mkdir(parents=True)
    (model_dir / "serving" / "saved_model.pb").write_bytes(b"pb")
    (model_dir / "serving" / "variables" / "variables.index").write_bytes(b"ix")
    out = stage_for_tf_serving(model_dir, tmp_path / "staged")
    assert (out / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert (out / "1" / "variables" / "variables.index").is_file()
    with pytest.raises(MlengineError, match="no SavedModel"):
        stage_for_tf_serving(tmp_path / "nothing", tmp_path / "x")


def test_serving_manifests_wire_the_service_account_secret_and_runtime():
    documents = {}
    for path in sorted(MANIFEST_DIR.glob("serving-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            documents[doc["kind"]] = doc
    account, secret, runtime = documents["ServiceAccount"], documents["Secret"], documents["ServingRuntime"]
    assert account["metadata"]["name"] == K8S_SERVING_SERVICE_ACCOUNT
    assert account["secrets"] == [{"name": K8S_S3_SECRET}]
    assert secret["metadata"]["name"] == K8S_S3_SECRET
    assert "data" not in secret and "stringData" not in secret  # credentials never live in YAML
    annotations = secret["metadata"]["annotations"]
    assert {"serving.kserve.io/s3-endpoint", "serving.kserve.io/s3-usehttps", "serving.kserve.io/s3-region"} <= set(
        annotations)
    assert all(isinstance(v, str) for v in annotations.values())
    assert runtime["metadata"]["name"] == SERVING_RUNTIME
    assert runtime["spec"]["containers"][0]["image"] == TF_SERVING_IMAGE
    assert not TF_SERVING_IMAGE.endswith(":latest")
    assert {"name": "tensorflow", "version": "2", "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    namespaces = {doc["metadata"]["namespace"] for doc in documents.values()}
    assert namespaces == {K8S_NAMESPACE}


def test_serving_log_goes_to_the_pipeline_bucket_with_credentials_from_the_secret():
    from mlengine.components.deploy.cluster import render_inference_service, serving_log_uri_for
    from mlengine.constants import K8S_S3_SECRET

    isvc = render_inference_service("taxi", "s3://mlpipeline/mlengine/models/v2")
    env = {item["name"]: item for item in isvc["spec"]["predictor"]["model"]["env"]}
    assert env["MLENGINE_SERVING_LOG_URI"]["value"] == "s3://mlpipeline/mlengine/serving-log/taxi/"
    assert serving_log_uri_for("s3://mlpipeline/mlengine/models/v2", "taxi") == env["MLENGINE_SERVING_LOG_URI"]["value"]
    for name in ("MLENGINE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"] == K8S_S3_SECRET
    tfserving = render_inference_service("taxi", "s3://mlpipeline/mlengine/models/v2/tfserving", runtime="tfserving")
    assert "env" not in tfserving["spec"]["predictor"]["model"]  # TF Serving writes no serving log
    assert "env" not in render_inference_service("taxi", "pvc://claim/model")["spec"]["predictor"]["model"]
    assert "env" not in render_inference_service("taxi", "s3://b/m", serving_log_uri=None)["spec"]["predictor"]["model"]
