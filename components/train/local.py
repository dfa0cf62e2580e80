"""Run a distributed training topology as local processes, with the TF_CONFIG a TFJob would inject.

``run_local_cluster`` picks free 127.0.0.1 ports, starts one ``task.py`` process per role
(chief, ps, worker) in its own process group, writes each task's whole output to its own log
file (``<logs_dir>/worker-1.log``, every start of the task appended) and passes on only the
task's own progress lines, prefixed with the role (``[worker-1] train: ...``): TensorFlow's and
gRPC's messages and the tracebacks of a task being restarted stay in its file. It supervises them:

- the chief (worker 0 without a chief) decides: its exit 0 is success, and the result is what it
  wrote to its result file;
- a task that crashes is restarted on the same port, up to ``max_restarts`` times per task, and
  says so in one line (``train: worker-1 killed by SIGKILL during epoch 4; restarted 1/2, ...``):
  under parameter_server a worker comes back into the running job (the coordinator re-sends its
  work), a restarted chief resumes from the last BackupAndRestore checkpoint; under all_reduce
  the whole group restarts together (a collective cannot continue without a member) and resumes
  from the checkpoint;
- exit code 2 (a config/data error) or 3 (port taken) is final: restarting cannot help;
- a task that does not report ready within ``connect_timeout`` seconds (never started its server,
  never connected to the cluster) ends the run with an error naming it; ``timeout`` bounds the run;
- every process is torn down on success, failure, exception, Ctrl-C and SIGTERM (SIGTERM to the
  process group, SIGKILL after a grace period), and children get SIGTERM if the supervisor dies.

A topology of one process (1 worker, no ps) trains in this process: it is the same
``trainer.train`` call without a strategy, and a subprocess would only add a second TensorFlow
start-up (seconds) and a result hand-over.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from mlengine.components.shared.distributed import Topology, tf_config_json
from mlengine.components.shared.processes import (
    FINAL_EXIT_CODES,
    HOST,
    check_ports_free,
    describe_exit,
    free_ports,
    terminate_all,
)
from mlengine.components.train.task import READY_MARKER
from mlengine.constants import ENV_LEGACY_KERAS, ENV_TF_CONFIG, HISTORY_FILE, REPLICA_LOGS_SUBDIR
from mlengine.errors import MlengineError

MAX_LOCAL_TASKS = 32
TERMINATE_GRACE_SECONDS = 5.0
PEERS_FINISH_SECONDS = 60.0  # all_reduce: how long the other workers may take to exit after the chief
TAIL_LINES = 20
TASK_MODULE = "mlengine.components.train.task"
# what a task says itself (trainer progress, its ready and error lines, Katib's metric lines): the
# rest of its output (TensorFlow, gRPC, tracebacks) only goes to its log file
PROGRESS_LINE = re.compile(r"^(train|mlengine-task)\b[^:]{0,40}:|^\w+=[-+.\w]+$")
log = logging.getLogger(__name__)


# --- processes ------------------------------------------------------------------------------------
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def _terminate(procs: list[subprocess.Popen], grace: float = TERMINATE_GRACE_SECONDS) -> None:
    terminate_all(procs, grace)
    with _LIVE_LOCK:
        _LIVE.difference_update(procs)


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    if procs:
        _terminate(procs, grace=2.0)


class Task:
    """One supervised process of the cluster (restarts keep the object, its port and its log tail)."""

    def __init__(self, task_type: str, index: int, port: int):
        self.task_type = task_type
        self.index = index
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.ready = False
        self.finished = False  # exited 0 (all_reduce peers) and needs no more attention
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.reader: threading.Thread | None = None
        self.log_file: Path | None = None  # the task's whole output, every start appended

    def log_note(self) -> str:
        return f" (its output: {self.log_file})" if self.log_file is not None else ""

    @property
    def name(self) -> str:
        return f"{self.task_type}-{self.index}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def last_error_line(self) -> str:
        for line in reversed(self.tail):
            if "error" in line.lower() or "exception" in line.lower():
                return line.strip()
        return self.tail[-1].strip() if self.tail else ""

    def start(self, command: list[str], env: dict[str, str], lines: queue.Queue) -> None:
        self.ready = False
        self.finished = False
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True, text=True,
                                         encoding="utf-8", errors="replace", bufsize=1)
        except OSError as err:
            raise MlengineError(f"{self.name}: cannot start {command[0]}: {err}") from None
        with _LIVE_LOCK:
            _LIVE.add(self.proc)
        proc = self.proc
        sink = self.log_file.open("a", encoding="utf-8", buffering=1) if self.log_file is not None else None
        if sink is not None:
            sink.write(f"--- {self.name} start {self.restarts + 1} (pid {proc.pid}) at "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")

        def pump():
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    if sink is not None:
                        sink.write(line if line.endswith("\n") else line + "\n")
                    lines.put((self, proc, line.rstrip("\n")))
            finally:
                proc.stdout.close()
                if sink is not None:
                    sink.close()

        self.reader = threading.Thread(target=pump, name=f"log-{self.name}", daemon=True)
        self.reader.start()


class _Terminated(KeyboardInterrupt):
    """SIGTERM to the supervisor: unwinds like Ctrl-C so the finally block tears everything down."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_command(task: Task, config_file: Path, result_file: Path) -> list[str]:
    return [sys.executable, "-m", TASK_MODULE, "--config", str(config_file), "--result-file", str(result_file)]


