"""``Client.benchmark_hardware()``: the workers' disk, memory and network bandwidths, as
dask's: ``{"disk": {size: bytes/s}, "memory": {...}, "network": {...}}``, each the mean
over the workers that measured it (network: over pairs of workers, paired at random).

Owns: which sizes and durations are measured (dask's), and putting the workers'
measurements together. The measuring itself runs on the workers
(``shoal/worker/_benchmark.py``).
"""

from __future__ import annotations

import os
import random
import uuid
from typing import TYPE_CHECKING

from shoal.client._cluster_info import run
from shoal.client._future import Future
from shoal.protocol._serialize import dumps
from shoal.worker import _benchmark as on_worker

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

# (sizes, seconds per size): dask's.
DISK = (("1 kiB", "100 kiB", "1 MiB", "10 MiB", "100 MiB"), 1.0)
MEMORY = (("2 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB"), 0.2)
NETWORK = (("1 kiB", "10 kiB", "100 kiB", "1 MiB", "10 MiB", "50 MiB"), 1.0)


async def benchmark_hardware(self: Client) -> dict[str, dict[str, float]]:
    """Measure the workers' memory, disk and network bandwidths, as dask's
    ``Client.benchmark_hardware``.

    Returns:
        ``{"disk": {size: bytes/s}, "memory": {...}, "network": {...}}``, sizes as dask
        names them (``"1 kiB"``...), each bandwidth the mean over the workers (network:
        over pairs of workers, one fetching from the other; empty with one worker). It
        takes a while: each size is measured for a second (memory: 0.2 s), as in dask.
    """
    self._check_open()
    sizes, seconds = DISK
    disk = await run(self, on_worker.disk_bandwidth, sizes, seconds)
    sizes, seconds = MEMORY
    memory = await run(self, on_worker.memory_bandwidth, sizes, seconds)
    assert disk is not None and memory is not None  # (run waits)
    workers = sorted(disk)
    # Paired at random, as dask's (workers of one host often register side by side); not
    # seeded on purpose, so that repeated calls even the pairs out.
    random.Random().shuffle(workers)
    pairs = zip(workers[::2], workers[1::2], strict=False)  # (an odd one out sits out)
    network = [await _network(self, a, b) for a, b in pairs]
    return {"disk": _means(list(disk.values())), "memory": _means(list(memory.values())),
            "network": _means(network)}


async def _network(self: Client, fetcher: str, holder: str) -> dict[str, float]:
    """What ``fetcher`` measures fetching values of each size from ``holder``."""
    sizes, seconds = NETWORK
    from dask.utils import parse_bytes

    keys = {s: f"benchmark-network-{uuid.uuid4().hex}" for s in sizes}
    rows = []
    for size_text, key in keys.items():
        blob = os.urandom(int(parse_bytes(size_text)))
        rows.append((key, dumps(blob), len(blob), "bytes"))
    futures: list[Future] = []
    try:
        await self._scatter(rows, [holder], False, futures.extend)
        got = await run(self, on_worker.network_bandwidth, holder, keys, seconds,
                        workers=[fetcher])
        assert got is not None  # (run waits)
        return dict(got[fetcher])
    finally:
        for f in futures:
            f.release()


def _means(results: list[dict[str, float]]) -> dict[str, float]:
    """Per size (in the order first measured), the mean of the workers' bandwidths."""
    by_size: dict[str, list[float]] = {}
    for result in results:
        for size, bandwidth in result.items():
            by_size.setdefault(size, []).append(bandwidth)
    return {size: sum(values) / len(values) for size, values in by_size.items()}
