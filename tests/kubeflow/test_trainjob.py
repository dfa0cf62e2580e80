"""The Trainer v2 target: TF_CONFIG from JobSet, the project's runtime, TrainJobs, the operator choice, the launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlengine.components.shared import distributed, trainjob
from mlengine.components.shared.distributed import Topology
from mlengine.components.shared.tfjob import tfjob_tf_config
from mlengine.constants import ENV_TASK_ARGS, ENV_TF_CONFIG, ENV_TF_REPLICAS
from mlengine.errors import MlengineError
from tests import schema_utils
from tests.k8s_fake import FakeKubeAPI
from tests.log_capture import logged_lines

REPO = Path(__file__).resolve().parents[2]
PS_TOPOLOGY = Topology(workers=2, ps=1)


def _pod_env(jobset: str, shape: dict, role: str, job_index: int, pod_index: int) -> dict[str, str]:
    """What a TrainJob pod's env holds: the downward API's labels and the TrainJob's shape."""
    return {trainjob.ENV_JOBSET_NAME: jobset, trainjob.ENV_REPLICATED_JOB: role,
            trainjob.ENV_JOB_INDEX: str(job_index), trainjob.ENV_POD_INDEX: str(pod_index),
            ENV_TF_REPLICAS: json.dumps(shape)}


def _hosts_to_roles(config: dict) -> dict:
    """A TF_CONFIG with every address replaced by its (type, index): the cluster's shape, host names aside."""
    return {"cluster": {kind: [(kind, i) for i in range(len(addresses))]
                        for kind, addresses in config["cluster"].items()},
            "task": config["task"]}


@pytest.mark.parametrize("topology", [PS_TOPOLOGY, Topology(workers=3, ps=2), Topology(workers=3)])
def test_tf_config_from_jobset_names_equals_the_tfjob_paths(topology):
    shape = trainjob.jobset_shape(topology)
    counts = topology.task_counts()
    seen = set()
    for role, (jobs, pods) in shape.items():
        for job_index in range(jobs):
            for pod_index in range(pods):
                env = _pod_env("train-a", shape, role, job_index, pod_index)
                from_jobset = trainjob.tf_config_from_jobset_env(env)
                index = job_index * pods + pod_index
                from_tfjob = tfjob_tf_config("train-a", counts, role, index)
                assert _hosts_to_roles(from_jobset) == _hosts_to_roles(from_tfjob)
                assert from_jobset["task"] == {"type": role, "index": index}
                # the pod's own address is its JobSet host name, as JobSet's headless Service resolves it
                own = from_jobset["cluster"][role][index]
                assert own == f"train-a-{role}-{job_index}-{pod_index}.train-a:2222"
                seen.add(own)
                # both resolve to the same role (and strategy) in the training program
                assert distributed.resolve_role(from_jobset).strategy == distributed.resolve_role(from_tfjob).strategy
                assert distributed.resolve_role(from_jobset).is_chief == distributed.resolve_role(from_tfjob).is_chief
    assert len(seen) == sum(counts.values())


def test_the_training_program_reads_its_role_from_jobset_labels_when_tf_config_is_absent():
    shape = trainjob.jobset_shape(PS_TOPOLOGY)
    env = _pod_env("job-b", shape, "worker", 0, 1)
    role = distributed.role_from_env("auto", env)
    assert (role.strategy, role.task_type, role.task_index) == ("parameter_server", "worker", 1)
    assert json.loads(env[ENV_TF_CONFIG])["task"] == {"type": "worker", "index": 1}  # TensorFlow's resolver reads it
    given = {ENV_TF_CONFIG: distributed.tf_config_json({"worker": ["a:1", "b:2"]}, "worker", 0),
             **_pod_env("job-b", shape, "ps", 0, 0)}
    assert distributed.role_from_env("auto", given).task_type == "worker"  # a TF_CONFIG given wins
    assert trainjob.tf_config_from_jobset_env({}) is None
    with pytest.raises(distributed.TFConfigError, match="replicatedJob 'evaluator'"):
        trainjob.tf_config_from_jobset_env(_pod_env("job-b", shape, "evaluator", 0, 0))
    with pytest.raises(distributed.TFConfigError, match="MLENGINE_TF_REPLICAS"):
        trainjob.tf_config_from_jobset_env({**env, ENV_TF_REPLICAS: "{\"worker\": [1, 0]}"})


