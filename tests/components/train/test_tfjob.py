"""Rendered TFJobs against the real TFJob v1 CRD schema (closed) and the operator's webhook rules."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from mlengine.components.shared.distributed import Topology
from mlengine.components.shared.tfjob import CONTAINER_NAME, RESTART_POLICIES, quantity, render_tfjob
from mlengine.components.train.cluster import tfjob_done, tfjob_name_for, training_args
from mlengine.components.train.trainer import TrainConfig
from mlengine.constants import K8S_S3_SECRET, K8S_SERVICE_ACCOUNT, TRAINER_IMAGE
from mlengine.errors import MlengineError
from tests.schema_utils import errors, tfjob_schema, validate

ARGS = ["--train-dir", "s3://bucket/data/train", "--eval-dir", "s3://bucket/data/eval",
        "--transform-dir", "s3://bucket/transform", "--model-dir", "s3://bucket/model", "--epochs", "2"]
REPLICA_KEYS = {"Chief", "PS", "Worker"}
CLAIM = "mlengine-shared"


def check_webhook_rules(manifest: dict) -> None:
    """What the schema cannot say: replica keys, restart policies, string quantities, no literal secrets."""
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert set(specs) <= REPLICA_KEYS
    for spec in specs.values():
        assert spec["restartPolicy"] in RESTART_POLICIES
        assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == CONTAINER_NAME
        assert not container["image"].endswith(":latest")
        for section in container["resources"].values():
            assert all(isinstance(v, str) for v in section.values())
        for env in container["env"]:
            if "SECRET" in env["name"] or "ACCESS_KEY" in env["name"]:
                assert "value" not in env
                assert env["valueFrom"]["secretKeyRef"]["name"] == K8S_S3_SECRET
    if "Chief" in specs:
        assert specs["Chief"]["replicas"] == 1


@pytest.mark.parametrize("topology, expected", [
    (Topology(workers=1), {"Worker": 1}),
    (Topology(workers=2, ps=1), {"Chief": 1, "Worker": 2, "PS": 1}),
    (Topology(workers=2, strategy="all_reduce"), {"Worker": 2}),
    (Topology(workers=3, ps=2, strategy="parameter_server"), {"Chief": 1, "Worker": 3, "PS": 2}),
])
def test_rendered_topologies_validate_against_the_crd(topology, expected):
    manifest = render_tfjob("train-demo", ARGS, topology, shared_claim=CLAIM)
    validate(manifest, tfjob_schema())
    check_webhook_rules(manifest)
    specs = manifest["spec"]["tfReplicaSpecs"]
    assert {kind: spec["replicas"] for kind, spec in specs.items()} == expected
    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    assert manifest["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 3}
    container = next(iter(specs.values()))["template"]["spec"]["containers"][0]
    assert container["image"] == TRAINER_IMAGE
    assert container["command"] == ["python", "-m", "mlengine.components.train.task"]
    assert container["args"][:len(ARGS)] == ARGS
    assert container["args"][container["args"].index("--strategy") + 1] == topology.resolved_strategy
    assert next(iter(specs.values()))["template"]["spec"]["serviceAccountName"] == K8S_SERVICE_ACCOUNT


def test_resources_are_strings_per_replica_and_numbers_are_converted():
    manifest = render_tfjob("train-demo", ARGS, Topology(workers=2, ps=1), shared_claim=CLAIM,
                            resources={"PS": {"requests": {"cpu": 0.5, "memory": "1Gi"}},
                                       "Worker": {"cpu": 2, "memory": "4Gi"}})
    validate(manifest, tfjob_schema())
    specs = manifest["spec"]["tfReplicaSpecs"]
    ps = specs["PS"]["template"]["spec"]["containers"][0]["resources"]
    worker = specs["Worker"]["template"]["spec"]["containers"][0]["resources"]
    assert ps == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    assert worker == {"requests": {"cpu": "2", "memory": "4Gi"}}
    assert quantity(1.5) == "1500m" and quantity("250m") == "250m" and quantity(3.0) == "3"
    with pytest.raises(MlengineError, match="not a Kubernetes quantity"):
        render_tfjob("train-demo", ARGS, Topology(), resources={"cpu": "two"})


def test_numeric_quantity_would_fail_the_schema():
    """Why quantities are converted: the CRD refuses a bare float."""
    manifest = render_tfjob("train-demo", ARGS, Topology())
    broken = copy.deepcopy(manifest)
    broken["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": 0.5}}
    assert errors(broken, tfjob_schema())


@pytest.mark.parametrize("mutate, path", [
    (lambda m: m["spec"].update(tfReplicaSpec=m["spec"].pop("tfReplicaSpecs")), "spec"),
    (lambda m: m["spec"]["runPolicy"].update(cleanPodPolicyy="All"), "runPolicy"),
    (lambda m: m["spec"]["tfReplicaSpecs"]["Worker"].update(replica=2), "Worker"),
    (lambda m: m["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].update(imagePull="x"),
     "containers"),
])
def test_a_typo_field_fails_validation(mutate, path):
    manifest = render_tfjob("train-demo", ARGS, Topology(workers=1))
    mutate(manifest)
    with pytest.raises(jsonschema.ValidationError):
        validate(manifest, tfjob_schema())
    assert any(path in problem for problem in errors(manifest, tfjob_schema()))


def test_webhook_rules_catch_a_lower_case_replica_key():
    manifest = render_tfjob("train-demo", ARGS, Topology(workers=2, ps=1), shared_claim=CLAIM)
    manifest["spec"]["tfReplicaSpecs"]["worker"] = manifest["spec"]["tfReplicaSpecs"].pop("Worker")
    validate(manifest, tfjob_schema())  # the schema alone lets it through...
    with pytest.raises(AssertionError):
        check_webhook_rules(manifest)  # ...our rule does not


@pytest.mark.parametrize("kwargs, message", [
    ({"image": "ghcr.io/mlengine/mlengine-trainer:latest"}, "never :latest"),
    ({"image": "ghcr.io/mlengine/mlengine-trainer"}, "pin a version tag"),
    ({"restart_policy": "Sometimes"}, "restart_policy"),
    ({"clean_pod_policy": "Some"}, "clean_pod_policy"),
    ({"backoff_limit": -1}, "backoff_limit"),
])
def test_bad_render_options_are_refused(kwargs, message):
    with pytest.raises(MlengineError, match=message):
        render_tfjob("train-demo", ARGS, Topology(), **kwargs)


def test_bad_names_and_topologies_are_refused():
    with pytest.raises(MlengineError, match="TFJob name"):
        render_tfjob("Train_Demo", ARGS, Topology())
    with pytest.raises(MlengineError, match="does not use parameter servers"):
        render_tfjob("train-demo", ARGS, Topology(workers=2, ps=1, strategy="all_reduce"))


def test_training_args_round_trip_through_the_task_parser():
    from mlengine.components.train.task import build_parser, config_from_args

    config = TrainConfig(train_dir="s3://b/train", eval_dir="s3://b/eval", transform_dir="s3://b/tf",
                         model_dir="s3://b/model", hidden_units=[32, 16], learning_rate=0.01, batch_size=256,
                         epochs=3, steps_per_epoch=50)
    args = training_args(config)
    assert "--hidden-units" in args and args[args.index("--hidden-units") + 1] == "32,16"
    parsed = config_from_args(build_parser().parse_args(args))
    assert json.loads(parsed.to_json()) == json.loads(config.to_json())
    manifest = render_tfjob(tfjob_name_for("s3://b/model"), args, Topology(workers=2, ps=1), shared_claim=CLAIM)
    validate(manifest, tfjob_schema())


def test_job_name_is_stable_per_model_uri():
    assert tfjob_name_for("s3://b/model") == tfjob_name_for("s3://b/model")
    assert tfjob_name_for("s3://b/model") != tfjob_name_for("s3://b/other")


def test_tfjob_done_reads_conditions_and_replica_statuses():
    running = {"status": {"conditions": [{"type": "Created", "status": "True", "reason": "TFJobCreated"},
                                         {"type": "Running", "status": "True", "reason": "TFJobRunning",
                                          "message": "TFJob demo is running."}],
                          "replicaStatuses": {"Worker": {"active": 2}, "PS": {"active": 1}}}}
    assert tfjob_done(running) == (False, False, "Running: TFJob demo is running. (PS: active=1; Worker: active=2)")
    failed = copy.deepcopy(running)
    failed["status"]["conditions"][1]["status"] = "False"
    failed["status"]["conditions"].append({"type": "Failed", "status": "True", "reason": "TFJobFailed",
                                           "message": "TFJob demo has failed because 1 Worker replica(s) failed."})
    failed["status"]["replicaStatuses"] = {"Worker": {"active": 1, "failed": 1}}
    finished, ok, reason = tfjob_done(failed)
    assert (finished, ok) == (True, False)
    assert "1 Worker replica(s) failed" in reason and "failed replicas: Worker x1" in reason
    succeeded = {"status": {"conditions": [{"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded",
                                            "message": "TFJob demo successfully completed."}]}}
    assert tfjob_done(succeeded) == (True, True, "Succeeded: TFJob demo successfully completed.")
    assert tfjob_done({}) == (False, False, "Pending: no status from the Training Operator yet")


def test_parameter_server_job_needs_and_mounts_a_shared_volume():
    with pytest.raises(MlengineError, match="shared ReadWriteMany volume"):
        render_tfjob("train-demo", ARGS, Topology(workers=2, ps=1))
    manifest = render_tfjob("train-demo", ARGS, Topology(workers=2, ps=1), shared_claim=CLAIM)
    validate(manifest, tfjob_schema())
    for spec in manifest["spec"]["tfReplicaSpecs"].values():
        pod = spec["template"]["spec"]
        assert {"name": "shared", "persistentVolumeClaim": {"claimName": CLAIM}} in pod["volumes"]
        container = pod["containers"][0]
        assert {"name": "shared", "mountPath": "/shared"} in container["volumeMounts"]
        assert {"name": "TMPDIR", "value": "/shared/tmp"} in container["env"]
