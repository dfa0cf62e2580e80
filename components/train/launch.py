"""Where a training run happens: one process here, a local TF_CONFIG cluster, or a TFJob.

The train component calls `launch_training`; the choice is data (mode + topology), so the
pipeline DAG is the same on a laptop and on Kubeflow.
"""

from __future__ import annotations

from typing import Any

from mlengine.errors import MlengineError

MODES = ("local", "cluster")


def launch_training(config, *, workers: int = 1, ps: int = 0, strategy: str = "auto", mode: str = "local",
                    model_uri: str | None = None, log=print) -> dict[str, Any]:
    """Train with ``config`` on the requested topology; returns the trainer's result dict."""
    from mlengine.components.train.local_cluster import Topology

    if mode not in MODES:
        raise MlengineError(f"mode {mode!r}: expected one of {list(MODES)}")
    topology = Topology(workers=workers, ps=ps, strategy=strategy)
    topology.validate()
    if mode == "cluster":
        from mlengine.components.train.tfjob import run_tfjob_for_config

        return run_tfjob_for_config(config, topology, model_uri=model_uri, log=log)
    if topology.is_single_process:
        from mlengine.components.train.trainer import train

        return train(config, progress=log)
    from mlengine.components.train.local_cluster import run_local_cluster

    return run_local_cluster(config, topology, log=log)