def test_the_entrypoint_runs_the_named_program_with_tf_config_built(tmp_path, monkeypatch):
    out = tmp_path / "seen.json"
    program = tmp_path / "probe_program.py"
    program.write_text("import json, os, sys\n"
                       f"open({str(out)!r}, 'w').write(json.dumps([sys.argv[1:], os.environ['TF_CONFIG']]))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("sys.argv", ["x"])
    monkeypatch.delenv(ENV_TF_CONFIG, raising=False)  # restored after the test: main sets it for the program
    env = {**_pod_env("job-c", trainjob.jobset_shape(PS_TOPOLOGY), "chief", 0, 0),
           ENV_TASK_ARGS: json.dumps(["probe_program", "--epochs", "1"])}
    trainjob.main(env)
    argv, tf_config = json.loads(out.read_text())
    assert argv == ["--epochs", "1"]
    assert json.loads(tf_config)["cluster"]["chief"] == ["job-c-chief-0-0.job-c:2222"]
    with pytest.raises(SystemExit) as stopped:
        trainjob.main({ENV_TASK_ARGS: "not json"})
    assert stopped.value.code == 2


@pytest.mark.parametrize("cluster_scoped", [False, True])
def test_the_runtime_has_the_roles_one_ancestor_and_a_success_policy_that_ignores_the_ps(cluster_scoped):
    runtime = trainjob.render_training_runtime(PS_TOPOLOGY, cluster_scoped=cluster_scoped)
    assert runtime["kind"] == ("ClusterTrainingRuntime" if cluster_scoped else "TrainingRuntime")
    assert ("namespace" in runtime["metadata"]) is not cluster_scoped
    assert schema_utils.errors(runtime, schema_utils.schema_for(runtime)) == []
    jobset = runtime["spec"]["template"]["spec"]
    jobs = {job["name"]: job for job in jobset["replicatedJobs"]}
    assert set(jobs) == {"chief", "ps", "worker"}
    ancestors = [name for name, job in jobs.items()
                 if ((job["template"].get("metadata") or {}).get("labels") or {}).get(trainjob.ANCESTOR_LABEL)
                 == "trainer"]
    assert ancestors == ["worker"]
    assert jobset["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["chief"]}
    assert jobset["failurePolicy"]["maxRestarts"] == 3
    for name, job in jobs.items():
        pod = job["template"]["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "OnFailure"  # the TFJob's restartPolicy
        assert job["template"]["spec"]["backoffLimit"] == 3 and job["template"]["spec"]["completionMode"] == "Indexed"
        [container] = pod["containers"]
        assert container["name"] == ("node" if name == "worker" else "tensorflow")
        paths = {e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "fieldRef" in
                 (e.get("valueFrom") or {})}
        assert "metadata.labels['jobset.sigs.k8s.io/replicatedjob-name']" in paths
    assert jobs["ps"]["template"]["spec"]["parallelism"] == 1
    assert jobset["network"]["publishNotReadyAddresses"] is True
    allreduce = trainjob.render_training_runtime(Topology(workers=3))
    spec = allreduce["spec"]["template"]["spec"]
    assert [job["name"] for job in spec["replicatedJobs"]] == ["worker"]  # MultiWorkerMirroredStrategy
    assert spec["successPolicy"]["targetReplicatedJobs"] == ["worker"]


def test_the_shipped_runtimes_are_the_rendered_ones():
    from mlengine.kubeflow.manifests import base_runtimes

    for relative, rendered in base_runtimes().items():
        shipped = yaml.safe_load((REPO / relative).read_text(encoding="utf-8"))
        assert shipped == rendered, (f"{relative} is stale: python -c 'from mlengine.kubeflow.manifests import "
                                     "write_base_runtimes; write_base_runtimes()'")
        assert schema_utils.errors(shipped, schema_utils.schema_for(shipped)) == []
    kustomization = yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())
    assert {"trainingruntime-mlengine-tensorflow-ps1.yaml",
            "trainingruntime-mlengine-tensorflow-allreduce.yaml"} <= set(kustomization["resources"])


def test_a_trainjob_names_its_runtime_and_hands_every_role_the_program_and_the_shape():
    job = trainjob.render_trainjob("train-x", ["mlengine.components.train.task", "--epochs", "2"], PS_TOPOLOGY,
                                   shared_claim="claim-1")
    assert schema_utils.errors(job, schema_utils.schema_for(job)) == []
    spec = job["spec"]
    assert spec["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime",
                                  "name": "mlengine-tensorflow-ps1"}
    assert spec["trainer"]["numNodes"] == 2
    trainer_env = {e["name"]: e["value"] for e in spec["trainer"]["env"]}
    assert json.loads(trainer_env[ENV_TASK_ARGS])[:3] == ["mlengine.components.train.task", "--epochs", "2"]
    assert json.loads(trainer_env[ENV_TF_REPLICAS]) == {"chief": [1, 1], "worker": [1, 2], "ps": [1, 1]}
    patches = {p["name"]: p["template"]["spec"]["template"]["spec"]
               for p in spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]}
    assert set(patches) == {"chief", "ps", "worker"}
    for role, pod in patches.items():
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "claim-1"
        [container] = pod["containers"]
        assert ("env" in container) is (role != "worker")  # node's env goes through spec.trainer
        if role != "worker":
            assert {e["name"]: e["value"] for e in container["env"]} == trainer_env
    with pytest.raises(MlengineError, match="shared ReadWriteMany"):
        trainjob.render_trainjob("train-x", ["m"], PS_TOPOLOGY)
    cluster = trainjob.render_trainjob("train-y", ["m"], Topology(workers=2), cluster_runtime=True)
    assert cluster["spec"]["runtimeRef"]["kind"] == "ClusterTrainingRuntime"
    assert "runtimePatches" not in cluster["spec"]


def test_a_field_the_typed_model_does_not_know_fails_where_it_is_written():
    job = trainjob.render_trainjob("train-z", ["m"], Topology(workers=1))
    job["spec"]["trainer"]["numNode"] = 3
    with pytest.raises(MlengineError, match=r"unknown field spec\.trainer\.numNode"):
        trainjob.typed("TrainerV1alpha1TrainJob", job, "TrainJob train-z")
    job["spec"]["trainer"].pop("numNode")
    job["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(MlengineError, match="numNodes"):
        trainjob.typed("TrainerV1alpha1TrainJob", job, "TrainJob train-z")
    runtime = trainjob.render_training_runtime(PS_TOPOLOGY)
    runtime["spec"]["template"]["spec"]["successPolicy"]["targetReplicatedJob"] = ["chief"]
    assert any("targetReplicatedJob" in problem for problem in
               schema_utils.errors(runtime, schema_utils.schema_for(runtime)))  # the closed CRD schema too


@pytest.mark.parametrize(("served", "expected"), [
    (["trainer.kubeflow.org/v1alpha1", "kubeflow.org/v1"], "trainjob"),
    (["trainer.kubeflow.org/v1alpha1"], "trainjob"),
    (["kubeflow.org/v1", "kubeflow.org/v1beta1"], "tfjob"),
    ([], None),
])
def test_auto_asks_api_discovery_and_prefers_trainjob(served, expected):
    with FakeKubeAPI() as fake:
        fake.served_group_versions = [*served, "serving.kserve.io/v1beta1"]
        api = fake.custom_objects_api()
        if expected is None:
            with pytest.raises(MlengineError) as raised:
                trainjob.choose_training_operator("auto", lambda: trainjob.served_group_versions(api))
            message = str(raised.value)
            assert "\n" not in message
            assert "trainer.kubeflow.org/v1alpha1" in message and "kubeflow.org/v1 " in message
        else:
            operator, why = trainjob.choose_training_operator("auto", lambda: trainjob.served_group_versions(api))
            assert operator == expected
            assert ("trainer.kubeflow.org/v1alpha1" if expected == "trainjob" else "kubeflow.org/v1") in why
        assert fake.count("GET") == 1
    asked = []
    assert trainjob.choose_training_operator("tfjob", lambda: asked.append(1) or set())[0] == "tfjob"
    assert asked == []  # an explicit choice asks nothing
    with pytest.raises(MlengineError, match="expected one of auto, trainjob, tfjob"):
        trainjob.choose_training_operator("mpijob", set)


def test_trainjob_status_reads_complete_failed_and_the_jobs():
    running = {"status": {"conditions": [{"type": "Created", "status": "True", "message": "JobSet created"}],
                          "jobsStatus": [{"name": "worker", "active": 2}, {"name": "ps", "active": 1}]}}
    assert trainjob.trainjob_done(running) == (False, False, "Created: JobSet created (worker: active=2; ps: active=1)")
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "jobset failed",
                                         "reason": "JobSetFailed"}]}}
    assert trainjob.trainjob_done(failed)[:2] == (True, False)
    done = {"status": {"conditions": [{"type": "Complete", "status": "True", "reason": "JobSetCompleted"}]}}
    assert trainjob.trainjob_done(done) == (True, True, "Complete: JobSetCompleted")
    assert trainjob.trainjob_done({})[0] is False


