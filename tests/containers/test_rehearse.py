"""`mlengine rehearse`: the rendered TFJob and InferenceService run in containers, as the controllers would.

Small data (3000 rows, 1 epoch). Every test checks that nothing labelled with the rehearsal's label
is left in the engine afterwards, and the credentials of the test env file appear nowhere.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mlengine.constants import REHEARSAL_LABEL
from tests.containers.conftest import mlengine

pytestmark = pytest.mark.containers

ACCESS_KEY = "AKIAREHEARSALTEST7Q"
SECRET_KEY = "rehearsal-secret-9f3c1e77"  # test values: grepped for everywhere below


def _env_file(path: Path, access: str = ACCESS_KEY, secret: str = SECRET_KEY) -> Path:
    path.write_text(f"# the MinIO Secret\nAWS_ACCESS_KEY_ID={access}\nAWS_SECRET_ACCESS_KEY={secret}\n",
                    encoding="utf-8")
    path.chmod(0o600)
    return path


def _leftovers(client) -> list[str]:
    """Everything in the engine carrying the rehearsal label (any rehearsal)."""
    filters = {"label": REHEARSAL_LABEL}
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters=filters)]
            + [f"network {n.name}" for n in client.networks.list(filters=filters)]
            + [f"volume {v.name}" for v in client.volumes.list(filters=filters)])


def _no_credentials(*texts: str) -> None:
    for text in texts:
        assert ACCESS_KEY not in text and SECRET_KEY not in text


def _files_text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def rehearse_in_process(built_images, docker_client, tmp_path):
    """Run ``rehearse`` in this process (tests change the rendered manifests); checks the cleanup after."""
    from mlengine.rehearsal.rehearse import Options, rehearse

    def run(**kwargs):
        options = Options(out=tmp_path / "out", env_file=str(_env_file(tmp_path / "minio.env")), **kwargs)
        return rehearse(options)

    yield run
    assert _leftovers(docker_client) == []


def test_rehearsal_trains_serves_and_leaves_nothing(built_images, docker_client, tmp_path):
    out = tmp_path / "rehearsal"
    env_file = _env_file(tmp_path / "minio.env")
    result = mlengine("rehearse", "--out", str(out), "--env-file", str(env_file), "--workers", "2", "--ps", "1")
    report = json.loads((out / "rehearsal.json").read_text(encoding="utf-8"))
    assert report["passed"] is True
    tfjob = report["resources"]["tfjob"]
    assert tfjob["passed"] and tfjob["chief_exit_code"] == 0 and tfjob["model_objects"] > 0
    assert sorted(tfjob["replicas"]) == ["taxi-fare-train-chief-0", "taxi-fare-train-ps-0",
                                         "taxi-fare-train-worker-0", "taxi-fare-train-worker-1"]
    assert tfjob["tf_config_cluster"]["worker"] == ["taxi-fare-train-worker-0:2222", "taxi-fare-train-worker-1:2222"]
    trial = report["resources"]["katib_trial"]
    assert trial["passed"] and trial["metrics"]["rmse"] > 0  # parsed with the Experiment's metricsFormat
    assert trial["name"].startswith("taxi-fare-tune-") and set(trial["assignments"]) >= {"nbuckets"}
    trial_args = trial["tfjob"]["commands"][f"{trial['name']}-worker-0"]
    assert not any("${trialParameters." in arg for arg in trial_args)
    assert f"--out=s3://mlpipeline/mlengine/run/tuning/{trial['name']}" in trial_args
    # the TrainJob topology: the pods JobSet would make, each building TF_CONFIG from its labels
    trainjob = report["resources"]["trainjob"]
    assert trainjob["passed"] and trainjob["runtime"] == "mlengine-tensorflow-ps1" and trainjob["model_objects"] > 0
    assert sorted(trainjob["pods"]) == ["taxi-fare-train-chief-0-0", "taxi-fare-train-ps-0-0",
                                        "taxi-fare-train-worker-0-0", "taxi-fare-train-worker-0-1"]
    assert trainjob["succeeded"] == ["taxi-fare-train-chief-0-0"]  # the success policy: ps never exit
    trainjob_trial = report["resources"]["katib_trial_trainjob"]
    assert trainjob_trial["passed"] and trainjob_trial["kind"] == "TrainJob" and trainjob_trial["metrics"]["rmse"] > 0
    assert trainjob_trial["primary_pod"] == f"{trainjob_trial['name']}-worker-0-0"
    isvc = report["resources"]["inferenceservice"]
    assert isvc["passed"] and isvc["readiness"] == "/v2/health/ready"
    assert isvc["storage_uri"] == "s3://mlpipeline/mlengine/models/v2-trainjob"  # the TrainJob's model serves
    assert "--model_name=taxi-fare" in isvc["command"] and "--http_port=8080" in isvc["command"]
    for protocol in ("v1", "v2"):
        assert isvc["predictions"][protocol]["equal"] and isvc["predictions"][protocol]["rows"] > 0
    # traffic sent to the predictor lands in the serving log prefix, and the monitor step (in the
    # pipeline image) reads it back from the bucket: sample rate 1, so every row sent is read
    monitor = report["resources"]["monitor"]
    assert monitor["passed"] and monitor["serving_log_uri"] == "s3://mlpipeline/mlengine/serving-log/taxi-fare/"
    assert monitor["rows_sent"] == monitor["rows_logged"] == monitor["rows_read"] >= 300
    assert monitor["objects"] >= 1 and monitor["malformed_lines"] == 0
    assert monitor["drift_detected"] is False  # the traffic comes from the training distribution
    markdown = (out / "rehearsal.md").read_text(encoding="utf-8")
    assert "## tfjob" in markdown and "## trainjob" in markdown and "## monitor" in markdown
    # the rendered manifests, the report, the console and every container command line
    _no_credentials(_files_text(out), result.stdout, result.stderr, json.dumps(tfjob["commands"]),
                    json.dumps(trainjob["commands"]))
    assert _leftovers(docker_client) == []


def test_a_rehearsed_tfjob_trains_a_model_module_and_the_predictor_serves_it(built_images, docker_client, tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "models" / "mlp_batchnorm.py"
    out = tmp_path / "rehearsal"
    mlengine("rehearse", "--out", str(out), "--env-file", str(_env_file(tmp_path / "minio.env")),
             "--model-module", str(example), "--training-operator", "tfjob")
    report = json.loads((out / "rehearsal.json").read_text(encoding="utf-8"))
    assert report["passed"] is True
    module = report["model_module"]
    assert module["file"] == "mlp_batchnorm.py" and module["uri"] == "s3://mlpipeline/mlengine/run/model_module"
    tfjob = report["resources"]["tfjob"]
    assert tfjob["passed"] and json.loads(tfjob["model_hp"]) == module["hyperparameters"]  # its train_config.json
    for args in tfjob["commands"].values():  # chief, workers and ps load the staged module folder
        assert "s3://mlpipeline/mlengine/run/model_module" in args
    trial = report["resources"]["katib_trial"]
    assert trial["passed"] and trial["assignments"]["layers"] == "1" and trial["metrics"]["rmse"] > 0
    isvc = report["resources"]["inferenceservice"]
    assert isvc["passed"] and isvc["storage_uri"] == "s3://mlpipeline/mlengine/models/v2"  # the TFJob's model
    for protocol in ("v1", "v2"):
        assert isvc["predictions"][protocol]["equal"]
    # the served SavedModel is the module's: its two Dense -> BatchNormalization blocks, by name
    assert {"mlp_dense_0", "mlp_batchnorm_0", "mlp_dense_1", "mlp_batchnorm_1", "head"} <= set(module["served_layers"])
    assert _leftovers(docker_client) == []


def test_an_injected_worker_crash_is_restarted_by_the_restart_policy(rehearse_in_process):
    report = rehearse_in_process(crash_worker=True, skip_serving=True, skip_trial=True, targets=("tfjob",))
    tfjob = report["resources"]["tfjob"]
    assert tfjob["passed"] and tfjob["restarts"]["taxi-fare-train-worker-0"] == 1  # OnFailure


def _replace_in_every_replica(change):
    def hook(manifests):
        for spec in manifests["tfjob.yaml"]["spec"]["tfReplicaSpecs"].values():
            spec["restartPolicy"] = "Never"  # fail at the first exit: the error, not the retries, is tested
            change(spec["template"]["spec"]["containers"][0])
    return hook


def test_a_wrong_module_fails_with_the_replicas_own_error(rehearse_in_process, tmp_path):
    from mlengine.rehearsal.rehearse import RehearsalError

    def wrong_module(container):
        container["command"] = ["python", "-m", "mlengine.components.train.tsk"]

    with pytest.raises(RehearsalError, match=r"No module named mlengine\.components\.train\.tsk"):
        rehearse_in_process(manifest_hook=_replace_in_every_replica(wrong_module), skip_serving=True, skip_trial=True)
    report = json.loads((tmp_path / "out" / "rehearsal.json").read_text(encoding="utf-8"))
    assert report["resources"]["tfjob"]["passed"] is False
    assert "No module named" in report["resources"]["tfjob"]["logs"]  # the failing replica's logs


def test_a_missing_env_var_fails_with_the_replicas_own_error(rehearse_in_process, tmp_path):
    from mlengine.rehearsal.rehearse import RehearsalError

    def no_endpoint(container):
        container["env"] = [e for e in container["env"] if e["name"] != "MLENGINE_S3_ENDPOINT"]

    with pytest.raises(RehearsalError, match="MLENGINE_S3_ENDPOINT is not set"):
        rehearse_in_process(manifest_hook=_replace_in_every_replica(no_endpoint), skip_serving=True, skip_trial=True)
    _no_credentials(_files_text(tmp_path / "out"))


def test_wrong_credentials_are_a_403_naming_the_bucket(built_images, docker_client, tmp_path):
    from mlengine.rehearsal.rehearse import Options, RehearsalError, rehearse

    wrong = _env_file(tmp_path / "wrong.env", "AKIAWRONGKEY0000", "x" * 20)
    options = Options(out=tmp_path / "out", env_file=str(wrong),
                      server_env_file=str(_env_file(tmp_path / "server.env")), skip_serving=True, skip_trial=True)
    with pytest.raises(RehearsalError, match=r"s3://mlpipeline: 403 InvalidAccessKeyId"):
        rehearse(options)
    assert _leftovers(docker_client) == []


def test_a_busy_port_and_a_missing_image_end_in_one_line(rehearse_in_process):
    from mlengine.rehearsal.rehearse import RehearsalError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RehearsalError, match=f"port {port} on 127.0.0.1 is already in use"):
            rehearse_in_process(s3_port=port)

    def missing_image(manifests):
        for spec in manifests["tfjob.yaml"]["spec"]["tfReplicaSpecs"].values():
            spec["template"]["spec"]["containers"][0]["image"] = "ghcr.io/mlengine/mlengine-trainer:0.0.0-missing"

    with pytest.raises(RehearsalError, match=r"mlengine-trainer:0\.0\.0-missing is not in the local engine"):
        rehearse_in_process(manifest_hook=missing_image, skip_serving=True, skip_trial=True)


def test_a_trial_without_a_metric_line_fails(rehearse_in_process):
    from mlengine.rehearsal.rehearse import RehearsalError

    def silent_trial(manifests):
        trial = manifests["katib-experiment.yaml"]["spec"]["trialTemplate"]["trialSpec"]
        for spec in trial["spec"]["tfReplicaSpecs"].values():
            spec["template"]["spec"]["containers"][0]["command"] = ["python", "-c", "print('trained, rmse unknown')"]

    with pytest.raises(RehearsalError, match=r"no rmse=<value> line in .*-worker-0's stdout"):
        rehearse_in_process(manifest_hook=silent_trial, skip_serving=True, epochs=1, rows=1000)


def test_sigterm_removes_everything(built_images, docker_client, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-m", "mlengine.cli", "rehearse", "--out", str(tmp_path / "out"),
                                "--env-file", str(_env_file(tmp_path / "minio.env"))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 300
        for line in process.stderr:  # wait until the replicas run, then stop it as Kubernetes stops a pod
            if "replicas started" in line or time.monotonic() > deadline:
                break
        assert "replicas started" in line
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "interrupted" in err
    assert _leftovers(docker_client) == []


def test_a_replica_that_never_starts_ends_in_one_line(rehearse_in_process):
    from mlengine.rehearsal.rehearse import RehearsalError

    def no_binary(container):
        container["command"] = ["/opt/no-such-trainer"]

    with pytest.raises(RehearsalError, match=r"taxi-fare-train-\w+-0 never started: .*no-such-trainer") as failure:
        rehearse_in_process(manifest_hook=_replace_in_every_replica(no_binary), skip_serving=True, skip_trial=True)
    assert "\n" not in str(failure.value)


def test_an_unreachable_bucket_fails_with_the_replicas_error_naming_it(rehearse_in_process, tmp_path):
    from mlengine.rehearsal.rehearse import RehearsalError

    def nothing_listens(container):  # inside the container: a port nothing listens on, refused at once
        for variable in container["env"]:
            if variable["name"] == "MLENGINE_S3_ENDPOINT":
                variable["value"] = "http://127.0.0.1:9"

    with pytest.raises(RehearsalError, match=r"s3://mlpipeline/") as failure:
        rehearse_in_process(manifest_hook=_replace_in_every_replica(nothing_listens), skip_serving=True,
                            skip_trial=True)
    assert "\n" not in str(failure.value)
    report = json.loads((tmp_path / "out" / "rehearsal.json").read_text(encoding="utf-8"))
    assert report["resources"]["tfjob"]["passed"] is False
    _no_credentials(_files_text(tmp_path / "out"))
