"""Helpers of the model-server tests: start a server process on 127.0.0.1, stop it, raw HTTP.

Self-contained on purpose (only the standard library, psutil and requests): these tests start
several servers and must clean up every process on success, failure and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
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
READY_TIMEOUT_S = 240.0  # TF import + SavedModel load on a busy 2-core machine
STOP_TIMEOUT_S = 30.0
SERVER_MODULE_FAULTY = "tests.components.deploy.faulty_server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def serve_command(model_dir: Path, port: int, name: str, *extra: str) -> list[str]:
    """``mlengine serve`` as a user runs it."""
    return [sys.executable, "-m", "mlengine.cli", "serve", "--model", str(model_dir), "--port", str(port),
            "--name", name, *extra]


def faulty_command(model_dir: Path, port: int, name: str, *extra: str) -> list[str]:
    """The same server with a model that raises or stalls on marked rows (``faulty_server.py``)."""
    return [sys.executable, "-m", SERVER_MODULE_FAULTY, "--model", str(model_dir), "--port", str(port),
            "--name", name, *extra]


@contextlib.contextmanager
def running_server(command: list[str], log: Path, name: str, port: int, env: dict | None = None) -> Iterator[dict]:
    """Start ``command`` in its own process group, wait until ``name`` is ready, stop the group at exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[3]
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), environment.get("PYTHONPATH")]))
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=environment, cwd=root)
    url = f"http://{HOST}:{port}"
    try:
        wait_until_ready(url, name, process, log)
        yield {"url": url, "port": port, "name": name, "log": log, "process": process}
    finally:
        stop_group(process)


def wait_until_ready(url: str, name: str, process: subprocess.Popen, log: Path,
                     timeout: float = READY_TIMEOUT_S) -> None:
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


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(raw: bytes) -> int | None:
    """The status code of the first HTTP response in ``raw``."""
    parts = raw.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and raw.startswith(b"HTTP/1.1") and parts[1].isdigit() else None


def serving_log_lines(folder: Path) -> list[dict]:
    """Every line of the serving log folder, oldest file first."""
    lines = []
    for path in sorted(Path(folder).glob("serving-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


def wait_for(condition, timeout: float, interval: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
