"""What `mlengine run` lets through to the console from kfp.local's output: progress and errors,
never a failed step's traceback frames (pipeline.log keeps everything)."""

from __future__ import annotations

import io

from mlengine.pipelines.local_run import _ConsoleFilter

STEP_OUTPUT = """\
    ingest: done: 1,316 rows read
    Traceback (most recent call last):
      File "<frozen runpy>", line 198, in _run_module_as_main
        raise DataError(f"{source}: {reason}")
    mlengine.errors.DataError: data.csv: the eval split has 92 of 1,316 rows
08:00:00.000 - ERROR - Task 'ingest' finished with status FAILURE
    Traceback (most recent call last):
      File "x.py", line 3, in <module>
        1 / 0
    ZeroDivisionError: division by zero
    train: epoch 1/2 loss=1
"""


def test_tracebacks_stay_in_the_log_and_progress_reaches_the_console(tmp_path):
    console = io.StringIO()
    log = tmp_path / "pipeline.log"
    sink = _ConsoleFilter(log, console)
    sink.write(STEP_OUTPUT)
    sink.close()
    assert console.getvalue().splitlines() == [
        "ingest: done: 1,316 rows read",
        "08:00:00.000 - ERROR - Task 'ingest' finished with status FAILURE",
        "ZeroDivisionError: division by zero",  # not one of ours: the run's error line would not say it
        "train: epoch 1/2 loss=1",
    ]
    assert log.read_text() == STEP_OUTPUT
