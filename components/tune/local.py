"""The local tuning study: optuna drives trials that run as separate processes on this machine.

The parent process owns the study (an optuna RDB study in ``out_dir/study.db``, so a re-run
resumes instead of starting over); each trial runs in its own spawned process (transform with
the trial's ``nbuckets``, then training), at most ``parallel_trials`` at a time. A trial process
sends its per-epoch eval RMSE back through a pipe: the parent reports it to optuna and stops the
trial when the pruner (Hyperband's successive halving, or the median rule) prunes it.

Trial 0 is always the DEFAULT configuration (``enqueue_trial``): the study's best can then never
be worse on eval than what training without tuning would use. The sampler's seed is mixed with
the dataset (spec and training rows), so two datasets do not get the same random draws.

A trial that crashes, raises or returns NaN is recorded as FAILED with its error and the study
goes on; a study whose trials all fail raises ``MlengineError`` (never a made-up best). Trial
processes die with the study: on Ctrl-C or an error they are killed, and their trials are queued
again for the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared.model_module import module_digest
from mlengine.components.shared.processes import die_with_parent
from mlengine.components.tune.search_space import SearchSpace
from mlengine.components.tune.trial import TrialContext, load_spec_dict, transform_and_train
from mlengine.constants import (
    PARAM_BATCH_SIZE,
    PARAM_HIDDEN_UNITS,
    PARAM_LEARNING_RATE,
    PARAM_NBUCKETS,
    TRIALS_FILE,
)
from mlengine.errors import MlengineError

STUDY_DB = "study.db"
TRIALS_SUBDIR = "trials"
LOCK_FILE = ".tune.lock"
STUDY_NAME = "mlengine-tune"
FINGERPRINT_ATTR = "mlengine_fingerprint"
INTERRUPTED_ATTR = "mlengine_interrupted_trials"
POLL_SECONDS = 0.5
KILL_WAIT_SECONDS = 10.0
SHORT_NAMES = {PARAM_NBUCKETS: "nbuckets", PARAM_HIDDEN_UNITS: "hidden", PARAM_LEARNING_RATE: "lr",
               PARAM_BATCH_SIZE: "bs"}

log = logging.getLogger(__name__)  # progress: one line per trial started / finished
TrialRunner = Callable[[dict, TrialContext, Callable[[int, float], None]], float]


def format_params(params: dict[str, Any]) -> str:
    """``nbuckets=12 hidden=64,32 lr=0.0031 bs=512``."""
    parts = []
    for name, value in params.items():
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{SHORT_NAMES.get(name, name)}={shown}")
    return " ".join(parts)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# --- the trial process ---------------------------------------------------------------------------
def _trial_process(conn, runner: TrialRunner, params: dict, context: TrialContext, log_path: str,
                   parent_pid: int, threads: int) -> None:
    """Body of one trial process: run the trial, send ("report", step, v) ... then ("result", v) or ("error", msg)."""
    die_with_parent(parent_pid, signal.SIGKILL)  # no orphans after a kill -9 of the study
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the study process decides what happens on Ctrl-C
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1" if threads == 1 else "2"
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)  # TensorFlow's chatter goes to the trial log, the terminal keeps the study's lines
    os.dup2(log_fd, 2)
    os.close(log_fd)

    def report(step: int, value: float) -> None:
        conn.send(("report", int(step), float(value)))

    try:
        value = runner(params, context, report)
        if value is None:
            conn.send(("error", "the trial returned no objective value"))
        else:
            conn.send(("result", float(value)))
    except BaseException as err:  # every failure is reported to the study, then the process ends
        traceback.print_exc()
        with contextlib.suppress(OSError):
            conn.send(("error", _one_line(err)))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


@dataclass
class _Running:
    trial: Any  # optuna.trial.Trial
    params: dict
    ordinal: int
    process: Any
    conn: Any
    log_path: str
    started: float = field(default_factory=time.monotonic)
    intermediate: dict[int, float] = field(default_factory=dict)
    outcome: tuple | None = None  # ("result", v) | ("error", msg)


class _StudyLock:
    """One study process per output directory (sqlite and the trial folders are not shared)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def __enter__(self):
        import fcntl

        self.handle = self.path.open("w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise MlengineError(f"{self.path.parent}: another tuning study is running in this directory") from None
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


# --- the study ---------------------------------------------------------------------------------------
def run_local_study(train_dir: str, eval_dir: str, spec_dir_or_spec, space: SearchSpace, out_dir: str, *,
                    epochs: int,
                    trial_runner: TrialRunner | None = None, seed: int = 0, steps_per_epoch: int | None = None,
                    keep_models: bool = False, defaults: dict[str, Any] | None = None,
                    model_module: str = "") -> dict:
    """Run (or resume) a tuning study; return and write ``out_dir/trials.json``.

    Returns ``{"algorithm", "trials": [{"number", "params", "rmse", "state", "error", ...}],
    "best_params", "best_rmse", ...}``. ``trial_runner(params, context, report) -> rmse`` runs in
    the trial process (a module-level function: it is pickled); the default runs transform + train.
    Trial processes are spawned (fresh interpreters), so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.
    Hyperparameters the space does not tune take their value from ``defaults`` (else the pipeline's).
    ``model_module`` (a file or module artifact folder) is the network every trial trains; its own
    hyperparameters are in ``space`` and ``defaults`` like the built-in ones.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise MlengineError(f"epochs must be a positive integer, got {epochs!r}")
    runner = trial_runner or transform_and_train
    if trial_runner is None:  # a missing split fails here once, not in every trial
        from mlengine.components.shared.parquet import list_parquet_files

        list_parquet_files(train_dir)
        list_parquet_files(eval_dir)
    spec = load_spec_dict(spec_dir_or_spec)
    out = Path(out_dir)
    (out / TRIALS_SUBDIR).mkdir(parents=True, exist_ok=True)
    with _StudyLock(out / LOCK_FILE):
        untuned = {k: v for k, v in space.complete({}, defaults).items() if k not in space.names}
        fingerprint = _fingerprint(space, train_dir, eval_dir, spec, epochs, steps_per_epoch, untuned,
                                   module_digest(model_module))
        study, binding = _open_study(space, out, fingerprint, seed=dataset_seed(space, spec, train_dir),
                                     max_resource=epochs)
        session = _Session(study, binding, space, out, runner, defaults or {},
                           TrialContext(number=-1, train_dir=str(train_dir), eval_dir=str(eval_dir), spec=spec,
                                        epochs=epochs, trial_dir="", seed=seed, keep_models=keep_models,
                                        steps_per_epoch=steps_per_epoch, model_module=str(model_module or "")))
        return session.run()


def _fingerprint(space: SearchSpace, train_dir, eval_dir, spec: dict, epochs: int, steps_per_epoch,
                 fixed: dict[str, Any], module_digest: str | None = None) -> str:
    """What a resumed study must share with the stored one (the budget may grow, nothing else changes)."""
    import hashlib

    meaning = space.to_dict()
    for budget_key in ("max_trials", "parallel_trials", "max_failed_trials"):
        meaning.pop(budget_key)
    identity = {"space": meaning, "train": str(Path(train_dir).resolve()), "eval": str(Path(eval_dir).resolve()),
                "spec": spec, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "fixed": fixed}
    if module_digest:
        identity["model_module"] = module_digest
    blob = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_seed(space: SearchSpace, spec: dict, train_dir) -> int:
    """The sampler seed: the search space's random_state mixed with the dataset (spec + training rows)."""
    import hashlib

    from mlengine.components.shared.parquet import count_rows, list_parquet_files

    try:
        rows = count_rows(list_parquet_files(str(train_dir)))
    except Exception:  # a test runner without a real split: the spec alone
        rows = 0
    base = int(space.settings.get("random_state", 0))
    blob = json.dumps({"spec": spec, "rows": rows, "random_state": base}, sort_keys=True)
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16)


