"""A deep & cross network (DCN-v2, Wang et al. 2021) written against mlengine's model-module contract.

Every id-valued feature (bucket, categorical and crossed ids) is embedded and concatenated with
the z-scored numeric features into ``x0``. The cross tower learns explicit feature interactions,
``x_{l+1} = x0 * (W_l x_l + b_l) + x_l``, the deep tower is a plain ReLU MLP; both are stacked
side by side. mlengine adds the preprocessing before this body and the task's head, loss and
serving signature after it: the served model is a plain SavedModel that takes raw columns.

Run it: ``mlengine run --model-module examples/models/deep_cross.py --trials 3``.
"""

import re

HYPERPARAMETERS = {
    "cross_layers": {"default": 2, "min": 1, "max": 4},
    "deep_layers": {"default": 2, "min": 1, "max": 3},
    "deep_units": {"default": 64, "values": [32, 64, 128]},
    "embedding_dim": {"default": 8, "values": [4, 8, 16]},
    "dropout": {"default": 0.0, "min": 0.0, "max": 0.3},
}


def _layer_name(key):
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


def build_model(features, hp):
    """Return the stacked cross and deep towers: a float tensor [batch, k]."""
    keras = features.keras
    parts = [] if features.numeric is None else [features.numeric]
    for key, ids in features.ids.items():
        parts.append(keras.layers.Embedding(features.cardinality[key], hp["embedding_dim"],
                                            name=f"dcn_embed_{_layer_name(key)}")(ids))
    x0 = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="dcn_x0")(parts)
    width = x0.shape[-1]

    cross = x0
    for index in range(hp["cross_layers"]):
        projected = keras.layers.Dense(width, name=f"dcn_cross_{index}")(cross)
        gated = keras.layers.Multiply(name=f"dcn_cross_{index}_gate")([x0, projected])
        cross = keras.layers.Add(name=f"dcn_cross_{index}_residual")([gated, cross])

    deep = x0
    for index in range(hp["deep_layers"]):
        deep = keras.layers.Dense(hp["deep_units"], activation="relu", name=f"dcn_deep_{index}")(deep)
        if hp["dropout"] > 0:
            deep = keras.layers.Dropout(hp["dropout"], name=f"dcn_deep_{index}_dropout")(deep)
    return keras.layers.Concatenate(name="dcn_stack")([cross, deep])