def run_local_cluster(config, topology: Topology, *, max_restarts: int = 2, connect_timeout: float = 120,
                      timeout: float | None = None, base_port: int | None = None, work_dir: str | None = None,
                      logs_dir: str | None = None,
                      command: Callable[[Task, Path, Path], list[str]] | None = None) -> dict:
    """Train ``config`` (a TrainConfig) on ``topology`` as local processes; return the chief's result.

    ``base_port`` uses consecutive ports from there (checked free) instead of random free ones;
    ``command`` replaces the task program (tests use toy programs). Each task's whole output goes
    to ``logs_dir/<task>.log`` (default: ``logs/`` in the model directory, or in the work
    directory when the config names none); this module's logger gets the tasks' progress lines and
    one line per restart. Raises ``MlengineError`` on a bad topology, a port in use, a task that never becomes
    ready, a failure after the restarts, a timeout.
    """
    topology.validate()
    if max_restarts < 0:
        raise MlengineError(f"max_restarts cannot be negative, got {max_restarts}")
    if topology.is_single_process and command is None:
        from mlengine.components.train.trainer import train

        log.info("local cluster: one process (workers=1, ps=0): training in this process")
        result = train(config, None, is_chief=True)
        return {**result, "topology": topology.to_dict(), "restarts": {}, "restarts_by_role": {}}
    counts = topology.task_counts()
    total = sum(counts.values())
    if total > MAX_LOCAL_TASKS:
        raise MlengineError(f"topology: {total} local processes is more than {MAX_LOCAL_TASKS}; "
                            "run large topologies as a TFJob on a cluster")
    if base_port is not None:
        ports = list(range(base_port, base_port + total))
        check_ports_free(ports)
    else:
        ports = free_ports(total)
    tasks: list[Task] = []
    port_iter = iter(ports)
    for task_type in ("ps", "worker", "chief"):  # servers first: the chief connects to them
        tasks += [Task(task_type, i, next(port_iter)) for i in range(counts.get(task_type, 0))]
    cluster = {t: [task.address for task in tasks if task.task_type == t] for t in ("chief", "worker", "ps")
               if counts.get(t)}
    lead = next(t for t in tasks if t.task_type == "chief") if topology.has_chief else \
        next(t for t in tasks if t.task_type == "worker" and t.index == 0)
    strategy = topology.resolved_strategy

    owned_dir = None
    if work_dir is None:
        owned_dir = tempfile.mkdtemp(prefix="mlengine-cluster-")
        work_dir = owned_dir
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "train_config.json"
    result_file = work / "result.json"
    with contextlib.suppress(FileNotFoundError):
        result_file.unlink()
    payload = json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)
    config_file.write_text(json.dumps({**payload, "strategy": strategy}, indent=1), encoding="utf-8")
    model_dir = _model_dir_of(config)
    logs = Path(logs_dir) if logs_dir else (Path(model_dir) if model_dir else work) / REPLICA_LOGS_SUBDIR
    logs.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        task.log_file = logs / f"{task.name}.log"
        with contextlib.suppress(FileNotFoundError):
            task.log_file.unlink()  # this run's output only
    make_command = command or default_command
    lines: queue.Queue = queue.Queue()
    base_env = dict(os.environ)
    base_env.update({"PYTHONUNBUFFERED": "1", ENV_LEGACY_KERAS: "1", "MLENGINE_SUPERVISOR_PID": str(os.getpid())})
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def start(task: Task) -> None:
        env = dict(base_env)
        env[ENV_TF_CONFIG] = tf_config_json(cluster, task.task_type, task.index)
        task.start(make_command(task, config_file, result_file), env, lines)

    def restart_all(reason_task: Task) -> None:
        _terminate([t.proc for t in tasks if t.proc is not None])
        _drain(lines, quiet_after=0.0)
        for task in tasks:
            start(task)

    def fail(message: str) -> MlengineError:
        return MlengineError(f"local cluster ({_shape(counts, strategy)}): {message}")

    log.info(f"train: local cluster: {_shape(counts, strategy)} on {HOST} ports {ports[0]}..{ports[-1]}; "
             f"each task's full output in {logs}")
    began = time.monotonic()
    try:
        with _sigterm_as_interrupt():
            for task in tasks:
                start(task)
            while True:
                _pump(lines, wait=0.2)
                now = time.monotonic()
                for task in tasks:
                    code = task.proc.poll() if task.proc is not None else None
                    if code is None:
                        if not task.ready and now - task.started_at > connect_timeout:
                            raise fail(f"{task.name} at {task.address} did not become ready within "
                                       f"{connect_timeout:.0f} s (it never started its server or never connected "
                                       f"to the cluster); last output: {task.last_error_line() or 'none'}"
                                       + task.log_note())
                        continue
                    if task.finished:
                        continue
                    task.reader.join(timeout=5)  # every line of the exited task is queued
                    _pump(lines, wait=0.0)
                    if code == 0 and task is lead:
                        _finish_peers(tasks, lead, strategy, lines)
                        return _result(result_file, topology, tasks, fail)
                    if code == 0 and strategy == "all_reduce":
                        task.finished = True  # a worker done before the chief: fine
                        continue
                    reason = f"{task.name} failed ({describe_exit(code)})"
                    last = task.last_error_line()
                    if code in FINAL_EXIT_CODES:
                        raise fail((f"{reason}: {last}" if last else reason) + task.log_note())
                    if task.restarts >= max_restarts:
                        raise fail(f"{reason} and its {max_restarts} restart(s) are used up"
                                   + (f": {last}" if last else "") + task.log_note())
                    task.restarts += 1
                    log.info(restart_line(task, code, max_restarts, strategy, lead, model_dir))
                    if strategy == "all_reduce":
                        restart_all(task)
                        break
                    start(task)
                if timeout is not None and time.monotonic() - began > timeout:
                    raise fail(f"did not finish within {timeout:.0f} s")
    finally:
        _terminate([t.proc for t in tasks if t.proc is not None])
        _drain(lines, quiet_after=0.2)
        if owned_dir is not None:
            import shutil

            shutil.rmtree(owned_dir, ignore_errors=True)


