"""Transparent huge pages off while a batch job runs (Linux ``prctl``; elsewhere nothing happens).

Arrow's default allocator (mimalloc) asks the kernel for transparent huge pages. A job that
allocates and frees large Arrow buffers batch after batch then keeps faulting in fresh 2 MB pages,
which the kernel zeroes first: measured on batch prediction of 5M CSV rows on 2 cores, system time
1.2-2.2 s with huge pages, 0.4-0.5 s without, and 20-35% more rows/s (bench/README.md).
``MIMALLOC_ALLOW_THP=0`` does the same but only if set before ``pyarrow`` is imported; the
``prctl`` flag works whenever it is set, and is put back as it was afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_THP_DISABLE = 41  # <linux/prctl.h>
PR_GET_THP_DISABLE = 42

_lock = threading.Lock()
_holders = 0  # runs inside the context in this process: the flag is per process, the last one out restores it
_before = 0


def _prctl():
    """libc's ``prctl``, or None where there is none (not Linux)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def huge_pages_disabled() -> bool | None:
    """Whether transparent huge pages are off for this process; None where that cannot be asked."""
    prctl = _prctl()
    if prctl is None:
        return None
    state = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)
    return None if state < 0 else bool(state)


@contextmanager
def transparent_huge_pages_off() -> Iterator[bool]:
    """Transparent huge pages off for this process inside the block; yields whether that took effect."""
    global _holders, _before
    prctl = _prctl()
    with _lock:
        if prctl is None:
            took = False
        elif _holders:
            took = True
            _holders += 1
        else:
            state = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)
            took = state >= 0 and (state == 1 or prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0)
            if took:
                _before, _holders = state, 1
    try:
        yield took
    finally:
        if took:
            with _lock:
                _holders -= 1
                if not _holders and _before == 0:
                    prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)
