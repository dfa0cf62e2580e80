"""The user's model module in a rehearsal: read and checked once, staged next to the data, traced to the model.

As on a cluster, the module travels as its artifact folder (the file and ``model_module.json``,
components/shared/model_module.py) in the bucket under :data:`MODULE_URI`, where the tune step
stages it to the pipeline root; the rendered jobs name that prefix in ``--model-module``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlengine.rehearsal.engine import DATA_ROOT

MODULE_PART = "model_module"  # the artifact folder's name under the rehearsal's data root
MODULE_URI = f"{DATA_ROOT}/{MODULE_PART}"


def prepare_module(source: str | Path, folder: Path):
    """Write the module artifact folder from ``source`` and check it as ``mlengine run`` does: imported, then
    the whole model built and run on a tiny batch of the feature spec's shapes with the default
    hyperparameters. Returns the loaded module; a broken one is one ``ModelModuleError`` line naming the file."""
    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.shared.model_module import load_module, write_artifact
    from mlengine.components.train.public import check_model_module

    write_artifact(source, folder)
    check_model_module(folder, spec=load_spec(None))
    return load_module(folder, shown=str(source))


def module_entry(loaded, uri: str = MODULE_URI) -> dict[str, Any]:
    """rehearsal.json's record of the module: the file, its digest, the staged prefix and the values trained with."""
    return {"file": loaded.name, "source": loaded.shown, "sha256": loaded.sha256, "uri": uri,
            "hyperparameters": loaded.defaults()}


def trained_with_module(record: dict[str, Any], loaded) -> str | None:
    """Why a model's train_config.json (``record``) was not trained with ``loaded`` (None when it was)."""
    if not record.get("model_module"):
        return "its train_config.json names no model module: the job trained the built-in network"
    given = json.loads(record["model_hp"]) if record.get("model_hp") else {}
    if given != loaded.defaults():
        return f"its model_hp {given} are not the module's {loaded.defaults()}"
    return None


def saved_model_layers(model_dir: Path) -> list[str]:
    """The layer names of a SavedModel's variables (``mlp_dense_0/kernel:0`` -> ``mlp_dense_0``)."""
    from mlengine.components.shared.tf import import_tf
    from mlengine.constants import SERVING_MODEL_SUBDIR

    tf, _ = import_tf()
    saved = tf.saved_model.load(str(model_dir / SERVING_MODEL_SUBDIR))
    return sorted({variable.name.split("/", 1)[0] for variable in saved.variables})
