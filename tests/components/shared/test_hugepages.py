"""Transparent huge pages off inside the block and put back as they were after it (Linux prctl)."""

from __future__ import annotations

import sys
import threading

import pytest

from mlengine.components.shared.hugepages import huge_pages_disabled, transparent_huge_pages_off

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_THP_DISABLE) is Linux's")


def test_off_inside_the_block_and_restored_after_it_also_on_error():
    before = huge_pages_disabled()
    assert before is not None  # Linux answers (False unless a parent process turned them off)
    with transparent_huge_pages_off() as took:
        assert took is True and huge_pages_disabled() is True
    assert huge_pages_disabled() is before
    with pytest.raises(RuntimeError), transparent_huge_pages_off():
        assert huge_pages_disabled() is True
        raise RuntimeError("a failed run")
    assert huge_pages_disabled() is before


def test_overlapping_blocks_restore_only_when_the_last_one_ends():
    """The flag is per process: a run ending while another one is still going leaves it off."""
    before = huge_pages_disabled()
    first_in, second_done, seen = threading.Event(), threading.Event(), {}

    def first() -> None:
        with transparent_huge_pages_off():
            first_in.set()
            second_done.wait(10)
            seen["first, after the second ended"] = huge_pages_disabled()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with transparent_huge_pages_off():
        pass
    seen["after the second"] = huge_pages_disabled()
    second_done.set()
    thread.join(10)
    assert seen == {"after the second": True, "first, after the second ended": True}
    assert huge_pages_disabled() is before


def test_a_process_that_had_them_off_keeps_them_off():
    from mlengine.components.shared import hugepages

    prctl, before = hugepages._prctl(), huge_pages_disabled()
    prctl(hugepages.PR_SET_THP_DISABLE, 1, 0, 0, 0)
    try:
        with transparent_huge_pages_off():
            assert huge_pages_disabled() is True
        assert huge_pages_disabled() is True
    finally:
        prctl(hugepages.PR_SET_THP_DISABLE, int(before), 0, 0, 0)