def _model_dir_of(config) -> str | None:
    """The config's local model directory (None: a dict or toy config without one, or an s3:// URI)."""
    model_dir = config.get("model_dir") if isinstance(config, dict) else getattr(config, "model_dir", None)
    return model_dir if model_dir and "://" not in str(model_dir) else None


def epochs_done(model_dir: str | None) -> int:
    """Epochs the chief has recorded in history.json so far (0: none yet, or no model directory)."""
    if not model_dir:
        return 0
    try:
        history = json.loads((Path(model_dir) / HISTORY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    epochs = history.get("epoch") if isinstance(history, dict) else None
    return int(epochs[-1]) if epochs else 0


def restart_line(task: Task, code: int, max_restarts: int, strategy: str, lead: Task, model_dir: str | None) -> str:
    """The one line a restart is: who, how it ended, during which epoch, and where training goes on from."""
    done = epochs_done(model_dir)
    when = f" during epoch {done + 1}" if model_dir else ""
    line = f"train: {task.name} {_ended(code)}{when}; restarted {task.restarts}/{max_restarts}"
    if strategy == "all_reduce":
        line += " with the whole group (all_reduce)"
    checkpoint = f"the epoch-{done} checkpoint" if done else "the start (no epoch was finished)"
    if strategy == "all_reduce" or task is lead:
        line += f", resuming from {checkpoint}"
    elif task.task_type == "worker":
        line += ", it rejoins the running job"
    else:  # a ps: the variables it held are gone; the chief fails and resumes from the checkpoint
        line += f", the chief resumes from {checkpoint}"
    return line + f"{task.log_note()}"


def _ended(code: int) -> str:
    """``killed by SIGKILL`` / ``exited with code 1``, from describe_exit's words."""
    text = describe_exit(code)
    return text if text.startswith("killed") else "exited with " + text.removeprefix("exit ")


def _shape(counts: dict[str, int], strategy: str) -> str:
    return f"{strategy}, " + ", ".join(f"{n} {t}" for t, n in counts.items())


def _pump(lines: queue.Queue, wait: float) -> None:
    """Log queued task output; mark tasks ready when they say so."""
    try:
        item = lines.get(timeout=wait) if wait > 0 else lines.get_nowait()
    except queue.Empty:
        return
    while True:
        task, proc, line = item
        task.tail.append(line)
        if READY_MARKER in line and proc is task.proc:
            task.ready = True
        if task.log_file is None or PROGRESS_LINE.search(line):
            log.info("[%s] %s", task.name, line)
        try:
            item = lines.get_nowait()
        except queue.Empty:
            return


def _drain(lines: queue.Queue, quiet_after: float) -> None:
    _pump(lines, wait=quiet_after)


def _finish_peers(tasks: list[Task], lead: Task, strategy: str, lines: queue.Queue) -> None:
    """all_reduce: let the other workers end on their own (they finish the same last step)."""
    if strategy != "all_reduce":
        return  # ps and workers serve until terminated
    deadline = time.monotonic() + PEERS_FINISH_SECONDS
    for task in tasks:
        if task is lead or task.proc is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            task.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        _pump(lines, wait=0.0)


def _result(result_file: Path, topology: Topology, tasks: list[Task], fail) -> dict:
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as err:
        raise fail(f"the chief exited 0 but wrote no readable result ({err})") from None
    by_role: dict[str, int] = {}
    for task in tasks:  # every role present, zero included: "no restart" is a fact worth reporting
        by_role[task.task_type] = by_role.get(task.task_type, 0) + task.restarts
    return {**result, "topology": topology.to_dict(),
            "restarts": {t.name: t.restarts for t in tasks if t.restarts}, "restarts_by_role": by_role}
