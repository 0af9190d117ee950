"""Keep freed memory in the process, so CPU generation stops paying page faults for every large tensor.

glibc serves blocks above its mmap threshold (128 KiB at start, raised only as the process happens to free larger
blocks) with ``mmap`` and hands them back with ``munmap`` when freed. A batched ``generate`` call on CPU allocates and
frees multi-MB activations at every layer, so each call faults all of them in from the kernel again.
:func:`keep_freed_memory` pins the thresholds high instead (``mallopt``): large blocks come from the heap and go back to it, and up to :data:`TRIM_THRESHOLD_BYTES` of
free memory stays with the process.

Linux with glibc only; elsewhere (macOS, musl) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks below this come from the heap (32 MiB is glibc's ceiling for the setting on 64-bit systems)."""
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024
"""Free memory at the top of the heap beyond this is returned to the kernel."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (process-wide, idempotent).

    Returns:
        True when both settings were applied; False on a platform without glibc's ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
