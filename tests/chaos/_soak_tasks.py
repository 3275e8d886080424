"""The task bodies of the soak test (``test_soak.py``): small, deterministic functions a
worker process imports by name. Each one's result follows from its arguments alone, so
the soak knows every expected value before it asks."""

from __future__ import annotations

import os
import time
from pathlib import Path


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int, delay: float = 0.01) -> int:
    time.sleep(delay)
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def total(*xs: int) -> int:
    return sum(xs)


def fail_on(x: int, bad: frozenset[int]) -> int:
    if x in bad:
        raise ValueError(f"soak: bad input {x}")
    return x * 2


def flaky(path: str, failures: int, value: int) -> int:
    """Raise ``OSError`` the first ``failures`` times it is run (counted in files under
    ``path``, which outlive worker processes), then return ``value``."""
    os.makedirs(path, exist_ok=True)
    tries = len(os.listdir(path))
    if tries < failures:
        Path(path, str(tries)).touch()
        raise OSError(f"soak: flaky attempt {tries}")
    return value


def big(mb: int, fill: int) -> bytes:
    """A large result, to kill its holder while it is moved."""
    return bytes([fill % 256]) * (mb << 20)


def measure(data: bytes) -> tuple[int, int]:
    return len(data), data[-1]


def fan_out(n: int) -> int:
    """A task that launches tasks with ``worker_client``."""
    from shoal import worker_client

    with worker_client() as client:
        return sum(client.gather(client.map(inc, range(n), pure=False)))


def seceded_fan_out(n: int) -> int:
    """A task that launches tasks with ``get_client`` + ``secede`` / ``rejoin``."""
    from shoal import get_client, rejoin, secede

    client = get_client()
    futures = client.map(slow_inc, range(n), pure=False)
    secede()
    out = sum(client.gather(futures))
    rejoin()
    return out
