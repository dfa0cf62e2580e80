"""``kill -9`` of a real ``mlengine run --workers 2 --ps 1`` during training (after the chief's
epoch-2 line): within 10 s none of its processes is left and nothing writes into its output
folder any more."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.faults.runs import TASK_MODULE, cmdline, descendants, of_run, running, start_run, stop, wait_for_line

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

KILL_AT_EPOCH = 2
GONE_WITHIN_S = 10.0
QUIET_FOR_S = 2.0  # a writer left behind would touch a log, checkpoint or result in this window


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
    out, console = tmp_path / "run", tmp_path / "console.log"
    run = start_run(out, 500, console)
    seen: dict[int, psutil.Process] = {}
    try:
        wait_for_line(run, console, f"[chief-0] train: epoch {KILL_AT_EPOCH}/500")
        for proc in descendants(run.pid):
            seen.setdefault(proc.pid, proc)
        training = [p for p in seen.values() if running(p) and TASK_MODULE in " ".join(cmdline(p))]
        assert len(training) == 4, [cmdline(p)[-4:] for p in training]  # chief, 2 workers, ps
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        gone_by = time.monotonic() + GONE_WITHIN_S
        while time.monotonic() < gone_by and ([p for p in seen.values() if running(p)] or of_run(run.pid)):
            time.sleep(0.2)
        left = [p for p in seen.values() if running(p)] + of_run(run.pid)
        assert not left, [(p.pid, cmdline(p)[:4]) for p in left]
        before = _snapshot(out)
        time.sleep(QUIET_FOR_S)
        assert _snapshot(out) == before
    finally:
        for proc in seen.values():
            if running(proc):
                proc.kill()
        stop(run)
