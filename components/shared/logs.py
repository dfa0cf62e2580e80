"""Progress lines through the standard ``logging`` module: one logger per component.

Components log to ``mlengine.<component>`` (``logging.getLogger("mlengine.tune")``); whoever
runs them (the CLI, a KFP component body, a task process) calls ``setup_logging()`` once, which
sends every ``mlengine.*`` record to stderr as a bare line. Tests read the lines with pytest's
``caplog``.
"""

from __future__ import annotations

import logging
import sys

ROOT_LOGGER = "mlengine"
_HANDLER_NAME = "mlengine-stderr"


class _CurrentStderrHandler(logging.StreamHandler):
    """A stderr handler that writes to whatever ``sys.stderr`` is when a record comes (a CLI called
    twice in one process, e.g. under pytest's capture, must not write to a closed stream)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it; the property always wins
        pass


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """One stderr handler on the ``mlengine`` logger (idempotent); returns that logger.

    In a process a local run started (every component body calls this first) it also starts the
    watchdog that ends the process when the run is gone (:mod:`runguard`).
    """
    from mlengine.components.shared.runguard import watch_run

    watch_run()
    return log_to_stderr(ROOT_LOGGER, level)


def log_to_stderr(name: str, level: int = logging.INFO) -> logging.Logger:
    """One bare-line stderr handler on the logger ``name`` (idempotent), without the run watchdog;
    returns that logger. A program's own process (a training task) uses it for one module's lines."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


def component_logger(component: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT_LOGGER}.{component}")
