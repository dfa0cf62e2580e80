"""Deploy logic without kfp: the local server process.

Local: ``deploy_local`` starts (or restarts) ``mlengine serve`` for the blessed model as a
background process on 127.0.0.1, waits (bounded) until the model answers ready, and records pid,
port and URL in ``<state_dir>/serving.json``; ``stop_local`` stops it again (the whole process
group: with ``--workers`` the server spawns worker processes).

Cluster: see ``cluster.py`` (render, apply), ``rollout.py`` (the canary policy) and ``report.py``
(the Markdown artifact the Kubeflow UI shows).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlengine.components.shared.processes import free_ports, stop_process_tree
from mlengine.constants import SERVING_MODEL_SUBDIR, SPEC_FILE
from mlengine.errors import MlengineError

STATE_FILE = "serving.json"
LOG_FILE = "serving.log"
LOCAL_HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0

_children: dict[int, subprocess.Popen] = {}  # servers this process started (reaped on stop)


# --- processes ----------------------------------------------------------------------------------------
def start_server_process(command: list[str], log_path: str | Path,
                         env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``command`` in its own session (so its workers can be stopped as one group), output to ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, close_fds=True)
    _children[process.pid] = process
    return process


def stop_process_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the server's process group, SIGKILL what is left after ``timeout``; True if it ran."""
    child = _children.pop(pid, None)  # our own child must be reaped, or it lingers as a zombie
    stopped = stop_process_tree(pid, timeout, child)
    if child is not None:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)
    return stopped


def wait_until_ready(url: str, name: str | None, process: subprocess.Popen | None, log_path: str | Path | None,
                     timeout: float = READY_TIMEOUT_S) -> str:
    """Poll the server until the model answers ready; return the model name. Bounded by ``timeout``."""
    import requests

    deadline = time.monotonic() + timeout
    session = requests.Session()
    try:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise MlengineError(f"the model server exited with code {process.returncode} before it was ready: "
                                    f"{last_error_line(log_path)}")
            try:
                if name is None:
                    models = session.get(f"{url}/v1/models", timeout=2).json().get("models") or []
                    name = models[0] if models else None
                if name is not None:
                    answer = session.get(f"{url}/v2/models/{name}/ready", timeout=2)
                    if answer.status_code == 200 and answer.json().get("ready"):
                        return name
            except (requests.RequestException, ValueError):
                pass  # not listening yet
            time.sleep(0.25)
    finally:
        session.close()
    raise MlengineError(f"{url}: the model server was not ready within {timeout:.0f} s (log: {log_path})")


def last_error_line(log_path: str | Path | None) -> str:
    """The most telling line of a server log: the one-line ``error:`` if any, else the last line."""
    if log_path is None or not Path(log_path).is_file():
        return "no log"
    lines = [line.strip() for line in Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
             if line.strip()]
    for line in reversed(lines):
        if "error:" in line.lower():
            return line
    return lines[-1] if lines else "empty log"


# --- local deployment -------------------------------------------------------------------------------------
def deploy_local(model_dir: str | Path, *, name: str | None = None, port: int | None = None,
                 state_dir: str | Path, workers: int = 1, host: str = LOCAL_HOST,
                 ready_timeout: float = READY_TIMEOUT_S, extra_args: list[str] | None = None) -> dict[str, Any]:
    """Start (or restart) ``mlengine serve`` for ``model_dir`` in the background; wait until it is ready.

    Returns the recorded state: ``pid, port, host, url, name, predict_url, model_dir, log, started_at``.
    """
    model_dir = Path(model_dir).resolve()
    if not (model_dir / SERVING_MODEL_SUBDIR / "saved_model.pb").is_file() or not (model_dir / SPEC_FILE).is_file():
        raise MlengineError(f"{model_dir}: not a model directory (needs {SERVING_MODEL_SUBDIR}/saved_model.pb "
                            f"and {SPEC_FILE})")
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    stop_local(state_dir)  # a restart replaces the previous server
    port = port or free_ports(1, host)[0]
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "mlengine.cli", "serve", "--model", str(model_dir), "--port", str(port),
               "--host", host, "--workers", str(workers), *(["--name", name] if name else []), *(extra_args or [])]
    log_path = state_dir / LOG_FILE
    print(f"deploy: starting the model server on {url} (log {log_path})", file=sys.stderr, flush=True)
    process = start_server_process(command, log_path)
    try:
        name = wait_until_ready(url, name, process, log_path, timeout=ready_timeout)
    except BaseException:
        stop_process_group(process.pid)
        raise
    state = {
        "pid": process.pid, "port": port, "host": host, "url": url, "name": name,
        "predict_url": f"{url}/v1/models/{name}:predict", "infer_url": f"{url}/v2/models/{name}/infer",
        "model_dir": str(model_dir), "workers": workers, "log": str(log_path),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "create_time": _create_time(process.pid),
    }
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    print(f"deploy: {name} ready at {state['predict_url']}", file=sys.stderr, flush=True)
    return state


def read_local_state(state_dir: str | Path) -> dict[str, Any] | None:
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise MlengineError(f"{path}: not valid JSON; remove it and stop the server by hand") from None


def stop_local(state_dir: str | Path, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the server recorded in ``state_dir`` (if it is still the same process); True if one was stopped."""
    state = read_local_state(state_dir)
    if state is None:
        return False
    stopped = False
    pid = state.get("pid")
    # a recycled pid belongs to another process: only stop the one we started
    if isinstance(pid, int) and _create_time(pid) == state.get("create_time") and state.get("create_time") is not None:
        stopped = stop_process_group(pid, timeout=timeout)
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    if stopped:
        print(f"deploy: stopped the model server (pid {pid})", file=sys.stderr, flush=True)
    return stopped


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
