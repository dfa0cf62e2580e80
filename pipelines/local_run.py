"""Compile the pipelines, and run the training pipeline on this machine under kfp.local.

`run_training_locally` is what `mlengine run` (and so `make run`) does: make the built-in data
if no data is given, compile the YAML a Kubeflow user would upload, run the same DAG with
kfp.local's SubprocessRunner (no Docker), and write `summary.json`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from mlengine.components.shared.serving_log import ENV_SERVING_LOG_DIR, ENV_SERVING_LOG_URI
from mlengine.constants import (
    DEFAULT_SEED,
    PARAM_MODEL_MODULE,
    PARAM_SPEC_URI,
    REPLICA_LOGS_SUBDIR,
    TAXI_NOISE_STD,
    TRIALS_FILE,
)
from mlengine.errors import MlengineError
from mlengine.pipelines.run_outputs import CacheHits, copy_reports, reset_task_cache, step_error

PIPELINE_YAML = "training_pipeline.yaml"
MONITORING_YAML = "monitoring_pipeline.yaml"
SUMMARY_FILE = "summary.json"
SERVING_LOG_SUBDIR = "serving-log"  # where `mlengine serve --serving-log` keeps this run's model inputs by default
PIPELINE_LOG = "pipeline.log"
log = logging.getLogger(__name__)  # the run's own lines (`mlengine run` sends them to stderr)
# what reaches the console from kfp.local's (very verbose) output; everything goes to pipeline.log
_CONSOLE_LINE = re.compile(
    r"^\s*(\[[\w.-]+\]\s*)?(ingest|tune|transform|analyze|train|evaluate|deploy|serve|monitor)\b[^:]{0,40}:"
    r"|Executing task|finished with status|Traceback|Error\b|error:"
)
_CONSOLE_NOISE = re.compile(r"cuInit|cuda_platform")  # TF probing for a GPU on a CPU-only machine
_TRACEBACK = "Traceback (most recent call last)"
_OWN_ERROR = re.compile(r"^mlengine\.errors\.\w+: ")  # a step's one-line error: the run's last line repeats it
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ConsoleFilter(io.TextIOBase):
    """Tee of kfp.local's stdout: all of it into a log file, progress and errors onto the console."""

    def __init__(self, log_path: Path, console):
        self._log = log_path.open("a", encoding="utf-8")
        self._console = console
        self._pending = ""
        self._traceback_indent: int | None = None  # inside a step's traceback: the indent of its first line

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line)
            if self._shown(plain):
                print(plain.strip(), file=self._console, flush=True)
        return len(text)

    def _shown(self, plain: str) -> bool:
        """Progress and errors; a failed step's traceback only in the log: its frames never, its last
        line only when it is not one of our one-line errors (the run's error line repeats those)."""
        stripped = plain.strip()
        indent = len(plain) - len(plain.lstrip())
        if self._traceback_indent is not None:
            if not stripped or indent > self._traceback_indent:
                return False
            self._traceback_indent = None
            if _OWN_ERROR.match(stripped):
                return False
        if stripped.startswith(_TRACEBACK):
            self._traceback_indent = indent
            return False
        return bool(_CONSOLE_LINE.search(plain)) and not _CONSOLE_NOISE.search(plain)

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()  # flushes the log first
            self._log.close()


@contextlib.contextmanager
def _quiet_kfp_output(log_path: Path):
    console_filter = _ConsoleFilter(log_path, sys.stderr)
    try:
        with contextlib.redirect_stdout(console_filter):
            yield
    finally:
        console_filter.close()


def compile_pipelines(out_dir: str | Path) -> dict[str, str]:
    """Write every pipeline's YAML into ``out_dir``; returns {pipeline name: path}."""
    from kfp import compiler

    from mlengine.pipelines import monitoring, training

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, pipeline, file_name in ((training.PIPELINE_NAME, training.training_pipeline, PIPELINE_YAML),
                                      (monitoring.PIPELINE_NAME, monitoring.monitoring_pipeline, MONITORING_YAML)):
        compiler.Compiler().compile(pipeline, str(out / file_name))
        written[name] = str(out / file_name)
    return written


def ensure_generated_data(data_dir: Path, rows: int, seed: int) -> Path:
    """The built-in synthetic taxi data, generated once per (rows, seed) and reused."""
    from mlengine.synthetic import write_csv

    path = data_dir / f"taxi-{rows}-seed{seed}.csv"
    if path.is_file():
        log.info(f"run: reusing generated data {path}")
        return path
    log.info(f"run: generating {rows:,} synthetic taxi rows (seed {seed}, noise std {TAXI_NOISE_STD}) -> {path}")
    partial = path.with_suffix(".partial")
    write_csv(partial, rows, seed)
    partial.rename(path)
    return path


