"""A training task killed (``kill -9``) mid-training in a real ``mlengine run --workers 2 --ps 1``:
the run recovers and says so in one console line; the task's noise stays in its log file, the
restart is in summary.json, and the model is as good as an undisturbed run's (same data, same seed)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from mlengine.constants import REPLICA_LOGS_SUBDIR
from tests.faults.runs import finish, start_run, stop, summary, training_task, wait_for_line

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

EPOCHS = 10
KILL_AT_EPOCH = 3  # after the chief's epoch-3 line: during epoch 4
RMSE_TOLERANCE = 0.10  # relative to the undisturbed run
NOISE = ("Traceback", "Connection refused", "UNAVAILABLE", "grpc")


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("undisturbed")
    run = start_run(work / "run", EPOCHS, work / "console.log")
    try:
        code, lines = finish(run, work / "console.log")
    finally:
        stop(run)
    assert code == 0, lines[-40:]
    result = summary(work / "run")
    assert result["restarts"] == {"total": 0, "by_role": {"worker": 0, "ps": 0, "chief": 0}}
    return result


def _killed_run(tmp_path: Path, task_type: str, index: int) -> tuple[list[str], dict]:
    out, console = tmp_path / "run", tmp_path / "console.log"
    run = start_run(out, EPOCHS, console)
    try:
        wait_for_line(run, console, f"[chief-0] train: epoch {KILL_AT_EPOCH}/{EPOCHS}")
        training_task(run.pid, task_type, index).send_signal(signal.SIGKILL)
        code, lines = finish(run, console)
    finally:
        stop(run)
    assert code == 0, lines[-40:]
    return lines, summary(out)


def test_a_killed_worker_is_one_console_line_a_recorded_restart_and_the_same_model(tmp_path, undisturbed):
    lines, result = _killed_run(tmp_path, "worker", 1)
    print("\n".join(line for line in lines if "restarted" in line), result["rmse"], undisturbed["rmse"])
    about = [line for line in lines if "worker-1" in line and "ready" not in line]
    assert len(about) == 1, about
    assert about[0].startswith(f"train: worker-1 killed by SIGKILL during epoch {KILL_AT_EPOCH + 1}; restarted 1/2, "
                               "it rejoins the running job"), about
    assert not [line for line in lines if any(word in line for word in NOISE)]
    assert result["restarts"] == {"total": 1, "by_role": {"worker": 1, "ps": 0, "chief": 0}}
    task_log = Path(result["model_dir"]) / REPLICA_LOGS_SUBDIR / "worker-1.log"
    assert task_log.read_text().count("--- worker-1 start ") == 2
    assert abs(result["rmse"] - undisturbed["rmse"]) <= RMSE_TOLERANCE * undisturbed["rmse"], \
        (result["rmse"], undisturbed["rmse"])


def test_a_killed_parameter_server_is_restarted_and_the_chief_resumes_from_its_checkpoint(tmp_path, undisturbed):
    lines, result = _killed_run(tmp_path, "ps", 0)
    restarts = [line for line in lines if "restarted" in line]
    print("\n".join(restarts), result["rmse"], undisturbed["rmse"])
    assert restarts and restarts[0].startswith(f"train: ps-0 killed by SIGKILL during epoch {KILL_AT_EPOCH + 1}; "
                                               "restarted 1/2"), restarts
    assert not [line for line in lines if any(word in line for word in NOISE)]
    assert result["restarts"]["by_role"]["ps"] == 1
    assert result["restarts"]["total"] == len(restarts)
    assert abs(result["rmse"] - undisturbed["rmse"]) <= RMSE_TOLERANCE * undisturbed["rmse"], \
        (result["rmse"], undisturbed["rmse"])
