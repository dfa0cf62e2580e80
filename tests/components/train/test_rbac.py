"""The training RBAC manifest: the launcher's ServiceAccount may drive TFJobs and read their pods, no more."""

from pathlib import Path

import yaml

from mlengine.constants import K8S_NAMESPACE, K8S_SERVICE_ACCOUNT

MANIFEST = Path(__file__).resolve().parents[3] / "manifests" / "base" / "rbac-training.yaml"


def test_rbac_grants_the_launchers_their_resources_and_pod_access_to_the_pipeline_account():
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}
    assert set(docs) == {"ServiceAccount", "Role", "RoleBinding"}
    assert docs["ServiceAccount"]["metadata"] == {**docs["ServiceAccount"]["metadata"],
                                                   "name": K8S_SERVICE_ACCOUNT, "namespace": K8S_NAMESPACE}
    rules = {(group, resource): set(rule["verbs"]) for rule in docs["Role"]["rules"]
             for group in rule["apiGroups"] for resource in rule["resources"]}
    assert rules[("kubeflow.org", "tfjobs")] == {"create", "get", "list", "watch", "patch", "delete"}
    assert rules[("trainer.kubeflow.org", "trainjobs")] == {"create", "get", "list", "watch", "patch", "delete"}
    assert rules[("trainer.kubeflow.org", "trainingruntimes")] == {"get", "list"}  # the runtime is installed
    assert rules[("kubeflow.org", "experiments")] == {"create", "get", "list", "watch", "delete"}
    assert rules[("kubeflow.org", "trials")] == {"get", "list", "watch"}  # the launcher reads trial results
    assert rules[("serving.kserve.io", "inferenceservices")] == {"create", "get", "list", "watch", "patch"}
    assert ("serving.kserve.io", "inferenceservices/status") not in rules  # status is read through get
    assert rules[("", "pods")] == {"get", "list", "watch"}
    assert rules[("", "pods/log")] == {"get", "list", "watch"}
    assert all("*" not in verbs for verbs in rules.values())
    binding = docs["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": docs["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": K8S_SERVICE_ACCOUNT,
                                    "namespace": K8S_NAMESPACE}]
