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

import contextlib
import logging
import sys
from collections.abc import Sequence

from mlengine.errors import MlengineError

log = logging.getLogger("mlengine.beam")

RUNNER_LOCAL = "local"
RUNNER_BEAM = "beam"
PREPROCESSING_RUNNERS = (RUNNER_LOCAL, RUNNER_BEAM)
BEAM_EXTRA = "beam"  # pip install "kfp-mlengine[beam]"
DISTRIBUTION = "kfp-mlengine"
BEAM_LOGGER = "apache_beam"


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
    with _root_logging_guard():
        try:
            import apache_beam
        except ImportError as err:
            raise MlengineError(beam_missing_message(err)) from None
    return apache_beam


def _beam_records(record: logging.LogRecord) -> bool:
    """Beam's own loggers only: not mlengine's (they have their handler), not the root-level notice
    Beam's import logs about Google Cloud clients it does not need here."""
    return record.name == BEAM_LOGGER or record.name.startswith(BEAM_LOGGER + ".")


@contextlib.contextmanager
def _root_logging_guard():
    """Beam calls logging.basicConfig() (PipelineOptions, module-level logging.warning): with no root
    handler that installs one, and every mlengine line would be printed twice. A root handler of our
    own for the duration keeps Beam's warnings on stderr and mlengine's lines single."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(_beam_records)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


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

    with _root_logging_guard():
        pipeline_options = PipelineOptions(split_beam_options(options))
        if pipeline_options.view_as(StandardOptions).runner is None:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            return beam.Pipeline(runner=FnApiRunner(), options=pipeline_options)
        return beam.Pipeline(options=pipeline_options)


@contextlib.contextmanager
def beam_pipeline(options: Sequence[str] | str | None = None):
    """``with beam_pipeline(opts) as p:`` build on ``p``; the pipeline runs (and waits) on exit."""
    pipeline = make_pipeline(options)
    log.info("beam: running on %s", type(pipeline.runner).__name__)
    with _root_logging_guard(), pipeline as p:
        yield p


def merge_accumulators(accumulators):
    """A ``CombineFn.merge_accumulators`` for accumulators that merge in place (``a.merge(b)``)."""
    accumulators = iter(accumulators)
    merged = next(accumulators)
    for other in accumulators:
        merged.merge(other)
    return merged
