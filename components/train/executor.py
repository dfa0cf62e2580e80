"""The train step: one process here, a local TF_CONFIG cluster (``local.py``), or a TrainJob / TFJob
(``cluster.py``).

The choice is data (``mode`` + topology), so the pipeline DAG is the same on a laptop and on
Kubeflow; every topology runs the same training program (``task.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.components.shared.logs import component_logger
from mlengine.constants import DEFAULT_TRAINING_OPERATOR, RUN_MODES
from mlengine.errors import MlengineError

MODEL_CHOICE_FILE = "model_choice.json"  # which of tuned/default was kept, and why
JOB_NAME_FILE = "job-name"  # written first in the model dir: a restarted step re-attaches to its TrainJob/TFJob
log = component_logger("train")


@dataclass(frozen=True)
class TrainResult:
    """A finished training step: the figures, which model was kept and why, and the model's lineage facts.

    ``eval_rmse`` is the eval objective of the best epoch: the RMSE of a regression model, the log
    loss of a classifier (``eval_metric`` names it; the pipeline output keeps the field's name).
    """

    eval_rmse: float
    examples_per_second: float
    best_epoch: int
    epochs_run: int
    model_choice: str
    model_choice_reason: str
    metrics: dict = field(default_factory=dict)
    model_metadata: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    eval_metric: str = "rmse"


def run(*, train_dir: str, eval_dir: str, transform_dir: str, model_dir: str, hyperparameters,
        epochs: int, workers: int = 1, ps: int = 0, strategy: str = "auto", mode: str = "local",
        model_uri: str | None = None, study_file: str | Path | None = None, shared_claim: str = "",
        loss_curves_file: str | Path | None = None,
        training_operator: str = DEFAULT_TRAINING_OPERATOR, model_module: str = "",
        module_values: dict | None = None) -> TrainResult:
    """Train, compare with the tuning study's default trial, and write model_choice.json and the loss curves.

    Args:
        train_dir: the training split.
        eval_dir: the eval split.
        transform_dir: the transform artifact (transform.json).
        model_dir: where the model is exported (model_choice.json is written there too).
        hyperparameters: the HyperParameters to train with (class_weight included).
        epochs: maximum passes over the training split.
        workers: training workers.
        ps: parameter servers.
        strategy: auto, parameter_server, all_reduce or none.
        mode: local (processes here) or cluster (a TrainJob or a TFJob).
        model_uri: the model's storage URI (names the TFJob in cluster mode).
        study_file: the tuning study's trials.json (absent or None: no comparison).
        shared_claim: cluster mode: the ReadWriteMany PVC the parameter-server TFJob pods share; "" for none.
        loss_curves_file: where the loss-curves HTML is written (None: not written).
        training_operator: cluster mode: trainjob (Kubeflow Trainer v2), tfjob (Training Operator v1) or
            auto (the one the cluster serves, TrainJob preferred).
        model_module: the user's model module (a file or a module artifact folder); "" or a folder
            without one: the built-in wide-and-deep network.
        module_values: the module's hyperparameter values (from tune); its defaults fill the rest.

    Returns:
        The TrainResult.
    """
    from mlengine.components.train.report import loss_curves_html
    from mlengine.components.train.trainer import TrainConfig
    from mlengine.constants import HISTORY_FILE

    hparams = hyperparameters
    module, module_values, module_name = _module_of(model_module, module_values, mode)
    config = TrainConfig(train_dir=train_dir, eval_dir=eval_dir, transform_dir=transform_dir, model_dir=model_dir,
                         hidden_units=hparams.hidden_units, learning_rate=hparams.learning_rate,
                         batch_size=hparams.batch_size, epochs=epochs, model_module=module, model_hp=module_values,
                         class_weight=hparams.class_weight)
    result = _train_on(config, workers=workers, ps=ps, strategy=strategy, mode=mode, model_uri=model_uri,
                       shared_claim=shared_claim, training_operator=training_operator)
    default = default_trial_of(study_file) if study_file else None
    if mode == "local" and workers <= 1 and ps == 0:
        guard = guard_against_default(config, result, {**hparams.to_dict(), **module_values}, default)
        result = guard.pop("result", result)
    else:  # on a cluster the model already lives in object storage: compare and report only
        guard = {"kept": "tuned", "reason": "cluster run: no retraining of the default configuration",
                 "default_trial_rmse": default and default["rmse"], "final_rmse": _objective(result)}
    (Path(model_dir) / MODEL_CHOICE_FILE).write_text(json.dumps(guard, indent=1), encoding="utf-8")
    if loss_curves_file is not None:
        history = json.loads((Path(model_dir) / HISTORY_FILE).read_text(encoding="utf-8"))
        Path(loss_curves_file).write_text(loss_curves_html(history), encoding="utf-8")
    metric = result.get("eval_metric") or "rmse"
    figures = ({"eval_log_loss": float(result["eval_log_loss"]), "eval_accuracy": float(result["eval_accuracy"])}
               if metric != "rmse" else {"eval_rmse": float(result["eval_rmse"])})
    metrics = {**figures, "examples_per_second": float(result["examples_per_second"]),
               "best_epoch": int(result.get("best_epoch") or 0), "epochs_run": int(result.get("epochs_run") or 0),
               **restart_metrics(result.get("restarts_by_role"))}
    metadata = {"model_choice": guard["reason"], "framework": "tensorflow",
                "signature": "serving_default (raw features)", **hparams.to_dict(), "epochs": epochs,
                "model_module": module_name, "model_module_hyperparameters": module_values,
                "workers": workers, "ps": ps, "strategy": strategy, "eval_metric": metric}
    return TrainResult(eval_rmse=float(_objective(result)), examples_per_second=metrics["examples_per_second"],
                       best_epoch=metrics["best_epoch"], epochs_run=metrics["epochs_run"], model_choice=guard["kept"],
                       model_choice_reason=guard["reason"], metrics=metrics, model_metadata=metadata, details=result,
                       eval_metric=metric)


def _objective(result: dict[str, Any]) -> float | None:
    """The trainer result's eval objective (RMSE or log loss; ``eval_rmse`` in results from before the task)."""
    value = result.get("eval_objective")
    return result.get("eval_rmse") if value is None else value


def _module_of(model_module: str, module_values: dict | None, mode: str) -> tuple[str, dict, str]:
    """``(the module as the training tasks read it, its typed values, its file name)``; ``("", {}, "")``
    without a module."""
    from mlengine.components.shared.model_module import load_optional

    loaded = load_optional(model_module)
    if loaded is None:
        if module_values:
            raise MlengineError(f"hyperparameters {sorted(module_values)} belong to a model module; the run has none")
        return "", {}, ""
    values = loaded.values(module_values)
    if mode == "cluster":  # the TFJob pods read the artifact folder from object storage
        from mlengine.components.shared.staging import artifact_uri

        return artifact_uri(str(model_module)), values, loaded.name
    return str(model_module), values, loaded.name


def _train_on(config, *, workers: int = 1, ps: int = 0, strategy: str = "auto", mode: str = "local",
              model_uri: str | None = None, shared_claim: str = "",
              training_operator: str = DEFAULT_TRAINING_OPERATOR) -> dict[str, Any]:
    """Train with ``config`` (a TrainConfig) on the requested topology; returns the trainer's result dict."""
    from mlengine.components.shared.distributed import Topology

    if mode not in RUN_MODES:
        raise MlengineError(f"mode {mode!r}: expected one of {list(RUN_MODES)}")
    topology = Topology(workers=workers, ps=ps, strategy=strategy)
    topology.validate()
    if mode == "cluster":
        from mlengine.components.train.cluster import run_for_config

        # auto asks the same cluster again after a restart: the same kind, so the name re-attaches
        name_file = Path(config.model_dir) / JOB_NAME_FILE
        name_file.parent.mkdir(parents=True, exist_ok=True)
        return run_for_config(config, topology, training_operator=training_operator, model_uri=model_uri,
                              name_file=str(name_file), shared_claim=shared_claim or None)
    if topology.is_single_process:
        from mlengine.components.train.trainer import train

        return train(config)
    from mlengine.components.train.local import run_local_cluster

    return run_local_cluster(config, topology)


def restart_metrics(by_role: dict[str, int] | None) -> dict[str, int]:
    """``restarts`` (every task) and ``restarts_<role>`` per role of a local cluster run; {} for one process."""
    if not by_role:
        return {}
    per_role = {f"restarts_{role}": int(n) for role, n in sorted(by_role.items())}
    return {"restarts": int(sum(by_role.values())), **per_role}


def default_trial_of(trials_file: str | Path) -> dict | None:
    """The default configuration's trial of a tuning study (trials.json), or None (no tuning, no default)."""
    import json

    path = Path(trials_file)
    if not path.is_file():
        return None
    study = json.loads(path.read_text(encoding="utf-8"))
    if study.get("skipped") or study.get("default_rmse") is None or not study.get("default_params"):
        return None
    return {"params": study["default_params"], "rmse": float(study["default_rmse"]),
            "number": study.get("default_trial")}


def guard_against_default(config, result: dict[str, Any], chosen: dict[str, Any], default: dict | None, *,
                          train_fn=None) -> dict[str, Any]:
    """Keep the tuned model only when it is not worse on eval than the default configuration.

    ``chosen`` are the tuned hyperparameters the model was trained with; ``default`` the default
    trial of the study (its params and eval objective -- RMSE, or log loss for a class label --
    trained for the tuning epochs; the study names it ``rmse`` either way). When the final
    model's eval objective is worse than that trial's, the default configuration is trained the same
    way (same maximum epochs) and the better of the two is kept in ``config.model_dir``. Returns
    ``{"kept", "reason", ...}`` for the report.
    """
    import shutil
    from dataclasses import replace

    final_rmse = _objective(result)
    metric = result.get("eval_metric") or "rmse"
    if default is None:
        return {"kept": "trained", "reason": "no tuning study with a default trial: nothing to compare"}
    same = all(chosen.get(k) == v for k, v in default["params"].items() if k in chosen)
    if same:
        return {"kept": "default", "reason": "tuning chose the default configuration", "final_rmse": final_rmse,
                "default_trial_rmse": default["rmse"]}
    if final_rmse is not None and final_rmse <= default["rmse"]:
        return {"kept": "tuned", "final_rmse": final_rmse, "default_trial_rmse": default["rmse"],
                "reason": f"the tuned model's eval {metric} {final_rmse:.4g} is not worse than the default "
                          f"configuration's trial ({default['rmse']:.4g})"}
    from mlengine.components.shared import analyze
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.shared.transform_state import TransformState

    log.info("train: the tuned model's eval %s %.4g is worse than the default trial's %.4g: training the default "
             "configuration too", metric, final_rmse, default["rmse"])
    builtin_params = {k: v for k, v in default["params"].items() if k in HyperParameters.names()}
    params = HyperParameters.from_dict(builtin_params)
    module_params = {k: v for k, v in default["params"].items() if k not in builtin_params}
    work = Path(config.model_dir).parent / (Path(config.model_dir).name + "-default")
    state = TransformState.load(config.transform_dir)
    analyze.analyze(config.train_dir, state.spec, params.nbuckets).save(work / "transform")
    default_config = replace(config, model_dir=str(work / "model"), transform_dir=str(work / "transform"),
                             hidden_units=params.layers, learning_rate=params.learning_rate,
                             batch_size=params.batch_size, model_hp=module_params)
    if train_fn is None:
        from mlengine.components.train.trainer import train as train_fn
    default_result = train_fn(default_config)
    default_rmse = _objective(default_result)
    outcome = {"final_rmse": final_rmse, "default_trial_rmse": default["rmse"], "default_final_rmse": default_rmse}
    if default_rmse is not None and (final_rmse is None or default_rmse < final_rmse):
        shutil.rmtree(config.model_dir)
        shutil.copytree(work / "model", config.model_dir)
        shutil.rmtree(work, ignore_errors=True)
        return {**outcome, "kept": "default", "result": default_result,
                "reason": f"the default configuration trained to eval {metric} {default_rmse:.4g}, better than the "
                          f"tuned one's {final_rmse:.4g}: the default model is kept"}
    shutil.rmtree(work, ignore_errors=True)
    return {**outcome, "kept": "tuned",
            "reason": f"the tuned model's eval {metric} {final_rmse:.4g} is better than the default configuration "
                      f"trained the same way ({default_rmse:.4g})"}
