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