def test_the_train_step_creates_a_trainjob_and_reattaches_after_a_restart(tmp_path, monkeypatch):
    from mlengine.components.train import cluster
    from mlengine.components.train.trainer import TrainConfig

    fetched = []
    monkeypatch.setattr(cluster, "_fetch_model", lambda config, remote: fetched.append(remote) or {"eval_rmse": 1.0})
    complete = {"conditions": [{"type": "Complete", "status": "True", "reason": "JobSetCompleted"}]}
    config = TrainConfig(train_dir="s3://b/run/train", eval_dir="s3://b/run/eval", transform_dir="s3://b/run/tf",
                         model_dir=str(tmp_path / "model"), epochs=1, hidden_units=[32], learning_rate=0.01,
                         batch_size=32)
    name_file = tmp_path / "job-name"
    logs: list[str] = []
    with FakeKubeAPI() as fake:
        fake.served_group_versions = ["trainer.kubeflow.org/v1alpha1", "kubeflow.org/v1"]
        fake.on_create.append(lambda created: fake.script("trainjobs", created["metadata"]["name"], [complete]))
        api = fake.custom_objects_api()
        kwargs = {"model_uri": "s3://b/run/model", "name_file": str(name_file), "shared_claim": "pvc-9",
                  "namespace": "team-a", "api": api}
        with logged_lines(cluster.__name__, logs.append):
            result = cluster.run_for_config(config, PS_TOPOLOGY, training_operator="auto", **kwargs)
        assert result["trainjob"] == name_file.read_text() and fake.count("POST", "trainjobs") == 1
        # the step is restarted: the name file leads back to the same TrainJob, nothing is created
        again = cluster.run_for_config(config, PS_TOPOLOGY, training_operator="auto", **kwargs)
        assert again["trainjob"] == result["trainjob"] and fake.count("POST", "trainjobs") == 1
        [stored] = [o for (_, ns, plural, _), o in fake.objects.items() if plural == "trainjobs"]
    assert stored["metadata"]["namespace"] == "team-a"
    assert schema_utils.errors({k: v for k, v in stored.items() if k != "status"}, schema_utils.trainjob_schema()) == []
    env = {e["name"]: e["value"] for e in stored["spec"]["trainer"]["env"]}
    assert "--model-dir" in json.loads(env[ENV_TASK_ARGS]) and "s3://b/run/model" in json.loads(env[ENV_TASK_ARGS])
    assert fetched == ["s3://b/run/model", "s3://b/run/model"]
    assert any("training operator trainjob" in line and "trainer.kubeflow.org/v1alpha1" in line for line in logs)


