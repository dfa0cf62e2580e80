"""`mlengine manifests`: every rendered resource validates against the real upstream schemas."""

import yaml

from mlengine.cli import main
from tests import schema_utils

ROLES = {"Chief", "PS", "Worker"}


def _render(tmp_path, *extra):
    assert main(["manifests", "--out", str(tmp_path), *extra]) == 0
    return {path.name: yaml.safe_load(path.read_text()) for path in tmp_path.glob("*.yaml")}


def test_rendered_resources_validate_against_closed_schemas(tmp_path):
    docs = _render(tmp_path)
    assert set(docs) == {"tfjob.yaml", "trainjob.yaml", "katib-experiment.yaml", "katib-experiment-trainjob.yaml",
                         "trainingruntime-mlengine-tensorflow-ps1.yaml",
                         "trainingruntime-mlengine-tensorflow-allreduce.yaml",
                         "clustertrainingruntime-mlengine-tensorflow-ps1.yaml",
                         "clustertrainingruntime-mlengine-tensorflow-allreduce.yaml",
                         "inferenceservice.yaml", "inferenceservice-canary.yaml", "servingruntime.yaml"}
    for name, doc in docs.items():
        if doc["kind"] != "ServingRuntime":  # tests/components/deploy/test_serving_runtime_schema.py
            assert schema_utils.errors(doc, schema_utils.schema_for(doc)) == [], name
    trial_tfjob = docs["katib-experiment.yaml"]["spec"]["trialTemplate"]["trialSpec"]
    assert schema_utils.errors(trial_tfjob, schema_utils.tfjob_schema()) == []
    # the TrainJob trials: valid TrainJobs against the runtime the manifests ship, watched by the StdOut collector
    template = docs["katib-experiment-trainjob.yaml"]["spec"]["trialTemplate"]
    assert template["trialSpec"]["kind"] == "TrainJob"
    assert schema_utils.errors(template["trialSpec"], schema_utils.trainjob_schema()) == []
    runtime = template["trialSpec"]["spec"]["runtimeRef"]["name"]
    assert f"trainingruntime-{runtime}.yaml" in docs
    assert template["successCondition"] == 'status.conditions.#(type=="Complete")#|#(status=="True")#'
    assert template["primaryContainerName"] == "node"  # one worker: all-reduce runtime, worker 0 prints rmse=
    assert template["primaryPodLabels"] == {"jobset.sigs.k8s.io/replicatedjob-name": "worker",
                                            "batch.kubernetes.io/job-completion-index": "0"}
    spec = docs["katib-experiment-trainjob.yaml"]["spec"]
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    for name in ("inferenceservice.yaml", "inferenceservice-canary.yaml"):
        assert docs[name]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    standard = _render(tmp_path / "standard", "--deployment-mode", "Standard")
    canary = standard["inferenceservice-canary.yaml"]
    assert canary["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert schema_utils.errors(canary, schema_utils.inference_service_schema()) == []


def test_webhook_only_rules_hold(tmp_path):
    docs = _render(tmp_path, "--workers", "3", "--ps", "2", "--canary-traffic-percent", "25")
    replicas = docs["tfjob.yaml"]["spec"]["tfReplicaSpecs"]
    assert set(replicas) <= ROLES
    assert replicas["Worker"]["replicas"] == 3 and replicas["PS"]["replicas"] == 2
    for spec in replicas.values():
        assert spec["restartPolicy"] in {"Always", "OnFailure", "Never", "ExitCode"}
        for container in spec["template"]["spec"]["containers"]:
            assert not container["image"].endswith(":latest")
            for quantities in container.get("resources", {}).values():
                assert all(isinstance(value, str) for value in quantities.values())
    stable = docs["inferenceservice.yaml"]["spec"]["predictor"]
    canary = docs["inferenceservice-canary.yaml"]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in stable
    assert canary["canaryTrafficPercent"] == 25
    assert stable["minReplicas"] == 0  # scale to zero
    assert stable["model"]["storageUri"] != canary["model"]["storageUri"]
    params = docs["katib-experiment.yaml"]["spec"]["parameters"]
    for param in params:
        for key in ("min", "max", "step"):
            if key in param["feasibleSpace"]:
                assert isinstance(param["feasibleSpace"][key], str)
    assert "nbuckets" in {param["name"] for param in params}


def test_a_typo_in_a_rendered_field_is_caught(tmp_path):
    docs = _render(tmp_path)
    broken = docs["inferenceservice.yaml"]
    broken["spec"]["predictor"]["model"]["storageURI"] = broken["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in problem for problem in
               schema_utils.errors(broken, schema_utils.inference_service_schema()))


def test_base_kustomization_lists_existing_files_without_secrets():
    from pathlib import Path

    base = Path(__file__).resolve().parents[2] / "manifests" / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        docs = list(yaml.safe_load_all((base / resource).read_text()))
        assert docs, resource
        for doc in docs:
            if doc and doc.get("kind") == "Secret":
                assert "data" not in doc and "stringData" not in doc, resource
