"""A user's model module inside the model: its body under mlengine's head, and the check before training.

``module_body`` calls the module's ``build_model(features, hp)`` on the preprocessing layer's
outputs (a :class:`~mlengine.components.train.model.ModelFeatures`) and checks what comes back:
a float tensor ``[batch, k]``. ``check_model_module`` imports the file and builds the whole
model (raw inputs -> preprocessing -> the module's body -> head) with the default
hyperparameters, then runs it on a tiny batch, before any data is used for training: from a real
transform state when there is one, else from the feature spec alone (placeholder statistics:
the shapes and cardinalities are what matter). Every problem is one line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlengine.components.shared.model_module import (
    LoadedModule,
    ModelModuleError,
    call_error,
    load_module,
    model_hp,
)

TINY_BATCH_ROWS = 2


def module_body(loaded: LoadedModule, features, hp: dict[str, Any]):
    """The module's ``build_model(features, hp)``, checked: a float tensor of rank 2."""
    keras = features.keras
    try:
        body = loaded.module.build_model(features, dict(hp))
    except Exception as err:
        raise call_error(err, loaded, "build_model") from err
    if not _is_symbolic(keras, body):
        raise ModelModuleError(f"{loaded.shown}: build_model returned {type(body).__name__}, expected the float "
                               "tensor [batch, k] its layers computed from features")
    rank = body.shape.rank
    if rank != 2:
        raise ModelModuleError(f"{loaded.shown}: build_model returned a tensor of shape {tuple(body.shape)}, "
                               "expected rank 2: [batch, k]")
    if not body.dtype.is_floating:
        raise ModelModuleError(f"{loaded.shown}: build_model returned a {body.dtype.name} tensor, expected float")
    return body


def _is_symbolic(keras, value) -> bool:
    try:
        return bool(keras.backend.is_keras_tensor(value))
    except (ValueError, TypeError, AttributeError):
        return False


def placeholder_state(spec, nbuckets: int):
    """A TransformState with the spec's shapes and neutral statistics (no data needed)."""
    from mlengine.components.shared.analyze import learned_vocabulary_names, numeric_names
    from mlengine.components.shared.transform_state import TransformState

    return TransformState(
        spec=spec, nbuckets=nbuckets, rows=0,
        numeric={name: {"mean": 0.0, "std": 1.0} for name in numeric_names(spec)},
        boundaries={name: [float(edge) for edge in range(1, nbuckets)] for name in spec.bucketized},
        vocabularies={name: ["a", "b"] for name in learned_vocabulary_names(spec)},
        benchmark={"feature": None, "slope": 0.0, "intercept": 0.0},
        label={"mean": 0.0, "std": 1.0, "transform": spec.label_transform},
    )


def tiny_batch(spec) -> dict[str, Any]:
    """Two rows of valid raw values per column (inside declared ranges and vocabularies)."""
    import numpy as np

    batch = {}
    for col in spec.columns:
        if col.type == "string":
            values = [str(v) for v in (col.vocabulary or ("a", "b"))]
            batch[col.name] = np.array([values[0], values[-1]], dtype=object)
            continue
        low, high = (col.range if col.range is not None else (0, 2))
        if col.vocabulary is not None:
            row = [col.vocabulary[0], col.vocabulary[-1]]
        elif col.type == "int":
            row = [int(low), int(high)]
        else:
            row = [float(low) + 0.25 * (float(high) - float(low)), float(low) + 0.75 * (float(high) - float(low))]
        batch[col.name] = np.array(row[:TINY_BATCH_ROWS], dtype=col.dtypes.numpy)
    return batch


def check_model_module(path_or_dir: str | Path, *, spec=None, state=None, values: dict[str, Any] | None = None,
                       builtin: dict[str, Any] | None = None) -> LoadedModule:
    """Import the module and build and run the model with it on a tiny batch; returns the loaded module.

    Args:
        path_or_dir: the module file (or a module artifact folder).
        spec: the feature spec (default: the built-in taxi spec); used when ``state`` is None.
        state: a real TransformState, when one exists.
        values: the module's hyperparameters fixed by the user (the others take their defaults).
        builtin: the built-in hyperparameters fixed by the user (nbuckets, learning_rate, batch_size).

    Raises:
        ModelModuleError: one line naming the file.
    """
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.shared.tf import import_tf
    from mlengine.components.train.model import build_model

    loaded = load_module(path_or_dir)
    defaults = HyperParameters.from_dict({k: v for k, v in (builtin or {}).items() if v is not None})
    hp = model_hp(loaded.values(values), defaults.to_dict())
    if state is None:
        from mlengine.components.shared.featurespec import load_spec

        state = placeholder_state(spec if spec is not None else load_spec(None), defaults.nbuckets)
    tf, keras = import_tf()
    keras.backend.clear_session()
    model = build_model(state, defaults.hidden_units, defaults.learning_rate, model_module=loaded, hp=hp)
    batch = {name: tf.constant(values) for name, values in tiny_batch(state.spec).items()}
    for training in (True, False):
        try:
            output = model(batch, training=training)
        except Exception as err:
            raise call_error(err, loaded, "the model on a tiny batch") from err
        if int(output.shape[0]) != TINY_BATCH_ROWS:
            raise ModelModuleError(f"{loaded.shown}: on a batch of {TINY_BATCH_ROWS} rows the model gave "
                                   f"{int(output.shape[0])} outputs: build_model must keep the batch dimension")
    keras.backend.clear_session()
    return loaded
