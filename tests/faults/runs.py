"""A real ``mlengine run`` on a small local parameter-server cluster, watched from outside: its
console, its training tasks (found by their TF_CONFIG), and kills at a chosen epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from mlengine.constants import ENV_RUN_PID, ENV_TF_CONFIG

TASK_MODULE = "mlengine.components.train.task"
# 6,000 generated rows, 2 workers and a ps: about a minute a run on two cores
RUN_ARGS = ["--rows", "6000", "--workers", "2", "--ps", "1", "--trials", "0", "--batch-size", "128",
            "--learning-rate", "0.01"]
RUN_TIMEOUT_S = 420


def start_run(out: Path, epochs: int, console: Path) -> subprocess.Popen:
    """``mlengine run`` in its own session, its console into ``console``."""
    handle = console.open("wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "mlengine.cli", "run", *RUN_ARGS, "--epochs", str(epochs),
                                 "--out", str(out)], stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        handle.close()


def wait_for_line(run: subprocess.Popen, console: Path, prefix: str, timeout: float = RUN_TIMEOUT_S) -> None:
    """Until a console line starts with ``prefix``; fails with the console's tail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in console.read_text(errors="replace").splitlines()):
            return
        if run.poll() is not None:
            break
        time.sleep(0.2)
    tail = console.read_text(errors="replace")[-3000:]
    raise AssertionError(f"no console line {prefix!r} (exit {run.poll()}): {tail}")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def training_task(run_pid: int, task_type: str, index: int) -> psutil.Process:
    """The live training process of ``task_type``-``index`` under the run (by its TF_CONFIG)."""
    for proc in descendants(run_pid):
        if TASK_MODULE not in " ".join(cmdline(proc)) or not running(proc):
            continue
        try:
            task = json.loads(proc.environ().get(ENV_TF_CONFIG, "{}")).get("task", {})
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
            continue
        if task.get("type") == task_type and task.get("index") == index:
            return proc
    raise AssertionError(f"no live {task_type}-{index} under pid {run_pid}")


def of_run(run_pid: int) -> list[psutil.Process]:
    """Every live process whose environment names ``run_pid`` as its run."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(ENV_RUN_PID) == str(run_pid) and running(proc):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def finish(run: subprocess.Popen, console: Path, timeout: float = RUN_TIMEOUT_S) -> tuple[int, list[str]]:
    """The run's exit code and console lines (killed, with everything it started, past ``timeout``)."""
    try:
        code = run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(run)
        raise
    return code, console.read_text(errors="replace").splitlines()


def stop(run: subprocess.Popen) -> None:
    """Kill the run and whatever it started that is still alive (a test's cleanup)."""
    left = descendants(run.pid) if run.poll() is None else []
    if run.poll() is None:
        os.killpg(run.pid, 9)
        run.wait()
    for proc in left + of_run(run.pid):
        if running(proc):
            proc.kill()


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))
