"""A local run's processes end with it, and one run at a time owns an output folder.

``mlengine run`` calls :func:`claim_run` (exports its pid and start time, takes an ``flock`` on
``OUT/.lock``). Every component process calls :func:`watch_run` (``setup_logging`` does): a daemon
thread checks every half second that the run is alive and, once it is gone (``kill -9`` included),
kills this process's children and exits, so nothing keeps writing into an abandoned run. The
processes kfp.local starts are not ours to configure; this is how they learn the run died.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mlengine.constants import ENV_RUN_PID, ENV_RUN_STARTED, RUN_LOCK_FILE, RUN_WATCHDOG_SECONDS
from mlengine.errors import MlengineError

EXIT_RUN_GONE = 137
_held: list[IO[str]] = []  # the open lock file: closing it (or dying) frees the lock
_watching = threading.Event()


def _started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def claim_run(out_dir: str | Path) -> Path:
    """Own ``out_dir`` for this process (one line naming the live owner if another run holds it).

    A lock left by a killed run is free (``flock`` dies with its holder) and is taken over.
    """
    import fcntl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock_path = out / RUN_LOCK_FILE
    handle = lock_path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise MlengineError(f"{out}: another mlengine run is using this folder ({owner}); wait for it, stop it "
                            "or choose another --out") from None
    started = _started(os.getpid()) or time.time()
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started))}\n")
    handle.flush()
    _held.append(handle)
    os.environ[ENV_RUN_PID] = str(os.getpid())
    os.environ[ENV_RUN_STARTED] = repr(started)
    return lock_path


def release_run() -> None:
    """Free the folder lock and forget the run (a process's exit frees the lock too)."""
    while _held:
        _held.pop().close()
    os.environ.pop(ENV_RUN_PID, None)
    os.environ.pop(ENV_RUN_STARTED, None)


def leave_run() -> None:
    """This process (and what it starts) is meant to outlive the run that started it: no watchdog."""
    os.environ.pop(ENV_RUN_PID, None)
    os.environ.pop(ENV_RUN_STARTED, None)


@contextlib.contextmanager
def owning_run(out_dir: str | Path) -> Iterator[Path]:
    """:func:`claim_run` for the duration of a ``with`` block (an in-process caller may run again)."""
    lock_path = claim_run(out_dir)
    try:
        yield lock_path
    finally:
        release_run()


def run_alive(pid: int, started: float | None) -> bool:
    """Whether the run process ``pid`` (created at ``started``, when known) still lives (a zombie does not)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return started is None or abs(created - started) < 1.0


def watch_run(interval: float = RUN_WATCHDOG_SECONDS) -> bool:
    """Start the watchdog thread when this process belongs to a run (not the run itself); idempotent."""
    raw = os.environ.get(ENV_RUN_PID, "")
    if not raw.isdigit() or int(raw) == os.getpid() or _watching.is_set():
        return False
    pid = int(raw)
    try:
        started = float(os.environ.get(ENV_RUN_STARTED, ""))
    except ValueError:
        started = None
    _watching.set()
    threading.Thread(target=_watch, args=(pid, started, interval), name="mlengine-run-watchdog",
                     daemon=True).start()
    return True


def _watch(pid: int, started: float | None, interval: float) -> None:
    parent = os.getppid()  # a parent that dies re-parents us: as final as the run's end
    while run_alive(pid, started) and os.getppid() == parent:
        time.sleep(interval)
    kill_own_children()
    os._exit(EXIT_RUN_GONE)


def kill_own_children() -> None:
    """SIGKILL every descendant of this process (the training tasks, their servers)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=3)
