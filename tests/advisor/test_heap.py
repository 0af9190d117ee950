"""keep_freed_memory: after it, a large malloc comes from the heap instead of a fresh kernel mapping."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json
    from tradelab.advisor.heap import keep_freed_memory

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def in_heap(address):
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("[heap]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if start <= address < end:
                    return True
        return False

    size = 16 * 1024 * 1024
    before = libc.malloc(size)
    result = {"before": in_heap(before)}
    libc.free(before)
    result["applied"] = keep_freed_memory()
    after = libc.malloc(size)
    result["after"] = in_heap(after)
    libc.free(after)
    print(json.dumps(result))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_large_blocks_come_from_the_heap_after_keep_freed_memory() -> None:
    import json

    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result == {"before": False, "applied": True, "after": True}, result