def run_training_locally(
    out_dir: str | Path,
    *,
    data: str | None = None,
    rows: int,
    seed: int = DEFAULT_SEED,
    params: dict[str, Any] | None = None,
    resume: bool = False,
    runner: str = "subprocess",
) -> dict[str, Any]:
    """Run the training pipeline under kfp.local and return (and write) the run summary.

    Every run writes kfp.local's task cache under ``out_dir``; ``resume`` reads it: a re-run with
    the same inputs reuses the finished steps of any earlier run there (ingest, the tuning study,
    training) instead of starting over, as KFP's execution cache does on a cluster, and says which
    (``cached_steps``). It assumes the data behind ``data`` has not changed. A plain run empties
    the cache first and re-runs every step. Markdown and HTML reports are copied to
    ``out_dir/reports`` with their extensions (``reports``).
    """
    started = time.monotonic()
    params = {key: value for key, value in (params or {}).items() if value is not None}
    from mlengine.components.shared.beam_runner import RUNNER_BEAM, check_runner, import_beam

    if check_runner(params.get("runner", "local")) == RUNNER_BEAM:
        import_beam()  # one line naming the extra, before anything is written
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    generated = data is None
    if not generated:
        from mlengine.components.ingest.executor import check_inputs
        from mlengine.components.shared.featurespec import load_spec

        # fail in a second, with one line naming the file, instead of inside a pipeline task
        check_inputs(data, load_spec(params.get(PARAM_SPEC_URI) or None))
    data_uri = str(ensure_generated_data(out / "data", rows, seed)) if generated else _kfp_safe_path(data, out)
    if params.get(PARAM_SPEC_URI):
        params[PARAM_SPEC_URI] = _spec_by_content(params[PARAM_SPEC_URI], out)
    if params.get(PARAM_MODEL_MODULE):  # travels with the run: a copy in the run's output, named by content
        params[PARAM_MODEL_MODULE] = _by_content(params[PARAM_MODEL_MODULE], out, "model-modules", keep_name=True)
    served = _served_model_dir(out)
    if served and "baseline_model_uri" not in params:
        log.info(f"run: the model the last run in {out} deployed is the baseline: {served}")
        params["baseline_model_uri"] = served
    pipeline_yaml = compile_pipelines(out)
    # the cache is always written, so a later --resume reuses any earlier run; a plain run starts it afresh
    cache_root = out / "task-cache"
    if not resume and reset_task_cache(cache_root):
        log.info(f"run: every step runs (no --resume); this run's steps are kept for a later --resume in {out}")

    from kfp import local

    from mlengine.pipelines.training import PIPELINE_NAME, training_pipeline

    if runner == "docker":  # the compiled YAML, every step in its image (pipelines/docker_run.py)
        from mlengine.pipelines.docker_run import docker_pipeline

        runner_context = docker_pipeline(out, pipeline_yaml[PIPELINE_NAME], {"data_uri": data_uri, **params},
                                         enable_caching=True)
    else:
        runner_context = contextlib.nullcontext(training_pipeline)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "pipeline-root"),
                   enable_caching=True, cache_root=str(cache_root))
    log.info(f"run: pipeline {PIPELINE_NAME} under kfp.local, data {data_uri}, "
             f"params {json.dumps(params, sort_keys=True)}")
    log_path = out / PIPELINE_LOG
    log.info(f"run: full pipeline log in {log_path}")
    with runner_context as pipeline, warnings.catch_warnings(), _quiet_kfp_output(log_path), CacheHits() as hits:
        # the SubprocessRunner warns for any image whose name lacks "python"; ours are Python images
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        log_start = log_path.stat().st_size if log_path.is_file() else 0
        run_started = time.time()  # reports written from now on are this run's
        try:
            run = pipeline(data_uri=data_uri, **params)
        except RuntimeError as err:
            reason = _ANSI.sub("", str(err).strip().splitlines()[-1])
            # the failed step's own one-line error says more than kfp.local's "Inner task failed"
            reason = step_error(log_path, log_start) or reason
            raise MlengineError(f"pipeline {PIPELINE_NAME} failed: {reason} (log: {log_path})") from None
    outputs = run.outputs
    evaluation = _evaluation_summary(outputs.get("evaluation"))
    eval_metrics = dict(outputs["eval_metrics"].metadata)
    train_metrics = dict(outputs["train_metrics"].metadata)
    summary: dict[str, Any] = {
        "rows_read": int(outputs["rows_read"]),
        "rows_rejected": int(outputs["rows_rejected"]),
        "rmse": eval_metrics.get("rmse"),
        "mae": eval_metrics.get("mae"),
        "benchmark_rmse": eval_metrics.get("benchmark_rmse"),
        "noise_floor_rmse": TAXI_NOISE_STD if generated else None,
        "blessed": bool(outputs["blessed"]),
        "baseline_rmse": evaluation.get("baseline_rmse"),
        "baseline_model": evaluation.get("baseline_model"),
        "blessing_reasons": evaluation.get("reasons"),
        "slices": evaluation.get("slices"),
        "eval_rmse": train_metrics.get("eval_rmse"),
        "best_epoch": train_metrics.get("best_epoch"),
        "epochs_run": train_metrics.get("epochs_run"),
        "train_examples_per_second": train_metrics.get("examples_per_second"),
        "restarts": restarts_summary(train_metrics),
        "model_dir": _local_path(outputs["model"].uri),
        "model_choice": _model_choice(outputs["model"]),
        "pipeline_yaml": pipeline_yaml[PIPELINE_NAME],
        "data_uri": data_uri,
        # what `mlengine schedule --monitoring` hands the skew monitor of this model
        "statistics_uri": _local_path(outputs["statistics"].uri) if outputs.get("statistics") else None,
        "serving_log_uri": os.environ.get(ENV_SERVING_LOG_URI) or os.environ.get(ENV_SERVING_LOG_DIR)
        or str(out / SERVING_LOG_SUBDIR),
        "params": params,
        "hyperparameters": _hyperparameters_summary(outputs.get("hyperparameters")),
        "tuning": _tuning_summary(outputs.get("study")),
        "seconds": round(time.monotonic() - started, 1),
    }
    summary.update(_classification_summary(evaluation))
    # what a later run in the same folder compares with: this model if it was deployed, else the earlier one
    summary["served_model_dir"] = summary["model_dir"] if summary["blessed"] else served
    summary["cached_steps"] = list(hits.tasks)
    if resume:
        reused = ", ".join(hits.tasks) or "no step (changed inputs, or no earlier run here)"
        log.info(f"run: --resume: reused from the cache: {reused}")
    summary["reports"] = copy_reports(out, pipeline_yaml[PIPELINE_NAME], run_started, hits.tasks)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=False), encoding="utf-8")
    return summary


