"""Host-process settings that make XLA:CPU steps faster (no effect on results).

glibc serves large allocations (above its 32 MiB mmap threshold: stacked weight gradients,
activations of a packed batch) with fresh ``mmap`` pages and unmaps them on free, so every step
page-faults its big temporaries back in: XLA's zero-fill of a 106 MB gradient buffer ran at
~2 GB/s instead of ~17 GB/s. Serving them from one retained heap instead took ~18% off a
SmolLM2-135M train step on a 2-core machine (bench/README.md). Freed memory is kept for reuse, so
the process keeps its peak footprint.

Call :func:`tune_malloc` first thing, before JAX or torch start their thread pools.
``FORGET_JAX_TUNE_MALLOC=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
_applied = False


def tune_malloc() -> bool:
    """glibc ``mallopt``: one arena, no mmap for large blocks, no trimming. True if applied."""
    global _applied
    if _applied:
        return True
    if os.environ.get("FORGET_JAX_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1),
                (_M_TOP_PAD, 256 << 20))
    _applied = all(libc.mallopt(param, value) == 1 for param, value in settings)
    return _applied
