"""Progress lines of one module's logger handed to a function as they come (a test may act on one)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def logged_lines(logger_name: str, on_line: Callable[[str], None]) -> Iterator[None]:
    """Call ``on_line(message)`` for every INFO (or higher) record of ``logger_name`` while the block runs."""
    logger = logging.getLogger(logger_name)
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: on_line(record.getMessage())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
