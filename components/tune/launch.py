"""Where tuning happens: a local optuna study (``mode="local"``) or a Katib Experiment (``mode="cluster"``).

The tune component calls ``tune_hyperparameters``; both modes read the same search space and
return the best hyperparameters plus the Markdown and HTML reports. Zero trials skips tuning and
passes the given hyperparameters through.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlengine.constants import DEFAULT_HPARAMS
from mlengine.errors import MlengineError

MODES = ("local", "cluster")
def skipped_result(defaults: dict[str, Any], algorithm: str) -> dict:
    return {"algorithm": algorithm, "trials": [], "best_params": dict(defaults), "best_rmse": None,
            "skipped": True}


def tune_hyperparameters(train_dir: str, eval_dir: str, spec_dir: str, out_dir: str, *,
                         defaults: dict[str, Any] | None = None, trials: int, parallel: int, algorithm: str | None,
                         epochs: int, mode: str = "local", space_path: str | None = None,
                         log: Callable[[str], None] | None = None, namespace: str | None = None,
                         timeout: float = 24 * 3600.0, api=None, trial_runner=None,
                         output_uri: str | None = None) -> tuple[dict, str, str]:
    """Tune; returns ``(best hyperparameters, markdown table, html page)`` and writes ``out_dir/trials.json``.

    ``best`` holds every hyperparameter the trainer needs: the tuned ones from the best trial,
    the others from ``defaults``. ``trial_runner`` replaces the local trial (tests). In cluster mode
    the trial pods write under ``output_uri`` (default: the object-store URI of ``out_dir/trials``).
    """
    from mlengine.components.tune.report import render_tuning_html, render_tuning_markdown
    from mlengine.components.tune.search_space import load_search_space

    emit = log or (lambda line: print(line, file=sys.stderr, flush=True))
    given = {**DEFAULT_HPARAMS, **(defaults or {})}
    given = {name: given[name] for name in ("nbuckets", "hidden_units", "learning_rate", "batch_size")}
    if mode not in MODES:
        raise MlengineError(f"tune mode {mode!r}: expected one of {list(MODES)}")
    if trials < 0:
        raise MlengineError(f"trials must be 0 (skip tuning) or more, got {trials}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if trials == 0:
        emit("tune: 0 trials: tuning skipped, the given hyperparameters are used")
        result = skipped_result(given, algorithm or "none")
        (out / "trials.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        return given, render_tuning_markdown(result), render_tuning_html(result)

    space = load_search_space(space_path).with_overrides(
        max_trials=trials, parallel_trials=max(1, min(parallel, trials)), algorithm=algorithm or None)
    if mode == "local":
        from mlengine.components.tune.local_study import run_local_study

        result = run_local_study(train_dir, eval_dir, spec_dir, space, str(out), epochs=epochs, progress=emit,
                                 defaults=given, trial_runner=trial_runner)
    else:
        from mlengine.components.train.tfjob import artifact_uri
        from mlengine.components.tune import katib
        from mlengine.constants import K8S_NAMESPACE

        # the trial pods read the artifacts from MinIO: KFP's /minio/... mounts map back to s3:// URIs
        result = katib.run_experiment(
            katib.experiment_name_for(out_dir), space, namespace=namespace or K8S_NAMESPACE,
            train_uri=artifact_uri(train_dir), eval_uri=artifact_uri(eval_dir), spec_uri=artifact_uri(spec_dir),
            output_uri=output_uri or artifact_uri(str(out / "trials")), epochs=epochs, fixed_params=given,
            name_file=str(out / "experiment-name"), timeout=timeout, progress=emit, api=api)
        (out / "trials.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    best = {**given, **(result["best_params"] or {})}
    return best, render_tuning_markdown(result), render_tuning_html(result)
