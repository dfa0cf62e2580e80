"""The rehearsal's TrainJob part without Docker: the pods JobSet would make, their names, env, TF_CONFIG."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mlengine.components.shared.trainjob import tf_config_from_jobset_env
from mlengine.constants import (
    ENV_S3_ACCESS_KEY,
    ENV_S3_ENDPOINT,
    ENV_S3_SECRET_KEY,
    ENV_TASK_ARGS,
    ENV_TF_CONFIG,
    K8S_S3_SECRET,
)
from mlengine.kubeflow.manifests import render_cluster_manifests
from mlengine.rehearsal import tfjob as rehearsal_tfjob
from mlengine.rehearsal.engine import DATA_ROOT, MODEL_URI, RehearsalError, Scrubber
from mlengine.rehearsal.katib import first_suggestion, trial_job
from mlengine.rehearsal.trainjob import jobset_pods, merged_jobset, primary_pod, run_trainjob

SECRET = {ENV_S3_ACCESS_KEY: "AKIAPODTEST", ENV_S3_SECRET_KEY: "pod-secret-1", ENV_S3_ENDPOINT: "minio:9000"}


@pytest.fixture(scope="module")
def manifests():
    return render_cluster_manifests(data_root=DATA_ROOT, model_uri=MODEL_URI, previous_model_uri=MODEL_URI + "-v1",
                                    workers=2, ps=1, trials=1, epochs=1)


def _runtimes(manifests):
    return {m["metadata"]["name"]: m for m in manifests.values() if m["kind"] == "TrainingRuntime"}


class _FakeAPI:
    """Containers that exit 0 at once (the chief finishes): enough for the controller loop."""

    def __init__(self):
        self.started: list[str] = []

    def start(self, cid):
        self.started.append(cid)

    def inspect_container(self, cid):
        return {"State": {"Running": False, "Status": "exited", "ExitCode": 0}}

    def logs(self, cid, **kwargs):
        return b""


class _FakeEngine:
    def __init__(self):
        self.created: dict[str, dict] = {}
        self.client = SimpleNamespace(api=_FakeAPI())

    def create(self, image, *, name, network, alias=None, extra_aliases=None, entrypoint=None, command=None,
               environment=None, binds=None, user=None, group_add=None, ports=None):
        self.created[name] = {"image": image, "aliases": [alias, *(extra_aliases or [])], "entrypoint": entrypoint,
                              "command": command, "env": dict(environment or {}), "binds": binds, "user": user}
        return name


def test_the_trainjob_pods_are_named_and_labelled_as_jobset_does(manifests):
    job = manifests["trainjob.yaml"]
    jobset = merged_jobset(job, _runtimes(manifests)[job["spec"]["runtimeRef"]["name"]])
    pods = jobset_pods("taxi-fare-train", jobset)
    names = sorted(p.service for p in pods)
    assert names == ["taxi-fare-train-chief-0-0", "taxi-fare-train-ps-0-0", "taxi-fare-train-worker-0-0",
                     "taxi-fare-train-worker-0-1"]
    worker = next(p for p in pods if p.service == "taxi-fare-train-worker-0-1")
    assert worker.aliases == ("taxi-fare-train-worker-0-1.taxi-fare-train",)
    assert worker.fields["metadata.labels['jobset.sigs.k8s.io/replicatedjob-name']"] == "worker"
    assert worker.fields["metadata.annotations['batch.kubernetes.io/job-completion-index']"] == "1"
    assert worker.container["name"] == "node"
    # the TrainJob's trainer env went into the node container, its patches into chief and ps, with the claim
    for pod in pods:
        env_names = {e["name"] for e in pod.container["env"]}
        assert ENV_TASK_ARGS in env_names and "TMPDIR" in env_names
        assert {m["name"] for m in pod.container["volumeMounts"]} == {"scratch", "shared"}
    assert primary_pod(pods).service == "taxi-fare-train-chief-0-0"


def test_run_trainjob_gives_no_tf_config_and_each_pod_builds_one_that_names_the_pods(manifests, monkeypatch):
    monkeypatch.setattr(rehearsal_tfjob, "prepare_volumes", lambda engine, replicas, image: {
        (r.service, v["name"]): f"vol-{v['name']}" for r in replicas for v in r.pod_spec.get("volumes", [])})
    monkeypatch.setattr(rehearsal_tfjob, "require_image", lambda client, image, what: None)
    engine = _FakeEngine()
    result = run_trainjob(engine, manifests["trainjob.yaml"], _runtimes(manifests), network="net", secret=SECRET,
                          secret_name=K8S_S3_SECRET, scrub=Scrubber(SECRET.values()),
                          timeout=5)
    assert result["passed"] is True and result["succeeded"] == ["taxi-fare-train-chief-0-0"]
    aliases = {alias for spec in engine.created.values() for alias in spec["aliases"]}
    cluster = None
    for name, spec in engine.created.items():
        env = spec["env"]
        assert ENV_TF_CONFIG not in env  # Trainer v2 writes none: the entrypoint builds it
        assert spec["entrypoint"] == ["python", "-m", "mlengine.components.shared.trainjob"]
        assert env[ENV_S3_ACCESS_KEY] == "AKIAPODTEST"  # the Secret's key through secretKeyRef
        config = tf_config_from_jobset_env(env)
        assert config["cluster"][config["task"]["type"]][config["task"]["index"]] == f"{name}.taxi-fare-train:2222"
        cluster = cluster or config["cluster"]
        assert config["cluster"] == cluster  # every pod sees the same cluster
        assert json.loads(env[ENV_TASK_ARGS])[0] == "mlengine.components.train.task"
    assert {address.rsplit(":", 1)[0] for addresses in cluster.values() for address in addresses} <= aliases
    assert sorted(engine.client.api.started) == sorted(engine.created)
    assert "AKIAPODTEST" not in json.dumps(manifests)


def test_a_trainjob_trial_is_substituted_and_its_primary_pod_picked(manifests):
    experiment = manifests["katib-experiment-trainjob.yaml"]
    assignments = first_suggestion(experiment)
    job = trial_job(experiment, assignments, "taxi-fare-tune-abc")
    assert job["kind"] == "TrainJob" and job["metadata"]["name"] == "taxi-fare-tune-abc"
    argv = json.loads({e["name"]: e["value"] for e in job["spec"]["trainer"]["env"]}[ENV_TASK_ARGS])
    assert argv[0] == "mlengine.components.tune.trial" and "${trialParameters." not in json.dumps(job)
    assert any(a.startswith("--out=") and a.endswith("/taxi-fare-tune-abc") for a in argv)
    runtime = _runtimes(manifests)[job["spec"]["runtimeRef"]["name"]]
    pods = jobset_pods("taxi-fare-tune-abc", merged_jobset(job, runtime))
    primary = primary_pod(pods, experiment["spec"]["trialTemplate"]["primaryPodLabels"])
    assert primary.service == "taxi-fare-tune-abc-worker-0-0"
    with pytest.raises(RehearsalError, match="primaryPodLabels"):
        primary_pod(pods, {"jobset.sigs.k8s.io/replicatedjob-name": "chief"})


def test_a_trainjob_naming_another_runtime_is_refused(manifests):
    job = json.loads(json.dumps(manifests["trainjob.yaml"]))
    job["spec"]["runtimeRef"]["name"] = "torch-distributed"
    with pytest.raises(RehearsalError, match="runtime torch-distributed is not among the rendered runtimes"):
        run_trainjob(_FakeEngine(), job, _runtimes(manifests), network="n", secret=SECRET,
                     secret_name=K8S_S3_SECRET, scrub=Scrubber([]))