def test_the_tfjob_operator_still_runs_a_tfjob(tmp_path, monkeypatch):
    from mlengine.components.train import cluster
    from mlengine.components.train.trainer import TrainConfig

    monkeypatch.setattr(cluster, "_fetch_model", lambda config, remote: {"eval_rmse": 1.0})
    succeeded = {"conditions": [{"type": "Succeeded", "status": "True", "message": "done"}]}
    config = TrainConfig(train_dir="s3://b/r/train", eval_dir="s3://b/r/eval", transform_dir="s3://b/r/tf",
                         model_dir=str(tmp_path / "model"), epochs=1, hidden_units=[32], learning_rate=0.01,
                         batch_size=32)
    with FakeKubeAPI() as fake:
        fake.served_group_versions = ["kubeflow.org/v1"]
        fake.on_create.append(lambda created: fake.script("tfjobs", created["metadata"]["name"], [succeeded]))
        result = cluster.run_for_config(config, Topology(workers=2), training_operator="auto",
                                        model_uri="s3://b/r/model",
                                        api=fake.custom_objects_api(), namespace="team-a")
        assert "tfjob" in result and fake.count("POST", "tfjobs") == 1 and fake.count("POST", "trainjobs") == 0


def test_no_environment_variable_leaks_into_the_rendered_trainjob(monkeypatch):
    monkeypatch.setenv("MLENGINE_SHARED_CLAIM", "from-the-environment")
    job = trainjob.render_trainjob("train-e", ["m"], Topology(workers=2))
    assert "from-the-environment" not in json.dumps(job)


