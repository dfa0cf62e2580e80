"""CustomResource and run_tfjob against the fake API server, through the real kubernetes client."""

from __future__ import annotations

import threading
import time

import pytest

from mlengine.components.shared.distributed import Topology
from mlengine.components.shared.k8s import CustomResource, condition_status
from mlengine.components.shared.tfjob import render_tfjob
from mlengine.components.train.cluster import run_tfjob, tfjob_done
from mlengine.errors import MlengineError
from tests.helpers import free_port
from tests.k8s_fake import FakeKubeAPI
from tests.log_capture import logged_lines

NS = "kubeflow-user"
ARGS = ["--train-dir", "s3://b/train", "--eval-dir", "s3://b/eval", "--transform-dir", "s3://b/tf",
        "--model-dir", "s3://b/model"]


def condition(type_: str, reason: str, message: str = "", status: str = "True") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-21T00:00:00Z"}


CREATED = {"conditions": [condition("Created", "TFJobCreated", "TFJob demo is created.")]}
RUNNING = {"conditions": [condition("Created", "TFJobCreated"),
                          condition("Running", "TFJobRunning", "TFJob demo is running.")],
           "replicaStatuses": {"Chief": {"active": 1}, "PS": {"active": 1}, "Worker": {"active": 2}}}
SUCCEEDED = {"conditions": [condition("Created", "TFJobCreated"), condition("Running", "TFJobRunning", status="False"),
                            condition("Succeeded", "TFJobSucceeded", "TFJob demo successfully completed.")],
             "replicaStatuses": {"Chief": {"succeeded": 1}, "PS": {}, "Worker": {}}}
FAILED = {"conditions": [condition("Created", "TFJobCreated"), condition("Running", "TFJobRunning", status="False"),
                         condition("Failed", "TFJobFailed",
                                   "TFJob kubeflow-user/demo has failed because 1 Worker replica(s) failed.")],
          "replicaStatuses": {"Chief": {"active": 1}, "Worker": {"active": 1, "failed": 1}}}


@pytest.fixture
def fake():
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
def tfjobs(fake):
    return CustomResource("kubeflow.org", "v1", "tfjobs", NS, api=fake.custom_objects_api())


def manifest(name: str = "demo") -> dict:
    return render_tfjob(name, ARGS, Topology(workers=2, ps=1), namespace=NS, shared_claim="mlengine-shared")


