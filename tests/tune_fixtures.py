"""Trial runners and data for the tuning tests.

The runners are module-level functions because the local study pickles them into spawned trial
processes. Each one appends its trial number to ``<out>/calls.log`` so a test can count how many
trials really ran (the resume test checks that finished trials are not run again).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from mlengine.constants import PARAM_LEARNING_RATE, PARAM_NBUCKETS


def _record_call(context) -> None:
    calls = Path(context.trial_dir).parents[1] / "calls.log"
    with calls.open("a", encoding="utf-8") as handle:
        handle.write(f"{context.number}\n")


def calls_made(out_dir) -> list[int]:
    path = Path(out_dir) / "calls.log"
    if not path.is_file():
        return []
    return [int(line) for line in path.read_text().split()]


def bowl(params: dict) -> float:
    """A smooth objective with its minimum 1.0 at nbuckets=16, learning_rate=10**-2.5."""
    return 1.0 + (params[PARAM_NBUCKETS] - 16) ** 2 / 100.0 + (math.log10(params[PARAM_LEARNING_RATE]) + 2.5) ** 2


def bowl_runner(params, context, report):
    """Deterministic: per-epoch values fall towards bowl(params); the objective is bowl(params)."""
    _record_call(context)
    value = bowl(params)
    for epoch in range(1, context.epochs + 1):
        report(epoch, value + 0.5 / epoch)
    return value


def crash_some_runner(params, context, report):
    """Raises for nbuckets below 12 and dies hard (no Python cleanup) for nbuckets 12..13."""
    _record_call(context)
    if params[PARAM_NBUCKETS] < 12:
        raise RuntimeError(f"simulated crash at nbuckets={params[PARAM_NBUCKETS]}")
    if params[PARAM_NBUCKETS] < 14:
        os._exit(7)
    return bowl(params)


def always_fail_runner(params, context, report):
    _record_call(context)
    raise ValueError("the data is unusable")


def nan_runner(params, context, report):
    _record_call(context)
    return float("nan") if params[PARAM_NBUCKETS] % 4 == 0 else bowl(params)


def sleepy_runner(params, context, report):
    """Writes its pid, then sleeps: the interruption tests kill the study around it."""
    _record_call(context)
    (Path(context.trial_dir) / "pid").write_text(str(os.getpid()))
    time.sleep(120)
    return bowl(params)

