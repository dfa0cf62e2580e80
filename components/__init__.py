"""The mlengine component suite: one KFP component per step, under one stable name each.

    from mlengine.components import IngestOp, TrainOp

    @dsl.pipeline
    def my_pipeline(data_uri: str):
        ingest = IngestOp(data_uri=data_uri, spec_uri="", split_seed=0)
        ...

Each name is the ``@dsl.component`` of ``components/<folder>/component.py`` (its README lists the
inputs and outputs). The names are resolved on first use (PEP 562 ``__getattr__``): this package
is also the parent of every component's logic modules, which must import without kfp, so
``import mlengine.components.shared.featurespec`` loads no kfp; ``mlengine compile --components DIR``
writes each one as a component YAML for ``kfp.components.load_component_from_file``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> component folder (components/<folder>/component.py defines the function <folder>)
COMPONENTS: dict[str, str] = {
    "IngestOp": "ingest",
    "TransformOp": "transform",
    "TuneOp": "tune",
    "TrainOp": "train",
    "EvaluateOp": "evaluate",
    "DeployOp": "deploy",
    "BatchPredictOp": "batch_predict",
    "MonitorOp": "monitor",
}

__all__ = list(COMPONENTS)


def __getattr__(name: str) -> Any:
    folder = COMPONENTS.get(name)
    if folder is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    component = getattr(importlib.import_module(f"{__name__}.{folder}.component"), folder)
    globals()[name] = component  # the next access skips this function
    return component


def __dir__() -> list[str]:
    return sorted([*globals(), *COMPONENTS])
