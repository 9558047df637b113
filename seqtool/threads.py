"""How many threads a command computes with: PyTorch's intra-op threads, the OpenMP they run
on, and the BLAS numpy uses. Set in one place (`use_threads`, called for every command's
--threads), before torch or numpy is imported where possible, since OpenMP and OpenBLAS read
their settings once, when they load. Light: imports neither."""

from __future__ import annotations

import os
import sys
import time

THREADS_ENV = "SEQTOOL_THREADS"
# Read by OpenMP (PyTorch's threads, and MKL's), MKL itself, and numpy's OpenBLAS.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, as taskset or a container
    sets it), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runnable_tasks() -> int:
    """Tasks running or ready to run on the machine now, this process among them: the
    fourth field of /proc/loadavg (else the 1-minute load average, plus this process; else
    this process alone)."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        try:
            return round(os.getloadavg()[0]) + 1
        except (AttributeError, OSError):  # Windows
            return 1


def auto_threads(samples: int = 3) -> int:
    """The default: OMP_NUM_THREADS when the user set it; else the available cores that no
    other task is busy on (at least one). Spinning OpenMP and OpenBLAS threads that share a
    core with another busy process wait for each other at every matrix product: on a shared
    2-core machine with two more busy processes, `translate --beam 5` took 216 s on two
    threads, 61 s on one, 46 s with this default (benchmarks/results/threads.md). On an
    idle machine it is every core, as PyTorch's own default. The fewest runnable tasks of a
    few samples, 5 ms apart, so that a task that only passes by does not count."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    counts = []
    for sample in range(samples):
        if sample:
            time.sleep(0.005)
        counts.append(runnable_tasks())
    busy_elsewhere = max(0, min(counts) - 1)  # this process is runnable too
    return max(1, available_cores() - busy_elsewhere)


def use_threads(threads: int = 0) -> int:
    """Compute with `threads` threads (0 = `auto_threads()`) from now on; returns how many.

    Before torch and numpy load, the environment decides for them (and for any process this
    one starts); once loaded, torch is told directly, and numpy's BLAS through threadpoolctl
    when it is installed."""
    count = threads if threads > 0 else auto_threads()
    for name in THREAD_VARIABLES:
        os.environ[name] = str(count)
    torch = sys.modules.get("torch")  # None where torch is blocked (not installed)
    if torch is not None:
        torch.set_num_threads(count)
    if sys.modules.get("numpy") is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ModuleNotFoundError:
            pass
        else:
            threadpool_limits(count, user_api="blas")
    return count
