"""Recurring runs and the runs table over the Kubeflow Pipelines client (mlengine/kubeflow/client.py).

``schedule`` creates a recurring run from a translated cron (mlengine/kubeflow/cron.py), optionally the
skew monitor's from a training summary; ``list_schedules``/``change_schedule`` list, disable or delete
them; ``runs_table`` prints the latest runs with their state, duration and metrics.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

from mlengine.components.shared.logs import component_logger
from mlengine.constants import DEFAULT_EXPERIMENT
from mlengine.errors import MlengineError
from mlengine.kubeflow.client import (
    _REMOTE_SCHEMES,
    FINAL_STATES,
    SUMMARY_SERVING_LOG_KEY,
    SUMMARY_STATISTICS_KEY,
    Connection,
    _filter,
    _paged,
    _pipeline_object,
    api_errors,
    connect,
    ensure_experiment,
    parse_params,
    pipeline_names,
    resolve_version,
)

log = component_logger("kubeflow")

# --- schedule -----------------------------------------------------------------------------------
def monitoring_params_from_summary(summary_path: str | Path) -> dict[str, str]:
    """statistics_uri and serving_log_uri of the training run whose summary.json this is."""
    path = Path(summary_path)
    if not path.is_file():
        raise MlengineError(f"{path}: no summary.json of a training run (mlengine run writes it; or give "
                            "--param statistics_uri=... --param serving_log_uri=...)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MlengineError(f"{path}: not JSON ({err})") from None
    values = {}
    for key in (SUMMARY_STATISTICS_KEY, SUMMARY_SERVING_LOG_KEY):
        value = summary.get(key) if isinstance(summary, dict) else None
        if not value:
            raise MlengineError(f"{path}: no {key!r} (give --param {key}=...)")
        values[key] = str(value)
    return values


def _local_paths(values: dict[str, Any]) -> list[str]:
    return [key for key in (SUMMARY_STATISTICS_KEY, SUMMARY_SERVING_LOG_KEY)
            if isinstance(values.get(key), str) and not values[key].startswith(_REMOTE_SCHEMES)]


def find_recurring_run(client, conn: Connection, name_or_id: str):
    runs = _paged(client.list_recurring_runs, "recurring_runs",
                  **({"namespace": conn.namespace} if conn.namespace else {}))
    matches = [r for r in runs if name_or_id in (r.display_name, r.recurring_run_id)]
    if not matches:
        raise MlengineError(f"{conn.host}: no recurring run named {name_or_id!r} "
                            f"(mlengine schedule --host {conn.host} --list)")
    if len(matches) > 1:
        raise MlengineError(f"{len(matches)} recurring runs are named {name_or_id!r}; give its id")
    return matches[0]


def schedule(conn: Connection, *, cron: str, name: str | None = None, version: str | None = None,
             experiment: str = DEFAULT_EXPERIMENT, params: list[str] | None = None, run_name: str | None = None,
             max_concurrency: int = 1, no_catchup: bool = False, monitoring: bool = False,
             summary: str | Path | None = None, service_account: str | None = None) -> dict[str, Any]:
    """Create one recurring run of the uploaded version; returns what was sent (for the console)."""
    from mlengine.kubeflow.cron import to_kfp_cron

    kfp_cron = to_kfp_cron(cron)  # before any request
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 10:
        raise MlengineError(f"--max-concurrency {max_concurrency!r}: KFP takes 1 to 10")
    kind = "monitoring" if monitoring else "training"
    given: dict[str, Any] = {}
    if monitoring:
        explicit = {pair.partition("=")[0].strip() for pair in params or []}
        needed = {SUMMARY_STATISTICS_KEY, SUMMARY_SERVING_LOG_KEY} - explicit
        if needed:
            given = {k: v for k, v in monitoring_params_from_summary(summary or "out/run/summary.json").items()
                     if k in needed}
    values = parse_params(_pipeline_object(kind), params, given)
    pipeline_name = pipeline_names(name)[kind]
    display = run_name or f"{pipeline_name}-schedule"
    log.info("schedule: %s", kfp_cron.describe())
    for key in _local_paths(values):
        log.warning("schedule: warning: %s %s is a path on this machine; a Kubeflow run reads object storage "
                    "(give --param %s=s3://...)", key, values[key], key)
    client = connect(conn)
    with api_errors(conn.host):
        pipeline_id, chosen = resolve_version(client, conn, pipeline_name, version)
        runs = _paged(client.list_recurring_runs, "recurring_runs",
                      **({"namespace": conn.namespace} if conn.namespace else {}))
        if any(r.display_name == display for r in runs):
            raise MlengineError(f"a recurring run named {display!r} exists; --delete it first or give --run-name")
        exp = ensure_experiment(client, conn, experiment)
        created = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=display, cron_expression=kfp_cron.kfp,
            max_concurrency=max_concurrency, no_catchup=no_catchup, params=values,
            pipeline_id=pipeline_id, version_id=chosen.pipeline_version_id,
            description=f"mlengine schedule: {kfp_cron.given}", service_account=service_account or None)
    log.info("schedule: recurring run %s (%s) of %s version %r: cron %s, max concurrency %d, catch-up %s; "
             "parameters %s", created.recurring_run_id, display, pipeline_name, chosen.display_name, kfp_cron.kfp,
             max_concurrency, "off" if no_catchup else "on", json.dumps(values, sort_keys=True))
    return {"recurring_run_id": created.recurring_run_id, "name": display, "cron": kfp_cron.kfp,
            "params": values}


def list_schedules(conn: Connection) -> str:
    client = connect(conn)
    with api_errors(conn.host):
        runs = _paged(client.list_recurring_runs, "recurring_runs",
                      **({"namespace": conn.namespace} if conn.namespace else {}))
    rows = [("NAME", "MODE", "CRON", "MAX CONC.", "CATCH-UP", "ID")]
    for r in runs:
        cron = (r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None) or (
            f"every {r.trigger.periodic_schedule.interval_second} s"
            if r.trigger and r.trigger.periodic_schedule else "-")
        rows.append((r.display_name or "-", r.mode or "-", cron, str(r.max_concurrency or "-"),
                     "off" if r.no_catchup else "on", r.recurring_run_id))
    return _table(rows) if runs else "no recurring runs"


def change_schedule(conn: Connection, name_or_id: str, action: str) -> str:
    """``disable`` or ``delete`` a recurring run by name or id; returns the console line."""
    client = connect(conn)
    with api_errors(conn.host):
        found = find_recurring_run(client, conn, name_or_id)
        if action == "disable":
            client.disable_recurring_run(found.recurring_run_id)
        elif action == "delete":
            client.delete_recurring_run(found.recurring_run_id)
        else:
            raise ValueError(action)
    return f"schedule: recurring run {found.display_name} ({found.recurring_run_id}) {action}d"


# --- runs ---------------------------------------------------------------------------------------
def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _duration(run) -> str:
    if not run.created_at:
        return "-"
    end = run.finished_at if run.finished_at and run.finished_at.year > 1970 else None
    if end is None:
        return "running" if (run.state or "") not in FINAL_STATES else "-"
    seconds = max(0, int((end - run.created_at).total_seconds()))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _metrics(run) -> str:
    """Numeric entries a KFP backend plugin reported for the run (KFP keeps pipeline metrics in MLMD,
    which the runs API does not return)."""
    found = []
    for output in (run.plugins_output or {}).values():
        for key, entry in sorted((output.entries or {}).items()):
            value = entry.value if entry is not None else None
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            found.append(f"{key}={value:.4g}")
    return " ".join(found) or "-"


def runs_table(conn: Connection, *, experiment: str | None = None, limit: int = 20) -> str:
    client = connect(conn)
    with api_errors(conn.host):
        kwargs: dict[str, Any] = {}
        if experiment:
            found = _paged(client.list_experiments, "experiments", filter=_filter("display_name", experiment),
                           **({"namespace": conn.namespace} if conn.namespace else {}))
            found = [e for e in found if e.display_name == experiment]
            if not found:
                raise MlengineError(f"{conn.host}: no experiment named {experiment!r}")
            kwargs["experiment_id"] = found[0].experiment_id
        elif conn.namespace:
            kwargs["namespace"] = conn.namespace
        page = client.list_runs(page_size=limit, sort_by="created_at desc", **kwargs)
    runs = page.runs or []
    if not runs:
        return "no runs" + (f" in experiment {experiment}" if experiment else "")
    rows = [("RUN", "STATE", "STARTED (UTC)", "DURATION", "METRICS", "ID")]
    for run in runs:
        started = run.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if run.created_at else "-"
        rows.append((run.display_name or "-", run.state or "-", started, _duration(run), _metrics(run),
                     run.run_id))
    return _table(rows)
