"""Hardware measurements a worker makes for ``Client.benchmark_hardware()``: disk, memory
and network bandwidth, each in bytes per second by size of the piece moved. Functions
``client.run`` calls (importable, so they travel by reference).

Owns: how each bandwidth is measured. Must not know: how the client sums them up.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from typing import Any

from dask.utils import parse_bytes

# Files the disk measurement appends to, picked at random (seeded), as dask's do.
_DISK_FILES = 100


def disk_bandwidth(sizes: tuple[str, ...], duration: float,
                   dask_worker: Any) -> dict[str, float]:
    """Per size: bytes per second appended (and fsynced) to files in the worker's local
    directory, for ``duration`` seconds (at least one write)."""
    out: dict[str, float] = {}
    pick = random.Random(0)
    for size_text in sizes:
        size = int(parse_bytes(size_text))
        data = os.urandom(size)
        with tempfile.TemporaryDirectory(prefix="shoal-benchmark-",
                                         dir=dask_worker.local_directory) as directory:
            start = time.perf_counter()
            total = 0
            while True:  # ends: after ``duration`` (each write is bounded by the disk)
                name = os.path.join(directory, str(pick.randrange(_DISK_FILES)))
                with open(name, "ab") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                total += size
                if time.perf_counter() - start >= duration:
                    break
            out[size_text] = total / (time.perf_counter() - start)
    return out


def memory_bandwidth(sizes: tuple[str, ...], duration: float) -> dict[str, float]:
    """Per size: bytes per second copied in memory (a buffer copied whole), for
    ``duration`` seconds (at least one copy)."""
    out: dict[str, float] = {}
    for size_text in sizes:
        size = int(parse_bytes(size_text))
        data = bytearray(os.urandom(size))
        start = time.perf_counter()
        total = 0
        while True:  # ends: after ``duration``
            copy = bytes(data)
            del copy
            total += size
            if time.perf_counter() - start >= duration:
                break
        out[size_text] = total / (time.perf_counter() - start)
    return out


async def network_bandwidth(peer: str, keys: dict[str, Any], duration: float,
                            dask_worker: Any) -> dict[str, float]:
    """Per size: bytes per second this worker fetches from ``peer`` over shoal's
    worker-to-worker protocol, fetching the value ``keys[size]`` (held there) again and
    again for ``duration`` seconds (at least once). The values are not unpickled."""
    out: dict[str, float] = {}
    for size_text, key in keys.items():
        size = int(parse_bytes(size_text))
        start = time.perf_counter()
        total = 0
        while True:  # ends: after ``duration``; each fetch has the worker's fetch deadline
            reply = await dask_worker._get_data(peer, [key])
            if key not in reply.items:
                raise RuntimeError(f"benchmark: {peer} no longer holds {key!r}")
            total += size
            if time.perf_counter() - start >= duration:
                break
        out[size_text] = total / (time.perf_counter() - start)
    return out
