"""The local-cluster supervisor with a toy task program (no TensorFlow): fast and deterministic."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mlengine.components.shared.distributed import Topology
from mlengine.components.train import local
from mlengine.components.train.local import run_local_cluster
from mlengine.errors import MlengineError
from tests.distributed_fixtures import child_processes, toy_command
from tests.log_capture import logged_lines

pytestmark = pytest.mark.e2e  # starts servers or processes: not in the quick loop (-m "not e2e")

ROOT = Path(__file__).resolve().parents[3]


class FakeConfig:
    def to_json(self) -> str:
        return json.dumps({"epochs": 1})


@pytest.fixture
def toy(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("TOY_STATE", str(state))

    def run(mode: str, topology: Topology, **kwargs):
        monkeypatch.setenv("TOY_MODE", mode)
        lines: list[str] = []
        kwargs.setdefault("connect_timeout", 30)
        try:
            with logged_lines(local.__name__, lines.append):
                result = run_local_cluster(FakeConfig(), topology, command=toy_command,
                                           work_dir=str(tmp_path / "work"), **kwargs)
        finally:
            run.lines = lines
        return result

    run.state = state
    run.work = tmp_path / "work"
    return run


def test_ps_topology_runs_every_task_with_operator_style_tf_config(toy):
    result = toy("ok", Topology(workers=2, ps=1))
    cluster = result["cluster"]
    assert sorted(cluster) == ["chief", "ps", "worker"]
    assert len(cluster["worker"]) == 2 and len(cluster["ps"]) == 1 and len(cluster["chief"]) == 1
    assert all(address.startswith("127.0.0.1:") for addresses in cluster.values() for address in addresses)
    assert result["topology"]["resolved_strategy"] == "parameter_server"
    assert result["restarts"] == {}
    assert result["restarts_by_role"] == {"ps": 0, "worker": 0, "chief": 0}
    assert any(line.startswith("[worker-1] ") for line in toy.lines)
    assert "[chief-0] rmse=1.5" in toy.lines
    assert child_processes() == []


def test_crashed_worker_is_restarted_and_the_job_finishes(toy):
    result = toy("crash_once_worker", Topology(workers=2, ps=1))
    assert result["restarts"] == {"worker-0": 1}
    assert result["restarts_by_role"] == {"ps": 0, "worker": 1, "chief": 0}
    assert (toy.state / "worker-0.starts").read_text() == "2"
    restarts = [line for line in toy.lines if "restarted" in line]
    assert len(restarts) == 1 and restarts[0].startswith(
        "train: worker-0 exited with code 1; restarted 1/2, it rejoins the running job"), toy.lines
    # the task's own words reach the log only in its file, both starts of it
    assert not any("crashing on purpose" in line for line in toy.lines)
    worker_log = (toy.work / "logs" / "worker-0.log").read_text()
    assert worker_log.count("--- worker-0 start ") == 2 and "worker crashing on purpose" in worker_log
    assert child_processes() == []


def test_restarts_used_up_fail_with_the_replica_reason(toy):
    with pytest.raises(MlengineError, match=r"worker-0 failed \(exit code 1\) and its 1 restart\(s\) are used up: "
                                            r"Error: worker always crashes"):
        toy("crash_always_worker", Topology(workers=1, ps=1), max_restarts=1)
    assert (toy.state / "worker-0.starts").read_text() == "2"
    assert child_processes() == []


def test_user_error_of_the_chief_is_final_without_restart(toy):
    with pytest.raises(MlengineError, match=r"chief-0 failed \(exit code 2 \(configuration or data error\)\).*epochz"):
        toy("user_error", Topology(workers=1, ps=1))
    assert (toy.state / "chief-0.starts").read_text() == "1"
    assert child_processes() == []


def test_worker_that_never_becomes_ready_fails_within_the_connect_timeout(toy):
    started = time.monotonic()
    with pytest.raises(MlengineError, match=r"worker-1 at 127\.0\.0\.1:\d+ did not become ready within 2 s"):
        toy("never_ready_worker", Topology(workers=2, ps=1), connect_timeout=2)
    assert time.monotonic() - started < 60  # bounded: not the 600 s the toy worker would sleep
    assert child_processes() == []


def test_overall_timeout_ends_a_run_that_does_not_finish(toy):
    with pytest.raises(MlengineError, match="did not finish within 3 s"):
        toy("sleep_chief", Topology(workers=1, ps=1), timeout=3)
    assert child_processes() == []


def test_port_in_use_is_a_clear_error(toy):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MlengineError, match=rf"port 127\.0\.0\.1:{port} is already in use"):
            toy("ok", Topology(workers=1, ps=1), base_port=port)
    assert not list(toy.state.iterdir())  # nothing was started


@pytest.mark.parametrize("topology, message", [
    (Topology(workers=2, ps=1, strategy="all_reduce"), "does not use parameter servers"),
    (Topology(workers=0), "workers must be at least 1"),
    (Topology(workers=1, ps=-1), "ps cannot be negative"),
    (Topology(workers=2, strategy="bogus"), "strategy must be one of"),
    (Topology(workers=2, ps=0, strategy="parameter_server"), "needs at least 1 ps"),
    (Topology(workers=1, ps=1, chief=False), "needs a chief"),
    (Topology(workers=3, strategy="none"), "runs one process"),
    (Topology(workers="2"), "workers must be an integer"),
])
def test_bad_topologies_fail_fast(toy, topology, message):
    with pytest.raises(MlengineError, match=message):
        toy("ok", topology)
    assert not list(toy.state.iterdir())


def test_too_many_local_processes_is_refused(toy):
    with pytest.raises(MlengineError, match="more than 32"):
        toy("ok", Topology(workers=40, ps=2))


def test_sigint_to_the_supervisor_leaves_no_processes(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from mlengine.components.shared.distributed import Topology
        from mlengine.components.train.local import run_local_cluster
        from tests.distributed_fixtures import toy_command
        class Config:
            def to_json(self):
                return json.dumps({{}})
        try:
            run_local_cluster(Config(), Topology(workers=2, ps=1), command=toy_command)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """)
    env = {**os.environ, "TOY_MODE": "sleep_chief", "TOY_STATE": str(state)}
    # SIGINT as a terminal delivers it: a test worker may run with SIGINT ignored, which children inherit
    supervisor = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while len(list(state.glob("*.pid1"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int(p.read_text()) for p in state.glob("*.pid1")]
        assert len(pids) == 4
        assert all(psutil.pid_exists(pid) for pid in pids)
        supervisor.send_signal(signal.SIGINT)
        output, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    assert supervisor.returncode == 130, output
    assert "interrupted" in output
    survivors = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
