"""The tune step: search the hyperparameters a user did not fix, locally (optuna) or with Katib.

``run`` is what the tune component (and ``mlengine tune``) calls. Both modes read the same search
space; the hyperparameters the user set explicitly are FIXED (removed from the space, every trial
runs with them); zero trials, or nothing left to search, passes the given values through. The
result is one ``HyperParameters`` value plus the Markdown and HTML reports.

Tuning never makes the model worse than the defaults. Locally the default configuration is the
study's trial 0 (``enqueue_trial``), so the best trial is at worst the default; the train step
then compares the final model with that trial and keeps the better (``train/executor.py``).
Katib cannot be given a first suggestion, so on a cluster the guard is: every trial's RMSE is
compared with the default configuration's only through the served model -- the evaluator
blesses a new model only when it is not worse than the one in service beyond the tolerance,
so a worse tuned model never replaces it (and an unblessed run rolls back a canary).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared.hyperparameters import HyperParameters, explicit_values
from mlengine.components.shared.logs import component_logger
from mlengine.constants import DEFAULT_TRAINING_OPERATOR, PARAM_HIDDEN_UNITS, RUN_MODES, TRIALS_FILE
from mlengine.errors import MlengineError

log = component_logger("tune")


@dataclass(frozen=True)
class TuneResult:
    """What the tune step hands on: the chosen hyperparameters, and the study behind them.

    Attributes:
        hyperparameters: the chosen values (the given ones when tuning was skipped).
        fixed: the hyperparameters the user set (not searched).
        searched: the hyperparameters the study searched ([] when skipped).
        skipped: True when no tuning ran (0 trials, or nothing left to search).
        study: the trials.json document.
        markdown: the Markdown report's text.
        html: the HTML report's text.
        trials_file: where trials.json was written.
        module_values: the chosen values of the model module's own hyperparameters ({} without a module).
        model_module: the model module's file name ("" without one).
    """

    hyperparameters: HyperParameters
    fixed: dict[str, Any]
    searched: list[str]
    skipped: bool
    study: dict[str, Any]
    markdown: str
    html: str
    trials_file: str
    module_values: dict[str, Any] = field(default_factory=dict)
    model_module: str = ""


def skipped_result(values: HyperParameters, algorithm: str, reason: str) -> dict:
    return {"algorithm": algorithm, "trials": [], "best_params": values.to_dict(), "best_rmse": None,
            "skipped": True, "skip_reason": reason}


def _for_task(space, spec_dir: str, mode: str = "local"):
    """The space whose objective is the spec's: eval RMSE, or eval log loss for a class label.

    Trials report that figure under that name (``rmse=`` / ``log_loss=`` lines for Katib); the
    study keeps calling a trial's value ``rmse`` in trials.json, with ``metric`` naming it. In
    cluster mode a spec that cannot be read in this step (only the trial pods read it) keeps the
    space's objective, with a warning.
    """
    from dataclasses import replace

    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.shared.labels import objective_metric
    from mlengine.components.tune.trial import load_spec_dict

    try:
        spec = spec_from_dict(load_spec_dict(spec_dir))
    except MlengineError as err:
        if mode == "local":
            raise
        log.warning("tune: the feature spec is not readable here (%s): the objective stays %s", err, space.metric)
        return space
    return replace(space, metric=objective_metric(spec))


def run(train_dir: str, eval_dir: str, spec_dir: str, out_dir: str, *, fixed: dict[str, Any] | None = None,
        trials: int, parallel: int = 1, algorithm: str | None = None, epochs: int, mode: str = "local",
        space_path: str | None = None, namespace: str | None = None, timeout: float = 24 * 3600.0, api=None,
        trial_runner: Callable | None = None, output_uri: str | None = None, shared_claim: str | None = None,
        hyperparameters_path: str | None = None, markdown_path: str | None = None,
        html_path: str | None = None, training_operator: str = DEFAULT_TRAINING_OPERATOR, model_module: str = "",
        module_dir: str | None = None, seed: int = 0) -> TuneResult:
    """Tune and write ``out_dir/trials.json`` and the given report files; see the module docstring.

    ``fixed`` holds the hyperparameters the user set (they are not searched), built-in ones and a
    model module's; ``trial_runner`` replaces the local trial (tests). In cluster mode the trial
    pods write under ``output_uri`` (default: the object-store URI of ``out_dir/trials``);
    ``shared_claim`` is the ReadWriteMany PVC parameter-server trial TFJobs share (None or "" for
    none). ``hyperparameters_path`` receives the chosen HyperParameters, ``markdown_path`` /
    ``html_path`` the reports. ``model_module`` (a file path or ``s3://`` URI, "" for none) is read
    once into the module artifact folder ``module_dir`` (default ``out_dir/model_module``), checked on
    a tiny batch before any trial, and its HYPERPARAMETERS join the search space; every trial, and
    on a cluster every trial replica, loads it from that folder. ``training_operator`` (cluster mode):
    the trials' kind, trainjob, tfjob or auto (what the cluster serves).
    """
    from mlengine.components.shared.model_module import load_optional, split_values, write_artifact
    from mlengine.components.tune.report import render_tuning_html, render_tuning_markdown
    from mlengine.components.tune.space_loader import load_search_space

    if mode not in RUN_MODES:
        raise MlengineError(f"tune mode {mode!r}: expected one of {list(RUN_MODES)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise MlengineError(f"trials must be 0 (skip tuning) or more, got {trials!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module_dir = str(module_dir or out / "model_module")
    write_artifact(model_module, module_dir)
    module = load_optional(module_dir)
    builtin_fixed, module_fixed = split_values(fixed, module, "fixed hyperparameters")
    given = HyperParameters.from_dict(explicit_values(builtin_fixed))
    fixed = {name: getattr(given, name) for name in explicit_values(builtin_fixed)}  # typed: 8, not KFP's 8.0
    module_values = module.values(module_fixed) if module is not None else {}
    if module is not None:
        _check_module(module_dir, spec_dir, module_fixed, fixed)
        log.info("tune: model module %s checked on a tiny batch; its hyperparameters: %s", module.name,
                 ", ".join(module.parameters) or "none")
    fixed.update(module_fixed)
    space = load_search_space(space_path)
    if module is not None:
        space = space.with_module({name: p.space_entry() for name, p in module.parameters.items()})
    # hidden_units shapes the built-in network only: with a module searching it would waste trials
    not_searched = {**fixed, **({PARAM_HIDDEN_UNITS: given.hidden_units} if module is not None else {})}
    searched = [name for name in space.names if name not in not_searched]
    if fixed:
        log.info("tune: fixed by you (not searched): %s", ", ".join(f"{k}={v}" for k, v in sorted(fixed.items())))
    defaults = {**given.to_dict(), **module_values}
    if trials == 0 or not searched:
        reason = "0 trials" if trials == 0 else "every searchable hyperparameter is fixed"
        log.info("tune: tuning skipped (%s): the given hyperparameters are used", reason)
        result = {**skipped_result(given, algorithm or "none", reason), "best_params": defaults}
        searched = []
    else:
        space = space.without(not_searched).with_overrides(
            max_trials=trials, parallel_trials=max(1, min(parallel, trials)), algorithm=algorithm or None)
        space = _for_task(space, spec_dir, mode)
        if mode == "local":
            from mlengine.components.tune.local import run_local_study

            result = run_local_study(train_dir, eval_dir, spec_dir, space, str(out), epochs=epochs,
                                     defaults=defaults, trial_runner=trial_runner, seed=seed,
                                     model_module=module_dir if module is not None else "")
        else:
            from mlengine.components.shared.staging import artifact_uri
            from mlengine.components.tune import cluster as katib
            from mlengine.constants import K8S_NAMESPACE

            module_uri = _stage_module(module_dir) if module is not None else ""
            # the trial pods read the artifacts from MinIO: KFP's /minio/... mounts map back to s3:// URIs
            result = katib.run_experiment(
                katib.experiment_name_for(out_dir), space, namespace=namespace or K8S_NAMESPACE,
                train_uri=artifact_uri(train_dir), eval_uri=artifact_uri(eval_dir), spec_uri=artifact_uri(spec_dir),
                output_uri=output_uri or artifact_uri(str(out / "trials")), epochs=epochs, seed=seed,
                fixed_params=defaults, name_file=str(out / "experiment-name"), timeout=timeout,
                shared_claim=shared_claim or None, api=api, training_operator=training_operator,
                model_module_uri=module_uri)
    result = {**result, "fixed": fixed, "searched": searched, "metric": space.metric,
              "module": {"file": module.name, "parameters": list(module.parameters)} if module is not None else None}
    chosen = result.get("best_params") or {}
    best = given.with_values({k: v for k, v in chosen.items() if k in HyperParameters.names()})
    best_module = {k: chosen.get(k, v) for k, v in module_values.items()}
    trials_file = out / TRIALS_FILE
    trials_file.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    markdown, page = render_tuning_markdown(result), render_tuning_html(result)
    if hyperparameters_path:
        best.save(hyperparameters_path, fixed=list(fixed), source="tune", module=best_module)
    if markdown_path:
        Path(markdown_path).write_text(markdown, encoding="utf-8")
    if html_path:
        Path(html_path).write_text(page, encoding="utf-8")
    return TuneResult(hyperparameters=best, fixed=fixed, searched=searched, skipped=bool(result.get("skipped")),
                      study=result, markdown=markdown, html=page, trials_file=str(trials_file),
                      module_values=best_module, model_module=module.name if module is not None else "")


def _check_module(module_dir: str, spec_dir: str, module_fixed: dict[str, Any], builtin_fixed: dict[str, Any]) -> None:
    """Build the model with the module on a tiny batch (the spec's shapes) before any trial trains."""
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.train.public import check_model_module
    from mlengine.components.tune.trial import load_spec_dict

    spec = spec_from_dict(load_spec_dict(spec_dir or None), source=str(spec_dir or "feature spec"))
    check_model_module(module_dir, spec=spec, values=module_fixed, builtin=builtin_fixed)


def _stage_module(module_dir: str) -> str:
    """Upload the module artifact folder to its place in the pipeline root now: the trials read it while
    this step runs (KFP uploads the step's outputs only when it ends, to the same URI)."""
    from mlengine.components.shared.staging import artifact_uri, upload_dir

    uri = artifact_uri(module_dir)
    count = upload_dir(Path(module_dir), uri)
    log.info("tune: model module staged to %s (%d file(s))", uri, count)
    return uri
