"""The transform step: the analyze pass with this run's ``nbuckets``, saved as the transform artifact.

The analyze pass itself is shared (``components/shared/analyze.py``): every tuning trial re-runs
it with the trial's ``nbuckets``, so a preprocessing choice is tuned like any other.
"""

from __future__ import annotations

from pathlib import Path

from mlengine.components.shared.analyze import analyze
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.components.shared.logs import component_logger
from mlengine.components.shared.transform_state import TransformState

log = component_logger("transform")


def run(train_dir: str | Path, spec: FeatureSpec, nbuckets: int, out_dir: str | Path, *, seed: int = 0
        ) -> TransformState:
    """Analyze ``train_dir`` and write ``out_dir/transform.json``; returns the state."""
    state = analyze(str(train_dir), spec, nbuckets, seed=seed, progress=log.info)
    path = state.save(out_dir)
    log.info("transform: %d bucketized feature(s) with nbuckets=%d, %d numeric, state in %s",
             len(state.boundaries), nbuckets, len(state.numeric), path)
    return state
