"""How many ingest worker processes, and their fork server started early (nothing heavy imported here).

The local engine (``local.py``) forks its workers from a fork server that imported ``worker.py``
(pyarrow, numpy) and pandas once: about 0.45 s of one core before the first worker can start.
``start_early`` starts that server at the beginning of a command that will ingest a large input,
so it imports while this process is still importing and reading its inputs on the other core,
instead of after.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

START_METHOD = "forkserver"  # workers fork from a server that imported worker.py once: fast, thread-safe
PRELOAD = ("mlengine.components.ingest.worker", "pandas")  # pyarrow imports pandas on first use
MIN_PIECE_BYTES = 32 << 20  # about 0.2 s of one core's work: less would not pay for a worker's start (0.4 s)
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_CPU = (("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),)


def default_workers() -> int:
    """The cores this process may use: its CPU affinity (``taskset``), capped by a cgroup CPU quota.

    A Kubernetes CPU limit is a quota, not an affinity: a pod limited to 2 CPUs on a 64-core node
    still sees 64 cores, and 64 workers there would only share 2 CPUs' time and 64 times the memory.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup allows (cgroup v2 ``cpu.max``, or v1's CFS files); None: no limit."""
    for quota_file, period_file in ((CGROUP_V2_CPU_MAX, None), *CGROUP_V1_CPU):
        try:
            if period_file is None:
                quota, period = Path(quota_file).read_text(encoding="ascii").split()[:2]
            else:
                quota = Path(quota_file).read_text(encoding="ascii").strip()
                period = Path(period_file).read_text(encoding="ascii").strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1") or float(period) <= 0:
            return None
        return float(quota) / float(period)
    return None


def start_server() -> None:
    """Start the fork server (with its preloaded modules) now, if it is not running; returns at once."""
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context(START_METHOD).set_forkserver_preload(list(PRELOAD))
    forkserver.ensure_running()


def start_early(data_uri: str, workers: int = 0) -> bool:
    """Start the fork server when ``data_uri`` (local files) is large enough for more than one worker.

    Returns whether it did. Remote and compressed inputs, one worker and small inputs start nothing
    here: the engine starts the server itself when it makes a pool.
    """
    if (workers or default_workers()) < 2 or ("://" in data_uri and not data_uri.startswith("file://")):
        return False
    local = data_uri.removeprefix("file://")
    paths = [local] if os.path.isfile(local) else glob.glob(os.path.join(local, "*") if os.path.isdir(local) else local)
    size = sum(os.path.getsize(path) for path in paths
               if os.path.isfile(path) and not path.lower().endswith(".gz"))
    if size < 2 * MIN_PIECE_BYTES:
        return False
    start_server()
    return True
