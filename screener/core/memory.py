"""Memory of a screening process: its peak resident size, and glibc's allocator settings."""

from __future__ import annotations

import math
import os


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB).

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` is carried over from the
    parent through fork + exec, so a worker spawned by a large process would report the parent's.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib / 1024.0 if os.uname().sysname != "Darwin" else kib / 2**20
    except (ImportError, AttributeError):  # pragma: no cover - not POSIX
        return math.nan


_MALLOC_TUNED = False


#: glibc settings of a screening process: allocations up to 32 MiB come from the heap (not a fresh
#: mmap each time) and up to 256 MiB of free heap is kept. Dask workers start with
#: MALLOC_TRIM_THRESHOLD_=65536, which turns every message-passing tensor into mmap + page faults:
#: measured 2-3x slower model stage, a third of the CPU time in the kernel.
MALLOC_MMAP_THRESHOLD = 32 << 20


MALLOC_TRIM_THRESHOLD = 256 << 20


def tune_malloc() -> bool:
    """Apply :data:`MALLOC_MMAP_THRESHOLD` and :data:`MALLOC_TRIM_THRESHOLD` to this process, once.

    Only on glibc (Linux); ``SCREENER_MALLOC_TUNING=0`` turns it off. Returns whether it applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if os.environ.get("SCREENER_MALLOC_TUNING", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, MALLOC_MMAP_THRESHOLD) == 1  # M_MMAP_THRESHOLD
        ok = libc.mallopt(-1, MALLOC_TRIM_THRESHOLD) == 1 and ok  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok
