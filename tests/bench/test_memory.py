"""A benchmark child's peak RSS is its own, not the high-water mark of the parent it was started from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[2]
_CHILD = """
import json, resource
from bench.memory import peak_rss_mb
print(json.dumps({"own": peak_rss_mb(), "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork inheritance of ru_maxrss is Linux's")
def test_a_child_of_a_large_parent_reports_its_own_peak():
    hold = bytearray(600 * 2**20)  # the parent's high-water mark grows by 600 MiB (bytes written: resident)
    hold[::4096] = b"x" * len(hold[::4096])
    child = json.loads(subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout)
    del hold
    assert child["ru_maxrss"] > 600  # what the benchmarks used to report: the parent's mark
    assert child["own"] < 200  # a bare interpreter


def test_the_peak_is_read_from_the_status_file(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 9000000 kB\nVmHWM:\t  524288 kB\nVmRSS:\t  1024 kB\n", encoding="ascii")
    assert peak_rss_mb(status) == 512.0