def test_create_get_patch_delete(fake, tfjobs):
    created = tfjobs.create_or_attach(manifest())
    assert created["metadata"]["name"] == "demo" and created["metadata"]["resourceVersion"]
    assert tfjobs.get("demo")["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    patched = tfjobs.patch("demo", {"metadata": {"labels": {"tuned": "yes"}}})
    assert patched["metadata"]["labels"]["tuned"] == "yes"
    assert patched["metadata"]["labels"]["app.kubernetes.io/name"] == "mlengine"  # merge, not replace
    tfjobs.delete("demo")
    assert tfjobs.get("demo") is None
    tfjobs.delete("demo")  # already gone: no error
    assert fake.count("POST") == 1 and fake.count("DELETE") == 2


def test_name_file_is_written_before_the_create(fake, tfjobs, tmp_path):
    name_file = tmp_path / "state" / "tfjob_name"
    seen = []
    fake.on_create.append(lambda obj: seen.append(name_file.read_text()))
    tfjobs.create_or_attach(manifest(), name_file=str(name_file))
    assert seen == ["demo"]


def test_restarted_launcher_reattaches_without_a_second_post(fake, tfjobs, tmp_path):
    name_file = tmp_path / "tfjob_name"
    first = tfjobs.create_or_attach(manifest("demo-a1b2"), name_file=str(name_file))
    # the launcher restarts and renders a manifest with a fresh name: the file wins
    again = tfjobs.create_or_attach(manifest("demo-c3d4"), name_file=str(name_file))
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert fake.count("POST") == 1
    assert fake.find("tfjobs", "demo-c3d4") is None


def test_name_in_file_but_object_missing_creates_it_under_that_name(fake, tfjobs, tmp_path):
    name_file = tmp_path / "tfjob_name"
    name_file.write_text("demo-earlier")  # died after writing the name, before the create landed
    created = tfjobs.create_or_attach(manifest("demo-new"), name_file=str(name_file))
    assert created["metadata"]["name"] == "demo-earlier"
    assert fake.count("POST") == 1


def test_409_already_exists_reattaches_instead_of_duplicating(fake, tfjobs):
    existing = fake.put(manifest(), "tfjobs")
    attached = tfjobs.create_or_attach(manifest())
    assert attached["metadata"]["uid"] == existing["metadata"]["uid"]
    assert fake.count("POST") == 1  # the one create that answered 409
    assert len([k for k in fake.objects if k[2] == "tfjobs"]) == 1


def test_watch_follows_the_job_to_succeeded(fake, tfjobs):
    tfjobs.create_or_attach(manifest())
    fake.script("tfjobs", "demo", [CREATED, RUNNING, SUCCEEDED], interval=0.3)
    lines: list[str] = []
    with logged_lines("mlengine.components.shared.k8s", lines.append):
        final = tfjobs.wait("demo", tfjob_done, timeout=30, poll_interval=60, label="tfjob demo")
    assert all(line.startswith("tfjob demo: ") for line in lines)
    reasons = [line.removeprefix("tfjob demo: ") for line in lines]
    assert condition_status(final, "Succeeded") == "True"
    assert reasons[-1] == "Succeeded: TFJob demo successfully completed."
    assert any(r.startswith("Running: TFJob demo is running.") for r in reasons)
    assert any("watch=true" in path.lower() for method, path in fake.requests if method == "GET")
    # poll_interval is 60 s: finishing in time proves the watch, not polling, saw the changes


def test_failed_job_surfaces_the_operator_reason_and_failed_replica(fake, tfjobs):
    tfjobs.create_or_attach(manifest())
    fake.script("tfjobs", "demo", [RUNNING, FAILED], interval=0.2)
    with pytest.raises(MlengineError, match=r"tfjobs/demo .* failed: TFJobFailed: .*1 Worker replica\(s\) failed\. "
                                            r"\(failed replicas: Worker x1\)"):
        tfjobs.wait("demo", tfjob_done, timeout=30, poll_interval=60)


def test_timeout_is_a_clear_error_with_the_last_status(fake, tfjobs):
    tfjobs.create_or_attach(manifest())
    fake.set_status("tfjobs", "demo", RUNNING)
    started = time.monotonic()
    with pytest.raises(MlengineError, match=r"timed out after 2 s waiting for tfjobs/demo .*last status: Running"):
        tfjobs.wait("demo", tfjob_done, timeout=2, poll_interval=0.5)
    assert time.monotonic() - started < 20


def test_polling_fallback_when_watch_is_refused(fake, tfjobs):
    fake.watch_supported = False
    tfjobs.create_or_attach(manifest())
    fake.script("tfjobs", "demo", [RUNNING, SUCCEEDED], interval=0.3)
    final = tfjobs.wait("demo", tfjob_done, timeout=30, poll_interval=0.2)
    assert condition_status(final, "Succeeded") == "True"
    assert fake.count("GET") >= 3


def test_deleted_while_waiting_is_an_error(fake, tfjobs):
    tfjobs.create_or_attach(manifest())
    threading.Timer(0.5, lambda: tfjobs.delete("demo")).start()
    with pytest.raises(MlengineError, match="was deleted while waiting"):
        tfjobs.wait("demo", tfjob_done, timeout=30, poll_interval=60)


def test_api_errors_are_one_line_mlengine_errors(fake):
    wrong = CustomResource("kubeflow.org", "v1", "tfjobs", NS, api=fake.custom_objects_api())
    bad = manifest()
    del bad["metadata"]["name"]
    with pytest.raises(MlengineError, match=r"has no metadata\.name"):
        wrong.create_or_attach(bad)
    nowhere = CustomResource("kubeflow.org", "v1", "tfjobs", NS, api=_unreachable_api())
    with pytest.raises(MlengineError, match="cannot reach the API server") as info:
        nowhere.create_or_attach(manifest())
    assert "\n" not in str(info.value)


def _unreachable_api():
    from kubernetes import client

    port = free_port()  # nothing listens there
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    return client.CustomObjectsApi(client.ApiClient(configuration))


def test_run_tfjob_creates_and_waits(fake, tmp_path):
    def controller(obj):
        fake.script("tfjobs", obj["metadata"]["name"], [CREATED, RUNNING, SUCCEEDED], interval=0.2)

    fake.on_create.append(controller)
    lines: list[str] = []
    with logged_lines("mlengine.components", lines.append):  # the launcher's lines and the wait's
        final = run_tfjob(manifest(), name_file=str(tmp_path / "name"), timeout=30, poll_interval=60,
                          api=fake.custom_objects_api())
    assert tfjob_done(final)[:2] == (True, True)
    assert lines[0] == f"tfjob {NS}/demo: submitted"
    assert lines[-1] == "tfjob demo: Succeeded: TFJob demo successfully completed."
    assert (tmp_path / "name").read_text() == "demo"