def _open_study(space: SearchSpace, out: Path, fingerprint: str, *, seed: int | None = None,
                max_resource: int | None = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        binding = space.to_optuna(seed=seed, max_resource=max_resource)
    storage = f"sqlite:///{(out / STUDY_DB).resolve()}"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=binding.sampler,
                                pruner=binding.pruner, direction=binding.direction, load_if_exists=True)
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
        study.set_user_attr("search_space", space.to_dict())
        study.set_user_attr("sampler_seed", seed)
    elif stored != fingerprint:
        raise MlengineError(
            f"{out / STUDY_DB}: holds a study of another search space, data, spec or epoch count; "
            "use a new output directory or delete study.db to start over")
    return study, binding


class _Session:
    def __init__(self, study, binding, space: SearchSpace, out: Path, runner: TrialRunner,
                 defaults: dict[str, Any], base_context: TrialContext):
        self.defaults = defaults
        self.study = study
        self.binding = binding
        self.space = space
        self.out = out
        self.runner = runner
        self.base = base_context
        self.budget = space.trial_budget()
        self.running: dict[int, _Running] = {}
        self.mp = multiprocessing.get_context("spawn")  # a fresh interpreter per trial: TF state never leaks
        self.threads = max(1, (os.cpu_count() or 1) // max(1, min(space.parallel_trials, self.budget)))

    # --- bookkeeping ------------------------------------------------------------------------
    def interrupted(self) -> set[int]:
        return set(self.study.user_attrs.get(INTERRUPTED_ATTR, []))

    def counted_trials(self) -> list:
        """Finished trials that count against the budget (interrupted ones were re-queued)."""
        from optuna.trial import TrialState

        skip = self.interrupted()
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return [t for t in self.study.get_trials(deepcopy=False) if t.state in done and t.number not in skip]

    def failed_count(self) -> int:
        from optuna.trial import TrialState

        return sum(1 for t in self.counted_trials() if t.state == TrialState.FAIL)

    def best_value(self) -> float | None:
        from optuna.trial import TrialState

        values = [t.value for t in self.counted_trials() if t.state == TrialState.COMPLETE and t.value is not None]
        return min(values) if values else None

    def _mark_interrupted(self, numbers_and_params: list[tuple[int, dict]], reason: str) -> None:
        """Fail the given (still RUNNING) trials, remember them as interrupted and queue their params again."""
        from optuna.trial import TrialState

        if not numbers_and_params:
            return
        marked = self.interrupted()
        for number, params in numbers_and_params:
            with contextlib.suppress(Exception):  # a trial already finished in storage stays as it is
                self.study.tell(number, state=TrialState.FAIL)
            marked.add(number)
            if params:
                self.study.enqueue_trial(params, user_attrs={"requeued_from": number})
            log.info(f"tune: trial #{number} {reason}; it will run again when the study resumes")
        self.study.set_user_attr(INTERRUPTED_ATTR, sorted(marked))

    def recover(self) -> None:
        """Trials left RUNNING by a study process that died: fail them and queue them again."""
        from optuna.trial import TrialState

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale = [(t.number, dict(t.params)) for t in running]
        self._mark_interrupted([(n, p) for n, p in stale if len(p) == len(self.space.parameters)], "was interrupted")
        for number, params in stale:  # a trial that died before its parameters were drawn: nothing to redo
            if len(params) != len(self.space.parameters):
                self._mark_interrupted([(number, {})], "was interrupted before it started")

    # --- the loop -------------------------------------------------------------------------------
    def enqueue_default(self) -> None:
        """A new study's trial 0 is the default configuration (the values training without tuning uses)."""
        if self.study.get_trials(deepcopy=False):
            return
        default = {p.name: self.defaults[p.name] for p in self.space.parameters if p.name in self.defaults}
        outside = [name for name, value in default.items() if not self.space.parameter(name).contains(value)]
        if len(default) != len(self.space.parameters) or outside:
            log.info(f"tune: the default {', '.join(outside) or 'values'} lie outside the search space: "
                      "no default trial")
            return
        self.study.enqueue_trial(default, user_attrs={"default": True})
        log.info(f"tune: trial 0 is the default configuration {format_params(default)}")

    def run(self) -> dict:
        self.recover()
        self.enqueue_default()
        previously = len(self.counted_trials())
        if previously:
            log.info(f"tune: resuming the study in {self.out / STUDY_DB}: {previously} trial(s) already finished")
        log.info(f"tune: {self.space.algorithm.name} search, {self.budget} trials, "
                  f"{self.space.parallel_trials} in parallel, {self.base.epochs} epoch(s) each")
        study_failed = None
        try:
            while True:
                if study_failed is None:
                    self._launch_more()
                if not self.running:
                    break
                self._wait_and_collect()
                if study_failed is None and self.failed_count() > self.space.max_failed_trials:
                    study_failed = (f"{self.failed_count()} trials failed, more than max_failed_trials="
                                    f"{self.space.max_failed_trials}")
                    self._stop_all("stopped: the study failed")
        except BaseException:
            self._stop_all("was stopped (interrupted)", requeue=True)
            self._write(self.result())
            raise
        result = self.result()
        self._write(result)
        if study_failed is not None:
            raise MlengineError(f"tuning study failed: {study_failed}; last error: {_last_error(result)}")
        if result["best_params"] is None:
            counted = [t for t in result["trials"] if t["state"] != "INTERRUPTED"]
            raise MlengineError(f"tuning study failed: all {len(counted)} trial(s) failed; "
                                f"first error: {_first_error(result)} (logs in {self.out / TRIALS_SUBDIR})")
        log.info(f"tune: best rmse={result['best_rmse']:.4g} with {format_params(result['best_params'])} "
                  f"({len(result['trials'])} trials, {self.out / TRIALS_FILE})")
        return result

    def _launch_more(self) -> None:
        while len(self.running) < self.space.parallel_trials:
            counted = len(self.counted_trials())
            if counted + len(self.running) >= self.budget:
                return
            import optuna

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
                trial = self.study.ask()
                params = self.binding.suggest(trial)
            ordinal = counted + len(self.running) + 1
            trial_dir = self.out / TRIALS_SUBDIR / f"trial-{trial.number:04d}"
            trial_dir.mkdir(parents=True, exist_ok=True)
            log_path = str(trial_dir / "log.txt")
            context = TrialContext(number=trial.number, train_dir=self.base.train_dir, eval_dir=self.base.eval_dir,
                                   spec=self.base.spec, epochs=self.base.epochs, trial_dir=str(trial_dir),
                                   seed=self.base.seed, keep_models=self.base.keep_models,
                                   steps_per_epoch=self.base.steps_per_epoch, model_module=self.base.model_module)
            full_params = self.space.complete(params, self.defaults)
            receiver, sender = self.mp.Pipe(duplex=False)
            process = self.mp.Process(target=_trial_process, name=f"mlengine-trial-{trial.number}",
                                      args=(sender, self.runner, full_params, context, log_path, os.getpid(),
                                            self.threads))
            try:
                process.start()
            except BaseException:
                self._mark_interrupted([(trial.number, params)], "could not start")
                raise
            sender.close()  # the child holds the only write end: EOF means it is gone
            self.running[trial.number] = _Running(trial, full_params, ordinal, process, receiver, log_path)
            log.info(f"tune: trial {trial.number} ({ordinal}/{self.budget}) started {format_params(full_params)}")

    def _wait_and_collect(self) -> None:
        from multiprocessing.connection import wait

        waitables = [r.conn for r in self.running.values()] + [r.process.sentinel for r in self.running.values()]
        wait(waitables, timeout=POLL_SECONDS)
        for number in list(self.running):
            entry = self.running[number]
            pruned = self._drain(entry)
            if pruned:
                continue
            if entry.outcome is None and not entry.process.is_alive():
                self._drain(entry)  # messages sent just before exiting
                if entry.outcome is None:
                    entry.outcome = ("error", f"trial process exited with code {entry.process.exitcode} "
                                              "before reporting a result")
            if entry.outcome is not None:
                self._finish(entry)

    def _drain(self, entry: _Running) -> bool:
        """Read the messages a trial sent; returns True when the trial was pruned (and stopped)."""
        while entry.outcome is None:
            try:
                if not entry.conn.poll():
                    return False
                message = entry.conn.recv()
            except (EOFError, OSError):
                return False
            if message[0] == "report":
                _, step, value = message
                if not math.isfinite(value):
                    continue  # a NaN epoch fails the trial at its end; it cannot feed the pruner
                entry.intermediate[step] = value
                entry.trial.report(value, step)
                # stopping a trial at its last epoch saves nothing: its result is about to arrive
                if step < self.base.epochs and entry.trial.should_prune():
                    self._prune(entry, step, value)
                    return True
            else:
                entry.outcome = message
        return False

    def _prune(self, entry: _Running, step: int, value: float) -> None:
        from optuna.trial import TrialState

        _kill(entry.process)
        entry.conn.close()
        del self.running[entry.trial.number]
        self._tell(entry.trial.number, state=TrialState.PRUNED)
        log.info(f"tune: trial {self._label(entry)} {format_params(entry.params)} -> stopped early at "
                  f"epoch {step} (rmse={value:.4g}, {self._prune_rule()}){self._best_suffix()}")
        self._write(self.result())

    def _finish(self, entry: _Running) -> None:
        from optuna.trial import TrialState

        entry.process.join(timeout=KILL_WAIT_SECONDS)
        if entry.process.is_alive():
            _kill(entry.process)
        entry.conn.close()
        del self.running[entry.trial.number]
        kind, payload = entry.outcome
        number = entry.trial.number
        seconds = time.monotonic() - entry.started
        entry.trial.set_user_attr("seconds", round(seconds, 3))
        if kind == "result" and math.isfinite(payload):
            self._tell(number, values=payload)
            log.info(f"tune: trial {self._label(entry)} {format_params(entry.params)} -> "
                      f"rmse={payload:.4g}{self._best_suffix()}")
        else:
            error = payload if kind == "error" else f"objective is {payload} (training diverged?)"
            entry.trial.set_user_attr("error", f"{error} (log: {entry.log_path})")
            self._tell(number, state=TrialState.FAIL)
            log.info(f"tune: trial {self._label(entry)} {format_params(entry.params)} -> FAILED: {error}")
        self._write(self.result())

    def _label(self, entry: _Running) -> str:
        """``4 (5/12)``: the trial's number (as in the report and its folder), then its place in the budget."""
        return f"{entry.trial.number} ({entry.ordinal}/{self.budget})"

    def _tell(self, number: int, **kwargs) -> None:
        try:
            self.study.tell(number, **kwargs)
        except RuntimeError as err:
            # GridSampler calls study.stop() once the grid is exhausted, which only works inside
            # study.optimize; the trial itself was stored before that, so this is harmless
            if "Study.stop" not in str(err):
                raise

    def _prune_rule(self) -> str:
        name = type(self.binding.pruner).__name__
        return "behind the best at this rung (Hyperband)" if name == "HyperbandPruner" else "worse than the median"

    def _best_suffix(self) -> str:
        best = self.best_value()
        return f" (best {best:.4g})" if best is not None else ""

    def _stop_all(self, reason: str, requeue: bool = False) -> None:
        from optuna.trial import TrialState

        entries = list(self.running.values())
        for entry in entries:
            _kill(entry.process)
            with contextlib.suppress(OSError):
                entry.conn.close()
        self.running.clear()
        if requeue:
            tuned = set(self.space.names)
            self._mark_interrupted([(e.trial.number, {k: v for k, v in e.params.items() if k in tuned})
                                    for e in entries], reason)
        else:
            for entry in entries:
                entry.trial.set_user_attr("error", reason)
                self._tell(entry.trial.number, state=TrialState.FAIL)

    # --- results ---------------------------------------------------------------------------------
    def result(self) -> dict:
        from optuna.trial import TrialState

        skip = self.interrupted()
        trials = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number not in skip:
                continue
            state = "INTERRUPTED" if t.number in skip else t.state.name
            rmse = t.value if t.state == TrialState.COMPLETE else None
            if t.state == TrialState.PRUNED and t.intermediate_values:
                rmse = t.intermediate_values[max(t.intermediate_values)]
            trials.append({
                "number": t.number,
                "params": self.space.complete(self.space.coerce(dict(t.params)), self.defaults) if t.params else {},
                "rmse": rmse,
                "state": state,
                "error": t.user_attrs.get("error") if state == "FAIL" else (
                    "interrupted; queued again" if state == "INTERRUPTED" else None),
                "intermediate": {str(step): value for step, value in sorted(t.intermediate_values.items())},
                "seconds": t.user_attrs.get("seconds"),
                "default": bool(t.user_attrs.get("default")),
            })
        complete = [t for t in trials if t["state"] == "COMPLETE"]
        best = min(complete, key=lambda t: t["rmse"]) if complete else None
        default = next((t for t in trials if t["default"]), None)
        return {
            "algorithm": self.space.algorithm.name,
            "katib_algorithm": self.space.algorithm.katib_name,
            "local_sampler": type(self.binding.sampler).__name__,
            "metric": self.space.metric,
            "epochs": self.base.epochs,
            "budget": self.budget,
            "trials": trials,
            "best_trial": best["number"] if best else None,
            "best_params": dict(best["params"]) if best else None,
            "best_rmse": best["rmse"] if best else None,
            "default_trial": default["number"] if default else None,
            "default_params": dict(default["params"]) if default else None,
            "default_rmse": default["rmse"] if default and default["state"] == "COMPLETE" else None,
            "pruner": type(self.binding.pruner).__name__,
            "sampler_seed": self.study.user_attrs.get("sampler_seed"),
            "search_space": self.space.to_dict(),
            "study_db": str(self.out / STUDY_DB),
        }

    def _write(self, result: dict) -> None:
        path = self.out / TRIALS_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
        temporary.replace(path)


def _kill(process) -> None:
    if process.is_alive():
        process.kill()
    process.join(timeout=KILL_WAIT_SECONDS)


def _first_error(result: dict) -> str:
    for trial in result["trials"]:
        if trial["state"] == "FAIL" and trial["error"]:
            return trial["error"]
    return "no error recorded"


def _last_error(result: dict) -> str:
    for trial in reversed(result["trials"]):
        if trial["state"] == "FAIL" and trial["error"]:
            return trial["error"]
    return "no error recorded"


def load_trials(out_dir: str) -> dict:
    """The ``trials.json`` of a finished (or interrupted) study."""
    path = Path(out_dir) / TRIALS_FILE
    if not path.is_file():
        raise MlengineError(f"{path}: no tuning results (run the study first)")
    return json.loads(path.read_text(encoding="utf-8"))
