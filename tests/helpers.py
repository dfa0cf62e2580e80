"""Helpers every test folder shares: a free loopback port, and a server process started, awaited and stopped.

Self-contained on purpose (only the standard library, psutil and requests, no mlengine code): the
tests start servers with it and must clean up every process on success, failure and Ctrl-C, whatever
state the code under test is in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 240.0  # TF import + SavedModel load on a busy 2-core machine
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def serve_command(model_dir: Path, port: int, name: str, *extra: str) -> list[str]:
    """``mlengine serve`` as a user runs it."""
    return [sys.executable, "-m", "mlengine.cli", "serve", "--model", str(model_dir), "--port", str(port),
            "--name", name, *extra]


@contextlib.contextmanager
def running_server(command: list[str], log: Path, name: str, port: int, env: dict | None = None,
                   timeout: float = READY_TIMEOUT_S) -> Iterator[dict]:
    """Start ``command`` in its own process group, wait until model ``name`` is ready, stop the group at exit.

    Yields a dict with ``url``, ``port``, ``name``, ``log`` and ``process``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=environment, cwd=REPO)
    url = f"http://{HOST}:{port}"
    try:
        wait_until_ready(url, name, process, log, timeout)
        yield {"url": url, "port": port, "name": name, "log": log, "process": process}
    finally:
        stop_group(process)


def wait_until_ready(url: str, name: str, process: subprocess.Popen, log: Path,
                     timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``/v2/models/<name>/ready`` until true; RuntimeError if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(requests.RequestException, ValueError):
            if requests.get(f"{url}/v2/models/{name}/ready", timeout=2).json().get("ready"):
                return
        time.sleep(0.25)
    raise RuntimeError(f"{url}: not ready within {timeout:.0f} s")


def stop_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM the process group, SIGKILL it after ``timeout``; return the leader's exit code."""
    import psutil

    try:
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        members = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait(timeout=10)
    psutil.wait_procs(members, timeout=10)  # spawned workers too: no orphans
    return code


def wait_for(condition, timeout: float, interval: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
