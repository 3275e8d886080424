"""Task functions shipped to the workers.

They live in an importable module (the parent puts the repository on ``PYTHONPATH``) so both
systems pickle them by reference, the way a user's library functions travel.
"""

from __future__ import annotations

import time
from typing import Any


def noop(x: Any) -> None:
    """Do nothing: the task cost is pure scheduling overhead."""
    return None


def inc(x: int) -> int:
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def nbytes(array: Any) -> int:
    """Return the size of an array; used to pull a dependency onto another worker."""
    return int(array.nbytes)


def rosenbrock(point: tuple[float, float], delay: float = 0.1) -> tuple[tuple[float, float], float]:
    """The seed's Rosenbrock evaluation: sleep ``delay`` seconds, then score the point."""
    time.sleep(delay)
    score = (1 - point[0]) ** 2 + 2 * (point[1] - point[0] ** 2) ** 2
    return point, score


def rss() -> int:
    """Resident memory of the calling process in bytes; run on every worker via ``client.run``."""
    import psutil

    return int(psutil.Process().memory_info().rss)


_worker_clients: dict[str, Any] = {}


def lock_round_trips(n: int, warmup: int, system: str, scheduler: str) -> list[float]:
    """Issue 10: ``Lock.acquire()`` + ``release()`` from inside a task, ``n`` times after
    ``warmup``; the seconds of each round trip. ``system``: "shoal" or "dask".

    The lock talks through the task's client: ``get_client()``, or where that does not
    reach the scheduler from a worker process yet, a client this worker process opens to
    ``scheduler`` once (what ``get_client()`` does in a worker)."""
    if system == "shoal":
        from shoal import Client, Lock, get_client

        try:
            client = get_client()
        except ValueError:
            client = _worker_clients.get(scheduler)
            if client is None:
                client = _worker_clients[scheduler] = Client(scheduler, set_as_default=False)
        lock = Lock("bench-lock", client=client)
    else:
        from distributed import Lock

        lock = Lock("bench-lock")  # the worker's client
    times = []
    for i in range(warmup + n):
        start = time.perf_counter()
        if not lock.acquire():
            raise AssertionError("acquire without a timeout returned False")
        lock.release()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times
