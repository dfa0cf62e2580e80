"""The train step: one process here, a local TF_CONFIG cluster (``local.py``), or a TFJob (``cluster.py``).

The choice is data (``mode`` + topology), so the pipeline DAG is the same on a laptop and on
Kubeflow; every topology runs the same training program (``task.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlengine.components.shared.logs import component_logger
from mlengine.constants import RUN_MODES
from mlengine.errors import MlengineError

TFJOB_NAME_FILE = "tfjob-name"  # written first in the model dir: a restarted step re-attaches to its TFJob
log = component_logger("train")


def run(config, *, workers: int = 1, ps: int = 0, strategy: str = "auto", mode: str = "local",
        model_uri: str | None = None) -> dict[str, Any]:
    """Train with ``config`` (a TrainConfig) on the requested topology; returns the trainer's result dict."""
    from mlengine.components.shared.distributed import Topology

    if mode not in RUN_MODES:
        raise MlengineError(f"mode {mode!r}: expected one of {list(RUN_MODES)}")
    topology = Topology(workers=workers, ps=ps, strategy=strategy)
    topology.validate()
    if mode == "cluster":
        from mlengine.components.train.cluster import run_tfjob_for_config

        name_file = Path(config.model_dir) / TFJOB_NAME_FILE
        name_file.parent.mkdir(parents=True, exist_ok=True)
        return run_tfjob_for_config(config, topology, model_uri=model_uri, log=log.info, name_file=str(name_file))
    if topology.is_single_process:
        from mlengine.components.train.trainer import train

        return train(config, progress=log.info)
    from mlengine.components.train.local import run_local_cluster

    return run_local_cluster(config, topology, log=log.info)


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
    trial of the study (its params and eval RMSE, trained for the tuning epochs). When the final
    model's eval RMSE is worse than that trial's, the default configuration is trained the same
    way (same maximum epochs) and the better of the two is kept in ``config.model_dir``. Returns
    ``{"kept", "reason", ...}`` for the report.
    """
    import shutil
    from dataclasses import replace

    final_rmse = result.get("eval_rmse")
    if default is None:
        return {"kept": "trained", "reason": "no tuning study with a default trial: nothing to compare"}
    same = all(chosen.get(k) == v for k, v in default["params"].items() if k in chosen)
    if same:
        return {"kept": "default", "reason": "tuning chose the default configuration", "final_rmse": final_rmse,
                "default_trial_rmse": default["rmse"]}
    if final_rmse is not None and final_rmse <= default["rmse"]:
        return {"kept": "tuned", "final_rmse": final_rmse, "default_trial_rmse": default["rmse"],
                "reason": f"the tuned model's eval RMSE {final_rmse:.4g} is not worse than the default "
                          f"configuration's trial ({default['rmse']:.4g})"}
    from mlengine.components.shared import analyze
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.shared.transform_state import TransformState

    log.info("train: the tuned model's eval RMSE %.4g is worse than the default trial's %.4g: training the default "
             "configuration too", final_rmse, default["rmse"])
    params = HyperParameters.from_dict(default["params"])
    work = Path(config.model_dir).parent / (Path(config.model_dir).name + "-default")
    state = TransformState.load(config.transform_dir)
    analyze.analyze(config.train_dir, state.spec, params.nbuckets, progress=log.info).save(work / "transform")
    default_config = replace(config, model_dir=str(work / "model"), transform_dir=str(work / "transform"),
                             hidden_units=params.layers, learning_rate=params.learning_rate,
                             batch_size=params.batch_size)
    if train_fn is None:
        from mlengine.components.train.trainer import train as train_fn
    default_result = train_fn(default_config, progress=log.info)
    default_rmse = default_result.get("eval_rmse")
    outcome = {"final_rmse": final_rmse, "default_trial_rmse": default["rmse"], "default_final_rmse": default_rmse}
    if default_rmse is not None and (final_rmse is None or default_rmse < final_rmse):
        shutil.rmtree(config.model_dir)
        shutil.copytree(work / "model", config.model_dir)
        shutil.rmtree(work, ignore_errors=True)
        return {**outcome, "kept": "default", "result": default_result,
                "reason": f"the default configuration trained to eval RMSE {default_rmse:.4g}, better than the "
                          f"tuned one's {final_rmse:.4g}: the default model is kept"}
    shutil.rmtree(work, ignore_errors=True)
    return {**outcome, "kept": "tuned",
            "reason": f"the tuned model's eval RMSE {final_rmse:.4g} is better than the default configuration "
                      f"trained the same way ({default_rmse:.4g})"}
