"""The transform step: the analyze pass with this run's ``nbuckets``, saved as the transform artifact.

The analyze pass itself is shared (``components/shared/analyze.py``): every tuning trial re-runs
it with the trial's ``nbuckets``, so a preprocessing choice is tuned like any other.
"""

from __future__ import annotations

from pathlib import Path

from mlengine.components.shared.analyze import analyze
from mlengine.components.shared.beam_runner import RUNNER_BEAM, RUNNER_LOCAL, check_runner
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.components.shared.logs import component_logger
from mlengine.components.shared.transform_state import TransformState

log = component_logger("transform")


def run(train_dir: str | Path, spec: FeatureSpec, nbuckets: int, out_dir: str | Path, *, seed: int = 0,
        runner: str = RUNNER_LOCAL, beam_options: list[str] | str | None = None) -> TransformState:
    """Analyze ``train_dir`` and write ``out_dir/transform.json``; returns the state.

    ``runner`` "beam" runs the analyze pass as an Apache Beam pipeline (components/transform/beam.py)
    with ``beam_options``; "local" in this process.
    """
    if check_runner(runner) == RUNNER_BEAM:
        from mlengine.components.transform.beam import analyze_beam

        state = analyze_beam(str(train_dir), spec, nbuckets, out_dir, beam_options=beam_options)
    else:
        state = analyze(str(train_dir), spec, nbuckets, seed=seed, progress=log.info)
    path = state.save(out_dir)
    log.info("transform: %d bucketized feature(s) with nbuckets=%d, %d numeric, state in %s",
             len(state.boundaries), nbuckets, len(state.numeric), path)
    return state
