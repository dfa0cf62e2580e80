"""A plain MLP with batch normalization, written against mlengine's model-module contract.

The z-scored numeric features and an embedding of every id-valued feature are concatenated and
go through ``layers`` blocks of Dense (no bias) -> BatchNormalization -> ReLU -> Dropout. mlengine
adds the preprocessing before this body and the task's head, loss and serving signature after
it; batch normalization's moving averages are part of the exported SavedModel.

Run it: ``mlengine run --model-module examples/models/mlp_batchnorm.py --trials 3 --hp units=128``.
"""

import re

HYPERPARAMETERS = {
    "layers": {"default": 2, "min": 1, "max": 4},
    "units": {"default": 128, "values": [64, 128, 256]},
    "dropout": {"default": 0.1, "min": 0.0, "max": 0.5},
    "embedding_dim": {"default": 8, "values": [4, 8, 16]},
    "momentum": {"default": 0.99, "min": 0.9, "max": 0.999},
}


def build_model(features, hp):
    """Return the last block's activations: a float tensor [batch, units]."""
    keras = features.keras
    parts = [] if features.numeric is None else [features.numeric]
    for key, ids in features.ids.items():
        name = re.sub(r"[^A-Za-z0-9_]", "_", key)
        parts.append(keras.layers.Embedding(features.cardinality[key], hp["embedding_dim"],
                                            name=f"mlp_embed_{name}")(ids))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="mlp_inputs")(parts)
    for index in range(hp["layers"]):
        x = keras.layers.Dense(hp["units"], use_bias=False, name=f"mlp_dense_{index}")(x)
        x = keras.layers.BatchNormalization(momentum=hp["momentum"], name=f"mlp_batchnorm_{index}")(x)
        x = keras.layers.Activation("relu", name=f"mlp_relu_{index}")(x)
        if hp["dropout"] > 0:
            x = keras.layers.Dropout(hp["dropout"], name=f"mlp_dropout_{index}")(x)
    return x