def test_katib_trials_are_trainjobs_where_trainer_v2_is_served():
    from mlengine.components.tune import cluster as katib
    from mlengine.components.tune.space_loader import load_search_space

    data = {"train_uri": "s3://b/r/train", "eval_uri": "s3://b/r/eval", "spec_uri": "s3://b/r/statistics",
            "output_uri": "s3://b/r/tuning"}
    space = load_search_space().with_overrides(max_trials=2, parallel_trials=1)
    experiment = katib.render_experiment("taxi-tune", space, trial_topology=PS_TOPOLOGY, shared_claim="c-1",
                                         trial_kind="TrainJob", **data)
    assert katib.webhook_problems(experiment) == []
    assert schema_utils.errors(experiment, schema_utils.katib_experiment_schema()) == []
    template = experiment["spec"]["trialTemplate"]
    # parameter servers never exit: the chief is the pod whose stdout the collector reads
    assert template["primaryContainerName"] == "tensorflow"
    assert template["primaryPodLabels"] == {trainjob.REPLICATED_JOB_LABEL: "chief"}
    argv = json.loads({e["name"]: e["value"] for e in template["trialSpec"]["spec"]["trainer"]["env"]}[ENV_TASK_ARGS])
    assert argv[0] == "mlengine.components.tune.trial" and "--learning-rate=${trialParameters.learning_rate}" in argv
    failed = {"conditions": [{"type": "Failed", "status": "True", "message": "no trial ran"}]}
    with FakeKubeAPI() as fake:
        fake.served_group_versions = ["trainer.kubeflow.org/v1alpha1", "kubeflow.org/v1beta1"]
        fake.on_create.append(lambda created: fake.script("experiments", created["metadata"]["name"], [failed]))
        with pytest.raises(MlengineError, match="no trial ran"):
            katib.run_experiment("taxi-tune", space, namespace="team-a", api=fake.custom_objects_api(), timeout=30,
                                 **data)
        [created] = [o for (_, _, plural, _), o in fake.objects.items() if plural == "experiments"]
    assert created["spec"]["trialTemplate"]["trialSpec"]["kind"] == "TrainJob"


def test_mlengine_tune_writes_an_experiment_with_trainjob_trials(tmp_path):
    from mlengine.cli import main

    path = tmp_path / "experiment.yaml"
    assert main(["tune", "--train-dir", "s3://b/t", "--eval-dir", "s3://b/e", "--spec-dir", "s3://b/s", "--out",
                 "s3://b/o", "--trials", "2", "--katib-manifest", str(path), "--trial-kind", "TrainJob"]) == 0
    experiment = yaml.safe_load(path.read_text(encoding="utf-8"))
    trial = experiment["spec"]["trialTemplate"]["trialSpec"]
    assert trial["kind"] == "TrainJob" and trial["spec"]["runtimeRef"]["name"] == "mlengine-tensorflow-allreduce"
    assert schema_utils.errors(experiment, schema_utils.katib_experiment_schema()) == []


def test_discovery_against_an_unreachable_server_is_one_line():
    from kubernetes import client

    with FakeKubeAPI() as fake:
        host = fake.host
    configuration = client.Configuration(host=host)  # the server is stopped: nothing listens there
    configuration.retries = 0
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    with pytest.raises(MlengineError, match=r"API discovery \(GET /apis\) failed: cannot reach the API server"):
        trainjob.served_group_versions(api)
