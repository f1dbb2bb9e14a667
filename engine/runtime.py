"""Process-wide settings for fast CPU inference, applied once at program start, and the cores
this process may use."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's malloc hands every large block (a frame-sized tensor) back to the kernel when freed and
# maps it afresh on the next frame, page faults included. Keeping such blocks in the heap took
# rasterize + composite at 256x256 on one thread from 7.9 to 4.7 ms median (bench/render.py).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30


def tune_allocator() -> bool:
    """Keep freed large blocks for reuse (glibc only; elsewhere a no-op). True if applied."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (what a container or `taskset` grants),
    not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
