"""KServe's current mode names: Knative (default, canaryTrafficPercent) and Standard (HPA/KEDA, spec.canary[])."""

from __future__ import annotations

import pytest

from mlengine.components.deploy.cluster import (
    check_deployment_mode,
    deployment_mode_of,
    render_inference_service,
)
from mlengine.components.deploy.rollout import plan_rollout, read_rollout_state
from mlengine.errors import MlengineError
from tests import schema_utils
from tests.k8s_fake import merge_patch

STABLE = "s3://mlpipeline/models/v1"
NEW = "s3://mlpipeline/models/v2"


def _valid(isvc: dict) -> dict:
    assert schema_utils.errors(isvc, schema_utils.inference_service_schema()) == []
    return isvc


def test_knative_is_the_default_and_the_old_spellings_are_written_in_the_new_names():
    isvc = _valid(render_inference_service("taxi", STABLE, canary_traffic_percent=10))
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert isvc["spec"]["predictor"]["minReplicas"] == 0 and isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert check_deployment_mode("Serverless") == "Knative" and check_deployment_mode("RawDeployment") == "Standard"
    legacy = render_inference_service("taxi", STABLE, deployment_mode="RawDeployment")
    assert legacy["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    with pytest.raises(MlengineError, match=r"Knative .* or Standard"):
        render_inference_service("taxi", STABLE, deployment_mode="ModelMesh")
    assert deployment_mode_of({}) == "Standard"  # KServe's own default when the annotation is absent


@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
def test_standard_keeps_a_replica_and_scales_on_cpu(autoscaler):
    isvc = _valid(render_inference_service("taxi", STABLE, deployment_mode="Standard", autoscaler_class=autoscaler,
                                           canary_traffic_percent=10))
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] == autoscaler
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 1  # no scale from zero without Knative's activator
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 80)
    assert "canaryTrafficPercent" not in predictor  # Standard's canary is spec.canary[]
    with pytest.raises(MlengineError, match="autoscaler_class"):
        render_inference_service("taxi", STABLE, deployment_mode="Standard", autoscaler_class="kpa")


def _apply(isvc: dict, decision) -> dict:
    for step in decision.steps:
        isvc = step.body if step.is_create else merge_patch(isvc, step.body)
    return isvc


def test_standard_canary_rollout_then_promote():
    stable = _apply(None, plan_rollout(None, STABLE, True, 10, None, name="taxi", deployment_mode="Standard"))
    _valid(stable)
    decision = plan_rollout(stable, NEW, True, 20, None)
    assert decision.action == "canary" and decision.traffic == {STABLE: 80, NEW: 20}
    with_canary = _valid(_apply(stable, decision))
    assert with_canary["spec"]["predictor"] == stable["spec"]["predictor"]  # the stable side is untouched
    [canary] = with_canary["spec"]["canary"]
    assert canary["trafficPercent"] == 20 and canary["predictor"]["model"]["storageUri"] == NEW
    state = read_rollout_state(with_canary)
    assert (state["canary_active"], state["stable"], state["canary"], state["canary_percent"]) == (True, STABLE, NEW,
                                                                                                   20)
    assert plan_rollout(with_canary, NEW, True, 20, None).action == "hold"
    promoted = _valid(_apply(with_canary, plan_rollout(with_canary, NEW, True, 20, True)))
    assert "canary" not in promoted["spec"]
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == NEW
    assert promoted["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_standard_rollback_removes_the_canary_and_keeps_the_stable_model():
    stable = _apply(None, plan_rollout(None, STABLE, True, 10, None, name="taxi", deployment_mode="Standard"))
    with_canary = _apply(stable, plan_rollout(stable, NEW, True, 10, None))
    decision = plan_rollout(with_canary, NEW, False, 10, False)
    assert decision.action == "rollback"
    rolled_back = _valid(_apply(with_canary, decision))
    assert "canary" not in rolled_back["spec"]
    assert rolled_back["spec"]["predictor"]["model"]["storageUri"] == STABLE
    assert read_rollout_state(rolled_back)["canary_active"] is False


def test_a_knative_service_keeps_its_canary_traffic_percent():
    stable = _apply(None, plan_rollout(None, STABLE, True, 10, None, name="taxi"))
    with_canary = _valid(_apply(stable, plan_rollout(stable, NEW, True, 10, None)))
    assert with_canary["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert with_canary["spec"]["predictor"]["model"]["storageUri"] == NEW and "canary" not in with_canary["spec"]
