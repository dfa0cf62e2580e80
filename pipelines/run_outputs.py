"""What a local run leaves for its user besides summary.json: browser-openable reports, cache use.

- ``copy_reports``: kfp.local keeps artifacts at ``pipeline-root/<run>/<task>/<name>`` without a
  file extension, so a browser shows an HTML report's source. Every Markdown and HTML artifact
  the compiled pipeline declares is copied to ``<out>/reports/<task>-<name>.md|.html``; the
  typed KFP artifacts stay as they are (the Kubeflow UI renders those).
- ``CacheHits``: which tasks kfp.local's task cache answered (its "Task X cache hit" log records).
- ``reset_task_cache``: a plain run empties the cache so it re-runs every step, while still
  writing the entries a later ``--resume`` reuses.
- ``step_error``: the failed step's own one-line error, for the message the run ends with.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlengine.constants import REPORTS_SUBDIR

REPORT_SUFFIXES = {"system.Markdown": ".md", "system.HTML": ".html"}
_CACHE_HIT = re.compile(r"Task (\S+) cache hit")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STEP_ERROR = re.compile(r"^\s*mlengine\.\w+(?:\.\w+)*Error: (.+)$", re.M)  # e.g. mlengine.errors.DataError
_FAILED_TASK = re.compile(r"Task '([\w-]+)' finished with status FAILURE")


def report_outputs(pipeline_yaml: str | Path) -> list[tuple[str, str, str]]:
    """(task, output name, file suffix) of every Markdown / HTML artifact the pipeline's tasks write.

    Tasks inside conditions (nested DAGs) are included; the task name is the folder kfp.local uses.
    """
    import yaml

    documents = list(yaml.safe_load_all(Path(pipeline_yaml).read_text(encoding="utf-8")))
    spec = next(doc for doc in documents if doc and "components" in doc)
    components: dict[str, Any] = spec["components"]
    found: list[tuple[str, str, str]] = []

    def walk(dag: dict[str, Any]) -> None:
        for task_name, task in (dag.get("tasks") or {}).items():
            component = components.get(task["componentRef"]["name"], {})
            if "dag" in component:
                walk(component["dag"])
                continue
            artifacts = (component.get("outputDefinitions") or {}).get("artifacts") or {}
            for output, definition in artifacts.items():
                suffix = REPORT_SUFFIXES.get(definition.get("artifactType", {}).get("schemaTitle"))
                if suffix:
                    found.append((task_name, output, suffix))

    walk(spec["root"]["dag"])
    return found


def copy_reports(out: Path, pipeline_yaml: str | Path, since: float = 0.0, cached: Iterable[str] = ()) -> list[str]:
    """Copy this run's reports to ``out/reports`` with extensions; returns the copies' paths.

    A report written since ``since`` (epoch seconds, the run's start) is this run's; a task in
    ``cached`` (reused from the cache) wrote its report in an earlier run's folder, the newest
    one there. Reports of tasks that did not run this time (a branch not taken) are left out.
    """
    cached = set(cached)
    root = out / "pipeline-root"
    target = out / REPORTS_SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*"):  # reports of a step that did not run this time must not linger
        if stale.is_file():
            stale.unlink()
    copies = []
    for task, output, suffix in report_outputs(pipeline_yaml):
        candidates = [p for p in root.glob(f"*/{task}/{output}") if p.is_file()]
        fresh = [p for p in candidates if p.stat().st_mtime >= since]
        if not candidates or (not fresh and task not in cached):  # not run this time (a condition's other branch)
            continue
        newest = max(fresh or candidates, key=lambda p: p.stat().st_mtime)
        copy = target / f"{task}-{output}{suffix}"
        shutil.copyfile(newest, copy)
        copies.append(str(copy))
    return copies


def step_error(log_path: Path, start: int = 0) -> str | None:
    """``step ingest: <its one-line error>`` from the pipeline log written since byte ``start``.

    A step that fails with one of our errors (``mlengine.errors.*``) ends its traceback with the
    one line naming the file, row or field; kfp.local itself only says which task failed.
    """
    if not log_path.is_file():
        return None
    with log_path.open("rb") as handle:
        handle.seek(start)
        text = _ANSI.sub("", handle.read().decode("utf-8", errors="replace"))
    errors = _STEP_ERROR.findall(text)
    failed = _FAILED_TASK.findall(text)
    if not errors:
        return None
    return f"step {failed[-1]}: {errors[-1].strip()}" if failed else errors[-1].strip()


def reset_task_cache(cache_root: Path) -> int:
    """Delete kfp.local's cache entries (a plain run re-runs every step); returns how many."""
    removed = 0
    if cache_root.is_dir():
        for entry in cache_root.glob("*.json"):
            entry.unlink()
            removed += 1
    return removed


class CacheHits(logging.Handler):
    """Collects the task names of kfp.local's cache-hit records while installed on the root logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.tasks: list[str] = []
        self._root_level = logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        match = _CACHE_HIT.search(_ANSI.sub("", record.getMessage()))
        if match and match.group(1) not in self.tasks:
            self.tasks.append(match.group(1))

    def __enter__(self) -> CacheHits:
        root = logging.getLogger()
        # kfp.local checks its cache outside its own logger context, at the root's level: let INFO through
        self._root_level = root.level
        root.setLevel(min(root.level or logging.WARNING, logging.INFO))
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)
