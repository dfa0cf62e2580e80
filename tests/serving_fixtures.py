"""Shared helpers of the serving and deploy tests: one real trained model per session, sample rows.

Test modules wrap these in their own session fixtures; the model is trained once per test session
(``tests/model_fixtures.train_tiny_model``, the real export of the train component).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

_lock = threading.Lock()
_model_dir: list[Path] = []


def tiny_model_dir(tmp_path_factory) -> Path:
    """The exported model directory (serving/, feature_spec.yaml, transform.json), built once."""
    from tests.model_fixtures import train_tiny_model

    with _lock:
        if not _model_dir:
            _model_dir.append(train_tiny_model(tmp_path_factory.mktemp("serving-model"), rows=3000, epochs=1,
                                               nbuckets=4))
        return _model_dir[0]


def sample_rows(spec, count: int, seed: int = 5) -> list[dict]:
    """Synthetic taxi rows inside the spec's ranges, as plain JSON types (float / int)."""
    from mlengine.synthetic import generate_columns

    columns = generate_columns(count * 3, seed)
    keep = np.ones(count * 3, dtype=bool)
    for col in spec.columns:
        if col.range is not None:
            keep &= (columns[col.name] >= col.range[0]) & (columns[col.name] <= col.range[1])
    picked = np.flatnonzero(keep)[:count]
    assert len(picked) == count, "not enough in-range synthetic rows"
    return [{c.name: (float(columns[c.name][i]) if c.type == "float" else int(columns[c.name][i]))
             for c in spec.columns} for i in picked]


def in_process_predictions(model_dir: Path, rows: list[dict]) -> np.ndarray:
    """Predictions of the same SavedModel through the public SavedModel signature API (no server code)."""
    from mlengine.components.shared.savedmodel import load_model_dir

    model = load_model_dir(model_dir, fast_path=False)
    columns = {name: np.array([row[name] for row in rows]) for name in rows[0]}
    return np.asarray(model(columns), dtype=np.float64)
