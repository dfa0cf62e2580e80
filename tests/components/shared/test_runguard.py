"""A run's processes end with it (kill -9 included) and one live run owns an output folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mlengine.components.shared.runguard import owning_run, release_run
from mlengine.constants import ENV_RUN_PID, ENV_RUN_STARTED, RUN_LOCK_FILE
from mlengine.errors import MlengineError

pytestmark = pytest.mark.faults

# a stand-in for `mlengine run`: claims the folder, starts a component-like child, waits
FAKE_RUN = textwrap.dedent("""
    import subprocess, sys, time
    from mlengine.components.shared.runguard import claim_run
    claim_run(sys.argv[1])
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2]])
    print(child.pid, flush=True)
    time.sleep(600)
""")
# a stand-in for a kfp executor: starts the watchdog (as setup_logging does) and a grandchild in its own session
FAKE_COMPONENT = textwrap.dedent("""
    import subprocess, sys, time
    from mlengine.components.shared.logs import setup_logging
    setup_logging()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    time.sleep(600)
""")


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_kill_9_of_the_run_ends_its_component_and_grandchild(tmp_path: Path) -> None:
    run = subprocess.Popen([sys.executable, "-c", FAKE_RUN, str(tmp_path), FAKE_COMPONENT], stdout=subprocess.PIPE,
                           text=True, start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        run.stdout.readline()
        assert _wait_for(lambda: len(_tree(run.pid)) >= 2, 30), "the component and its child did not start"
        descendants = _tree(run.pid)
        assert (tmp_path / RUN_LOCK_FILE).read_text().startswith(f"pid {run.pid} started ")
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        assert _wait_for(lambda: not _alive(descendants), 10), _alive(descendants)
    finally:
        for proc in _alive(descendants) + _tree(run.pid):
            proc.kill()
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_live_run_holds_the_folder_and_a_dead_ones_lock_is_taken_over(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", FAKE_RUN, str(tmp_path), "import time; time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        holder.stdout.readline()  # the lock is taken before the child starts
        children = _tree(holder.pid)
        refused = rf"another mlengine run is using this folder \(pid {holder.pid} "
        with pytest.raises(MlengineError, match=refused), owning_run(tmp_path):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with owning_run(tmp_path) as lock:
            assert lock.read_text().startswith(f"pid {os.getpid()} started ")
            assert os.environ[ENV_RUN_PID] == str(os.getpid())
        assert ENV_RUN_PID not in os.environ and ENV_RUN_STARTED not in os.environ
    finally:
        release_run()
        for proc in _alive(children) + _tree(holder.pid):
            proc.kill()
        if holder.poll() is None:
            holder.kill()
            holder.wait()
