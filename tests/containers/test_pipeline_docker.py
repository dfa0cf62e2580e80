"""`mlengine run --runner docker`: the compiled pipeline, every step in its image, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mlengine.constants import CONTAINER_LABEL, PIPELINE_IMAGE

from .conftest import SMALL_ROWS, SMALL_RUN_ARGS, mlengine, run_containers

pytestmark = pytest.mark.containers


def test_every_step_ran_in_the_image_its_yaml_names(docker_run):
    log = (docker_run["out"] / "pipeline.log").read_text(encoding="utf-8")
    yaml_text = (docker_run["out"] / "training_pipeline.yaml").read_text(encoding="utf-8")
    assert f"image: {PIPELINE_IMAGE}" in yaml_text
    for step in ("ingest", "tune", "transform", "train", "evaluate", "deploy"):
        assert f"Running {step} in {PIPELINE_IMAGE} as user " in log, step
    assert " as user 0:" not in log  # never as root


def test_same_summary_and_table_as_the_default_runner(docker_run, subprocess_run):
    docker_summary, local_summary = docker_run["summary"], subprocess_run["summary"]
    assert set(docker_summary) == set(local_summary)
    assert docker_summary["rows_read"] == local_summary["rows_read"] == SMALL_ROWS
    assert docker_summary["rows_rejected"] == local_summary["rows_rejected"] == 0
    # the RMSE of the same pipeline on the same data: within 5% across runners
    assert docker_summary["rmse"] == pytest.approx(local_summary["rmse"], rel=0.05)
    assert docker_summary["blessed"] is True
    for line in ("rows read", "model RMSE (test)", "blessed", "summary"):
        assert line in docker_run["stdout"]


def test_the_deploy_step_served_the_model_inside_its_container(docker_run):
    log = (docker_run["out"] / "pipeline.log").read_text(encoding="utf-8")
    assert "deploy: test prediction" in log
    assert "deploy: stopped the model server" in log


def test_no_container_is_left_after_the_run(docker_run, docker_client):
    assert docker_run["new_containers"] == set()
    assert run_containers(docker_client, run_label_only=True) == []


def test_outputs_are_written_by_a_non_root_user_in_group_0(docker_run):
    model_dir = docker_run["summary"]["model_dir"]
    info = os.stat(model_dir)
    assert info.st_uid != 0 and info.st_gid == 0
    root = docker_run["out"] / "pipeline-root"
    assert root.stat().st_mode & 0o2070 == 0o2070  # setgid, group rwx: writable for any UID in group 0


def test_processes_start_inside_the_step_containers(tmp_path, small_csv, built_images, docker_client):
    """Tuning trials as processes, a chief + worker + PS training cluster, the local model server."""
    result = mlengine("run", "--runner", "docker", "--data", str(small_csv), "--out", str(tmp_path),
                      "--trials", "2", "--parallel-trials", "2", "--epochs", "2", "--batch-size", "64",
                      "--workers", "1", "--ps", "1")
    log = (tmp_path / "pipeline.log").read_text(encoding="utf-8")
    assert "local cluster: parameter_server" in log
    assert "[chief-0] train:" in log and "[worker-0]" in log and "[ps-0]" in log
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["tuning"]["trials"]) == 2
    assert "tuning best" in result.stdout
    assert run_containers(docker_client, run_label_only=True) == []


def test_a_failing_step_shows_its_log_and_stops_the_run_naming_it(tmp_path, small_csv, built_images, docker_client):
    # the header passes the host's input check; every row is then rejected inside the steps
    header = small_csv.read_text(encoding="utf-8").splitlines()[0]
    bad = tmp_path / "all-rejected.csv"
    bad.write_text(header + "\n" + "\n".join(",".join("x" * len(header.split(","))) for _ in range(50)) + "\n")
    result = mlengine("run", "--runner", "docker", "--data", str(bad), "--out", str(tmp_path / "out"),
                      "--trials", "0", "--epochs", "1", check=False)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mlengine run: error: pipeline")
    failed = re.search(r"--- step (\w+) failed in its container \(exit [1-9]\d*\)", result.stderr)
    assert failed, result.stderr[-3000:]
    assert re.search(rf"\b{failed.group(1)}\b", last.split(" failed", 1)[1])  # the run stops naming the step
    assert "Traceback" in result.stderr.split("--- step", 1)[1]  # the step's own log, on the console
    assert not (tmp_path / "out" / "summary.json").exists()
    assert run_containers(docker_client, run_label_only=True) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_during_a_step_removes_its_container(signum, tmp_path, small_csv, built_images, docker_client):
    process = subprocess.Popen(
        [sys.executable, "-m", "mlengine.cli", "run", "--runner", "docker", "--data", str(small_csv),
         "--out", str(tmp_path), *SMALL_RUN_ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a terminal's Ctrl-C: background jobs of a non-interactive shell (CI) start with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not run_containers(docker_client, run_label_only=True):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no step container started"
            time.sleep(0.2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    assert run_containers(docker_client, run_label_only=True) == []
    assert all(CONTAINER_LABEL not in c.labels for c in run_containers(docker_client))
