"""Which engine runs ingest and analyze, and the Beam pipeline both Beam paths start from.

``local`` is the single-process path; ``beam`` builds the same logic as an Apache Beam pipeline
(components/ingest/beam.py, components/transform/beam.py). Without a ``--runner`` among the Beam
options the pipeline runs in this process on Beam's FnApiRunner (what the DirectRunner uses for
batch pipelines): the DirectRunner itself tries the Prism runner first, which downloads a Go
binary on first use. Any other runner (FlinkRunner, PortableRunner, SparkRunner,
DataflowRunner) comes from standard Beam pipeline options, e.g. ``--runner=PortableRunner
--job_endpoint=flink-jobmanager:8099 --environment_type=EXTERNAL ...``.

apache_beam is imported inside functions only: importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mlengine.errors import MlengineError

RUNNER_LOCAL = "local"
RUNNER_BEAM = "beam"
PREPROCESSING_RUNNERS = (RUNNER_LOCAL, RUNNER_BEAM)
BEAM_EXTRA = "beam"  # pip install "kfp-mlengine[beam]"
DISTRIBUTION = "kfp-mlengine"


def check_runner(runner: str) -> str:
    """The runner name, or a one-line error naming the runners that exist."""
    if runner not in PREPROCESSING_RUNNERS:
        raise MlengineError(f"unknown runner {runner!r}; the runners that exist: {', '.join(PREPROCESSING_RUNNERS)} "
                            "(Beam's own runners are chosen with --beam-option=--runner=...)")
    return runner


def beam_missing_message(err: ImportError) -> str:
    """The one line for a Beam path started without Apache Beam installed."""
    missing = getattr(err, "name", None) or "apache_beam"
    return (f"runner 'beam' needs Apache Beam ({missing} is not importable): "
            f"pip install '{DISTRIBUTION}[{BEAM_EXTRA}]'")


def import_beam():
    """``apache_beam``, or MlengineError naming the extra to install."""
    root = logging.getLogger()
    # a module-level logging.warning() inside Beam's import would otherwise install a root handler
    # (logging.basicConfig), and every mlengine line would then be printed twice
    guard = None if root.handlers else logging.NullHandler()
    if guard:
        root.addHandler(guard)
    try:
        import apache_beam
    except ImportError as err:
        raise MlengineError(beam_missing_message(err)) from None
    finally:
        if guard:
            root.removeHandler(guard)
    return apache_beam


def split_beam_options(options: Sequence[str] | str | None) -> list[str]:
    """Beam pipeline options as argv items: a list as given, a string split on whitespace."""
    if options is None:
        return []
    if isinstance(options, str):
        return options.split()
    return [str(option) for option in options]


def make_pipeline(options: Sequence[str] | str | None = None):
    """A ``beam.Pipeline``: in-process FnApiRunner unless the options name a runner."""
    beam = import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    argv = split_beam_options(options)
    pipeline_options = PipelineOptions(argv)
    if pipeline_options.view_as(StandardOptions).runner is None:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=pipeline_options)
    return beam.Pipeline(options=pipeline_options)
