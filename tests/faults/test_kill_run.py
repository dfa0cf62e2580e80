"""``kill -9`` of a real ``mlengine run`` mid-training: within 10 s none of its processes is left and nothing
writes into its output folder any more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mlengine.constants import ENV_RUN_PID

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

TASK_MODULE = "mlengine.components.train.task"


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _of_run(run_pid: int) -> list[psutil.Process]:
    """Every live process whose environment names ``run_pid`` as its run."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(ENV_RUN_PID) == str(run_pid) and _running(proc):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for path in root.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                files[str(path)] = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            continue
    return files


def test_kill_9_of_mlengine_run_leaves_no_process_and_no_writer(tmp_path: Path) -> None:
    out = tmp_path / "run"
    log = (tmp_path / "console.log").open("wb")
    run = subprocess.Popen([sys.executable, "-m", "mlengine.cli", "run", "--rows", "3000", "--workers", "2", "--ps",
                            "1", "--trials", "0", "--epochs", "500", "--out", str(out)],
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 400
        training = []
        while time.monotonic() < deadline and run.poll() is None:
            for proc in _descendants(run.pid):
                seen.setdefault(proc.pid, proc)
            training = [p for p in seen.values() if _running(p) and TASK_MODULE in " ".join(_cmdline(p))]
            if len(training) >= 3:  # chief/worker(s) and ps are up
                break
            time.sleep(0.2)
        assert len(training) >= 3, (run.poll(), (tmp_path / "console.log").read_text(errors="replace")[-3000:])
        for proc in _descendants(run.pid):
            seen.setdefault(proc.pid, proc)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        gone_by = time.monotonic() + 10
        while time.monotonic() < gone_by and ([p for p in seen.values() if _running(p)] or _of_run(run.pid)):
            time.sleep(0.2)
        left = [p for p in seen.values() if _running(p)] + _of_run(run.pid)
        assert not left, [(p.pid, _cmdline(p)[:4]) for p in left]
        before = _snapshot(out)
        time.sleep(2)  # a writer left behind would touch a log, checkpoint or result in this window
        assert _snapshot(out) == before
    finally:
        log.close()
        for proc in list(seen.values()) + _of_run(run.pid):
            if _running(proc):
                proc.kill()
        if run.poll() is None:
            run.kill()
            run.wait()


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