def restarts_summary(train_metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The training tasks the local cluster restarted: ``{"total": n, "by_role": {role: n}}``; None for one process."""
    if "restarts" not in train_metrics:
        return None
    by_role = {key.removeprefix("restarts_"): int(value) for key, value in train_metrics.items()
               if key.startswith("restarts_")}
    return {"total": int(train_metrics["restarts"]), "by_role": by_role}


def _served_model_dir(out: Path) -> str | None:
    """The model the last run in ``out`` deployed (its summary.json), if it still exists."""
    path = out / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        served = json.loads(path.read_text(encoding="utf-8")).get("served_model_dir")
    except (OSError, ValueError):
        return None
    return served if served and Path(served).is_dir() else None


def _evaluation_summary(artifact) -> dict[str, Any]:
    if artifact is None:
        return {}
    path = Path(_local_path(artifact.uri))
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


CLASSIFICATION_FIGURES = ("task", "classes", "log_loss", "accuracy", "roc_auc", "pr_auc", "per_class",
                          "confusion_matrix", "benchmark_kind", "benchmark_log_loss", "benchmark_accuracy",
                          "baseline_log_loss")


def _classification_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """A classifier's test figures (evaluation.json) for summary.json; nothing for a regressor."""
    if evaluation.get("task") not in ("binary", "multiclass"):
        return {}
    return {key: evaluation.get(key) for key in CLASSIFICATION_FIGURES}


def _model_choice(model_artifact) -> dict[str, Any] | None:
    path = Path(_local_path(model_artifact.uri)) / "model_choice.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _spec_by_content(spec_uri: str, out: Path) -> str:
    """A copy of a local spec named by its content hash: kfp.local's cache keys on the path string,
    so an edited spec under the same name would otherwise let --resume reuse steps that read the old one."""
    return _by_content(spec_uri, out, "specs")


def _by_content(uri: str, out: Path, folder: str, keep_name: bool = False) -> str:
    """A copy of a local file under ``out/folder`` named by its content hash (URIs pass unchanged);
    ``keep_name``: the file keeps its name in a folder named by the hash (errors name the user's file)."""
    import hashlib
    import shutil

    path = Path(uri)
    if "://" in uri or not path.is_file():
        return uri
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    copy = out / folder / (f"{digest}/{path.name}" if keep_name else f"{path.stem}-{digest}{path.suffix}")
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    return str(copy)


def _kfp_safe_path(data: str, out: Path) -> str:
    """kfp.local rewrites every "python3" inside a task's arguments to its interpreter's path, so a
    local file under .../lib/python3.11/... (a package-shipped dataset) is linked under ``out``."""
    if "python3" not in data or "://" in data or not Path(data).is_file():
        return data
    link = out / "data" / Path(data).name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(data).resolve())
    return str(link)


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _hyperparameters_summary(artifact) -> dict[str, Any] | None:
    """The values training used and which of them the user fixed (tune's output artifact)."""
    if artifact is None:
        return None
    path = Path(_local_path(artifact.uri))
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    return {"values": {**payload["values"], **(payload.get("module") or {})}, "fixed": payload["fixed"]}


