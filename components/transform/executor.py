"""The transform step: the analyze pass with this run's ``nbuckets``, saved as the transform artifact.

The analyze pass itself is shared (``components/shared/analyze.py``): every tuning trial re-runs
it with the trial's ``nbuckets``, so a preprocessing choice is tuned like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlengine.components.shared.analyze import analyze
from mlengine.components.shared.beam_runner import RUNNER_BEAM, RUNNER_LOCAL, check_runner
from mlengine.components.shared.featurespec import FeatureSpec
from mlengine.components.shared.logs import component_logger
from mlengine.components.shared.transform_state import TransformState

log = component_logger("transform")


@dataclass(frozen=True)
class TransformResult:
    """What the transform step produced: the analyzed state and where it was saved."""

    state: TransformState
    path: Path
    nbuckets: int
    rows: int
    spec_name: str
    runner: str

    @property
    def metadata(self) -> dict:
        """Lineage facts for the transform artifact."""
        return {"nbuckets": self.nbuckets, "rows": self.rows, "spec": self.spec_name, "runner": self.runner}


def _backend(runner: str, train_dir: str, spec: FeatureSpec, nbuckets: int, out_dir: str | Path, seed: int,
             beam_options: list[str] | str | None) -> TransformState:
    """The analyze pass on the chosen engine: Apache Beam (components/transform/beam.py) or this process."""
    if check_runner(runner) == RUNNER_BEAM:
        from mlengine.components.transform.beam import analyze_beam

        return analyze_beam(train_dir, spec, nbuckets, out_dir, beam_options=beam_options)
    return analyze(train_dir, spec, nbuckets, seed=seed)


def run(train_dir: str | Path, spec: FeatureSpec, nbuckets: int, out_dir: str | Path, *, seed: int = 0,
        runner: str = RUNNER_LOCAL, beam_options: list[str] | str | None = None) -> TransformResult:
    """Analyze ``train_dir`` and write ``out_dir/transform.json``.

    Args:
        train_dir: the training split (Parquet parts).
        spec: the feature spec.
        nbuckets: bucket count for the bucketized features.
        out_dir: where transform.json is written.
        seed: sampling seed of the local analyze pass.
        runner: "beam" runs the analyze pass as an Apache Beam pipeline with ``beam_options``;
            "local" in this process.
        beam_options: Beam pipeline options (list or space-separated string).

    Returns:
        The TransformResult (state, saved path, lineage facts).
    """
    state = _backend(runner, str(train_dir), spec, nbuckets, out_dir, seed, beam_options)
    path = state.save(out_dir)
    log.info("transform: %d bucketized feature(s) with nbuckets=%d, %d numeric, state in %s",
             len(state.boundaries), nbuckets, len(state.numeric), path)
    return TransformResult(state=state, path=Path(path), nbuckets=nbuckets, rows=state.rows, spec_name=spec.name,
                           runner=runner)
