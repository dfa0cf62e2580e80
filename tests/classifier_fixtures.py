"""Small generated classification data and really trained classifiers, for tests.

The label follows a noisy rule on a numeric and a string column, so a model that learns it beats
the majority class by a wide margin. Data is written straight to Parquet (``model_fixtures``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.classification_fixtures import BINARY_SPEC, IRIS_LIKE_SPEC
from tests.model_fixtures import write_splits

COLOURS = ("red", "green", "blue")


def classification_columns(raw_spec: dict, rows: int, seed: int = 1, noise: float = 0.6) -> dict[str, np.ndarray]:
    """Columns of ``IRIS_LIKE_SPEC`` / ``BINARY_SPEC``: ``petal_length`` uniform on [0, 10], a colour, the label.

    score = petal_length + 2.5 (red) - 1.5 (blue) + noise; binary: score > 5.5; three classes:
    cut at 4 and 7.5.
    """
    rng = np.random.default_rng(seed)
    length = rng.uniform(0.0, 10.0, rows)
    colour = np.array(COLOURS, dtype=object)[rng.integers(0, len(COLOURS), rows)]
    score = length + np.where(colour == "red", 2.5, 0.0) - np.where(colour == "blue", 1.5, 0.0)
    score += rng.normal(0.0, noise, rows)
    classes = list(raw_spec["label"]["vocabulary"])
    cuts = [5.5] if len(classes) == 2 else [4.0, 7.5]
    index = np.digitize(score, cuts).astype(np.int64)
    label_type = raw_spec["label"]["type"]
    label = (np.array(classes, dtype=object)[index] if label_type == "string"
             else np.array(classes, dtype=np.int64)[index])
    return {"petal_length": length, "colour": colour, raw_spec["label"]["name"]: label}


def train_tiny_classifier(workdir: Path, raw_spec: dict | None = None, *, rows: int = 600, epochs: int = 3,
                          seed: int = 1, **config) -> tuple[Path, dict, dict[str, Path]]:
    """Generate, analyze and train; returns (model_dir, the trainer's result, the splits)."""
    from mlengine.components.shared.analyze import analyze
    from mlengine.components.shared.featurespec import spec_from_dict
    from mlengine.components.train.trainer import TrainConfig, train

    raw_spec = raw_spec or IRIS_LIKE_SPEC
    spec = spec_from_dict(raw_spec)
    workdir = Path(workdir)
    splits = write_splits(classification_columns(raw_spec, rows, seed), spec, workdir / "data")
    analyze(str(splits["train"]), spec, 4).save(workdir / "transform")
    values = {"hidden_units": [16, 8], "learning_rate": 0.03, "batch_size": 32, "epochs": epochs, **config}
    result = train(TrainConfig(train_dir=str(splits["train"]), eval_dir=str(splits["eval"]),
                               transform_dir=str(workdir / "transform"), model_dir=str(workdir / "model"),
                               **values))
    return workdir / "model", result, splits


__all__ = ["BINARY_SPEC", "IRIS_LIKE_SPEC", "classification_columns", "train_tiny_classifier"]