def _tuning_summary(study_artifact) -> dict[str, Any] | None:
    if study_artifact is None:
        return None
    trials_file = Path(_local_path(study_artifact.uri)) / TRIALS_FILE
    if not trials_file.is_file():
        return None
    return json.loads(trials_file.read_text(encoding="utf-8"))


def format_summary_table(summary: dict[str, Any], summary_path: str | Path | None = None) -> str:
    """The short table `make run` ends with."""

    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "-" if value is None else str(value)

    rows = [
        ("rows read", f"{summary['rows_read']:,}"),
        ("rows rejected", f"{summary['rows_rejected']:,}"),
        ("model RMSE (test)", fmt(summary["rmse"])),
        ("benchmark RMSE (one-feature rule)", fmt(summary["benchmark_rmse"])),
        ("noise floor RMSE", fmt(summary["noise_floor_rmse"])),
        ("baseline RMSE (served model)", fmt(summary.get("baseline_rmse"))),
        ("blessed", fmt(summary["blessed"])),
    ]
    if summary.get("task") in ("binary", "multiclass"):  # a classifier is judged on log loss
        rows[2:6] = [("model log loss (test)", fmt(summary["log_loss"])),
                     ("model accuracy / ROC AUC (test)", f"{fmt(summary['accuracy'])} / {fmt(summary['roc_auc'])}"),
                     (f"benchmark log loss ({summary.get('benchmark_kind')})", fmt(summary["benchmark_log_loss"])),
                     ("baseline log loss (served model)", fmt(summary.get("baseline_log_loss")))]
    rows += [("", reason) for reason in summary.get("blessing_reasons") or []]
    choice = summary.get("model_choice")
    if choice and choice.get("kept") in ("tuned", "default") and "final_rmse" in choice:
        rows.append(("model kept", f"{choice['kept']}: {choice['reason']}"))
    tuning = summary.get("tuning")
    if tuning and tuning.get("skipped"):
        rows.append(("tuning", "not run (--trials 0)"))
    elif tuning and tuning.get("best_params"):
        rows.append(("tuning best", f"{json.dumps(tuning['best_params'], sort_keys=True)} "
                                    f"({len(tuning.get('trials', []))} trials, {tuning.get('algorithm')})"))
    hparams = summary.get("hyperparameters")
    if hparams:
        shown = [f"{name}={value}{' (fixed)' if name in hparams['fixed'] else ''}"
                 for name, value in hparams["values"].items()]
        rows.append(("hyperparameters", " ".join(shown)))
    restarts = summary.get("restarts")
    if restarts and restarts.get("total"):
        rows.append(("training restarts", ", ".join(f"{role} {n}" for role, n in restarts["by_role"].items() if n)
                     + f" (task logs: {Path(summary['model_dir']) / REPLICA_LOGS_SUBDIR})"))
    if summary.get("cached_steps"):
        rows.append(("reused from the cache", ", ".join(summary["cached_steps"])))
    rows += [
        ("model", summary["model_dir"]),
        ("pipeline YAML", summary["pipeline_yaml"]),
        ("seconds", f"{summary['seconds']:.0f}"),
    ]
    if summary_path:
        rows.append(("summary", str(summary_path)))
    reports = summary.get("reports") or []
    rows += [("reports (open in a browser)" if i == 0 else "", path) for i, path in enumerate(reports)]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
