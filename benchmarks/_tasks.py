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


def pid() -> int:
    """The worker process's id (to tell a restarted worker from the old one)."""
    import os

    return os.getpid()


def lock_round_trips(n: int, warmup: int, system: str) -> list[float]:
    """Issue 10: ``Lock.acquire()`` + ``release()`` from inside a task, through the worker's
    client, ``n`` times after ``warmup``; the seconds of each round trip. ``system``:
    "shoal" or "dask"."""
    if system == "shoal":
        from shoal import Lock
    else:
        from distributed import Lock
    lock = Lock("bench-lock")
    times = []
    for i in range(warmup + n):
        start = time.perf_counter()
        if not lock.acquire():
            raise AssertionError("acquire without a timeout returned False")
        lock.release()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def fib(n: int, system: str) -> int:
    """Issue 10's tasks that launch tasks: each call submits its two halves as new tasks
    (``pure=False``: one task per call, 1,973 for ``fib(15)``) from the worker's client,
    secedes while it waits for them, and rejoins. ``system``: "shoal" or "dask"."""
    if n < 2:
        return n
    if system == "shoal":
        from shoal import get_client, rejoin, secede
    else:
        from distributed import get_client, rejoin, secede
    client = get_client()
    a = client.submit(fib, n - 1, system, pure=False)
    b = client.submit(fib, n - 2, system, pure=False)
    secede()
    result = int(a.result()) + int(b.result())
    rejoin()
    return result


def shuffle_partition(i: int, rows: int) -> Any:
    """One partition of the shuffle benchmark's dataframe: ``rows`` rows of an int64 key
    (spread over the whole table) and an int64 value, built on the worker (seeded by ``i``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame({"k": rng.integers(0, 1 << 30, rows), "v": np.full(rows, i, "int64")})


def shuffle_partition_check(df: Any) -> Any:
    """Rows, and whether every key of the partition hashes alike (one output partition),
    summarized as (rows, sum of v) for the benchmark's correctness check."""
    import pandas as pd

    return pd.DataFrame({"rows": [len(df)], "v": [int(df["v"].sum())]})
