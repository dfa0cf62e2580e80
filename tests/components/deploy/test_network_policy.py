"""The NetworkPolicy that closes TF Serving's gRPC port to other pods (manifests/base) and the pod label it selects."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.schema_utils import check_strict, inference_service_schema, validate

BASE = Path(__file__).resolve().parents[3] / "manifests" / "base"


def _base_doc(file_name: str) -> dict:
    return yaml.safe_load((BASE / file_name).read_text(encoding="utf-8"))


def _admitted_ports(policy: dict) -> set[int]:
    return {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}


def test_the_policy_in_base_is_the_rendered_one_and_kustomize_lists_it():
    from mlengine.components.deploy.cluster import render_tf_serving_network_policy

    assert _base_doc("networkpolicy-tfserving.yaml") == render_tf_serving_network_policy()
    assert "networkpolicy-tfserving.yaml" in _base_doc("kustomization.yaml")["resources"]


def test_the_policy_validates_against_the_kubernetes_client_model():
    from mlengine.components.deploy.cluster import render_tf_serving_network_policy

    policy = render_tf_serving_network_policy(namespace="team-a")
    check_strict(policy, "V1NetworkPolicy")
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["metadata"]["namespace"] == "team-a"
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["podSelector"]["matchLabels"]


def test_the_tf_serving_grpc_port_is_closed_and_its_rest_port_open():
    runtime = _base_doc("serving-runtime.yaml")
    args = runtime["spec"]["containers"][0]["args"]
    flags = dict(re.fullmatch(r"--(\w+)=(.*)", arg).groups() for arg in args)
    admitted = _admitted_ports(_base_doc("networkpolicy-tfserving.yaml"))
    assert int(flags["port"]) not in admitted  # gRPC: Predict, and ModelService's model config reload
    assert int(flags["rest_api_port"]) in admitted
    assert {8012, 9090} <= admitted  # Knative's queue-proxy: traffic and autoscaling metrics


def test_tf_serving_predictor_pods_carry_the_label_the_policy_selects_and_ours_do_not():
    from mlengine.components.deploy.cluster import render_inference_service, render_tf_serving_network_policy

    selected = render_tf_serving_network_policy()["spec"]["podSelector"]["matchLabels"]
    tf_serving = render_inference_service("taxi", "s3://mlpipeline/models/v1/tfserving", runtime="tfserving")
    ours = render_inference_service("taxi", "s3://mlpipeline/models/v1", runtime="ours")
    validate(tf_serving, inference_service_schema())
    assert tf_serving["spec"]["predictor"]["labels"].items() >= selected.items()
    assert not set(ours["spec"]["predictor"].get("labels", {}).items()) & set(selected.items())
