"""Processes the suite starts on one machine: training tasks, tuning trials, the local model server.

One place for what all of them need: the exit-code protocol between a program and its
supervisor, dying with the parent (no orphans after a ``kill -9`` of the supervisor), tearing a
process group down (SIGTERM, then SIGKILL after a grace period, reaped), and free loopback ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable

from mlengine.errors import MlengineError

HOST = "127.0.0.1"
EXIT_OK = 0
EXIT_CRASH = 1  # anything unexpected: worth a restart
EXIT_USER_ERROR = 2  # bad config or data: a restart cannot help
EXIT_PORT_IN_USE = 3  # the task's address cannot be bound: a restart on the same port cannot help
EXIT_DIVERGED = 4  # training ended with a non-finite objective
FINAL_EXIT_CODES = (EXIT_USER_ERROR, EXIT_PORT_IN_USE)
EXIT_MEANINGS = {EXIT_USER_ERROR: "configuration or data error", EXIT_PORT_IN_USE: "port in use",
                 EXIT_DIVERGED: "training diverged"}
_PR_SET_PDEATHSIG = 1


class PortInUseError(MlengineError):
    """An address this process must listen on is taken."""


def describe_exit(code: int | None) -> str:
    """``"exit code 2 (configuration or data error)"``, ``"killed by SIGKILL"``, ``"still running"``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    meaning = EXIT_MEANINGS.get(code)
    return f"exit code {code} ({meaning})" if meaning else f"exit code {code}"


def die_with_parent(parent_pid: int | str | None, sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies; exit now if it already has."""
    if not parent_pid or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent_pid):  # the parent died before prctl took effect
        os._exit(EXIT_CRASH)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit(143) in the main thread, so ``finally`` blocks stop the children.

    (Python's default SIGTERM ends the process at once and leaves detached servers running.)"""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def exit_hard(code: int) -> None:
    """Flush and ``os._exit``: a ParameterServerStrategy coordinator keeps threads that block a normal exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_program(run: Callable[[], int], prefix: str) -> int:
    """Run a task program's body and map its outcome to the exit-code protocol above."""
    try:
        return run()
    except PortInUseError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr, flush=True)
        return EXIT_PORT_IN_USE
    except MlengineError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except SystemExit as err:  # argparse
        return err.code if isinstance(err.code, int) else EXIT_USER_ERROR
    except BaseException:
        traceback.print_exc()
        return EXIT_CRASH


# --- tearing down -------------------------------------------------------------------------------
def kill_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def terminate_all(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM every process group, SIGKILL what is still alive after ``grace`` seconds, reap them."""
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        # the group too: a task that forked helpers must not leave them behind
        kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def stop_process_tree(pid: int, timeout: float, child: subprocess.Popen | None = None) -> bool:
    """Stop a detached process group led by ``pid`` (and its descendants); True if it was running.

    ``child`` is our own Popen of ``pid`` when we started it: polled so it does not linger as a zombie.
    """
    import psutil

    try:
        leader = psutil.Process(pid)
        members = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        for member in members:
            _signal(member, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        if not [m for m in members if _alive(m)]:
            break
        time.sleep(0.1)
    else:
        for member in members:
            _signal(member, signal.SIGKILL)
        kill_group(pid, signal.SIGKILL)
        psutil.wait_procs(members, timeout=5)
    return True


def _signal(process, sig: int) -> None:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        process.send_signal(sig)


def _alive(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- ports --------------------------------------------------------------------------------------
def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports free on ``host`` right now (all held open together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = HOST) -> int:
    """One port free on ``host`` right now."""
    return free_ports(1, host)[0]


def check_ports_free(ports: list[int], host: str = HOST) -> None:
    """A one-line error naming the first port of ``ports`` that something already listens on."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as err:
                raise PortInUseError(f"port {host}:{port} is already in use ({err.strerror}); "
                                     "choose another port or stop what listens there") from None
