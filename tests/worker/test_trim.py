"""trim_heap gives freed heap memory back to the system (glibc)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Run in a child: it changes the allocator's thresholds, which would outlive the test.
_CHILD = textwrap.dedent("""
    import ctypes, ctypes.util, psutil
    from shoal.worker._trim import trim_heap
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: keep these blocks in the heap
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: and never trim on free
    block = 1 << 20
    blocks = [libc.malloc(block) for _ in range(200)]
    for b in blocks:
        ctypes.memset(b, 1, block)  # touch: the pages are resident now
    keep = libc.malloc(64)  # pins the top of the heap, so free() alone cannot shrink it
    for b in blocks:
        libc.free(b)
    before = psutil.Process().memory_info().rss
    trimmed = trim_heap()
    after = psutil.Process().memory_info().rss
    print(trimmed, before - after)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_memory_freed_in_the_middle_of_the_heap_leaves_the_process() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) > 100 * 2**20
