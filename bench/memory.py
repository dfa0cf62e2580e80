"""A benchmark child's own peak RSS.

``getrusage(RUSAGE_SELF).ru_maxrss`` is no good for that on Linux: the high-water mark is inherited
through fork and kept through exec, so a child of a parent holding 3 GB reports 3 GB. The kernel's
per-address-space mark (``VmHWM`` in /proc/self/status) starts anew at exec.
"""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb(status: Path = STATUS) -> float:
    """This process's peak resident set size in MiB since it started (exec), threads included."""
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # not Linux: the only figure there is (no fork inheritance on macOS's exec)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
