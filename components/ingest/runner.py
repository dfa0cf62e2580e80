"""Ingest on the engine the caller names: this process (``local``) or an Apache Beam pipeline (``beam``)."""

from __future__ import annotations

from typing import Any

from mlengine.components.ingest.executor import IngestResult, run_ingest
from mlengine.components.shared.beam_runner import RUNNER_BEAM, RUNNER_LOCAL, check_runner
from mlengine.components.shared.featurespec import FeatureSpec


def ingest_on(runner: str, data_uri: str, spec: FeatureSpec, output_dirs: dict[str, str], rejects_path: str,
              statistics_dir: str, *, beam_options: list[str] | str | None = None, **kwargs: Any) -> IngestResult:
    """``run_ingest`` (local) or ``run_ingest_beam`` (beam) with the same arguments; one-line error otherwise."""
    if check_runner(runner) == RUNNER_BEAM:
        from mlengine.components.ingest.beam import run_ingest_beam

        kwargs.pop("progress", None)  # the Beam path reports through logging
        return run_ingest_beam(data_uri, spec, output_dirs, rejects_path, statistics_dir,
                               beam_options=beam_options, **kwargs)
    assert runner == RUNNER_LOCAL
    return run_ingest(data_uri, spec, output_dirs, rejects_path, statistics_dir, **kwargs)
