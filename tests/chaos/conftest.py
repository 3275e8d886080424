"""Fixtures for the chaos suite (``pytest -m chaos``): real clusters under SIGKILL, SIGSTOP,
dropped connections and garbage on every port. Every module here is marked ``chaos`` and
``integration`` (it starts processes), so ``make unit`` leaves it out and ``make test``
runs it.

- ``chaos_cluster``: factory for a fresh ``LocalCluster`` + ``Client``; at teardown both
  are closed and no process they started may be left running.
- Every test seeds its own ``random.Random``; every wait has a deadline (``wait_for``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from integration._helpers import alive, descendants, wait_for

from shoal import Client, LocalCluster

__all__ = ["wait_for"]


@pytest.fixture
def chaos_cluster() -> Iterator[Callable[..., tuple[LocalCluster, Client]]]:
    """``chaos_cluster(n_workers=3, **kwargs)`` -> (cluster, client)."""
    before = descendants()
    opened: list[Any] = []

    def factory(n_workers: int = 3, **kwargs: Any) -> tuple[LocalCluster, Client]:
        kwargs.setdefault("threads_per_worker", 1)
        kwargs.setdefault("dashboard_address", None)
        # Start-up's deadline, as make_client's: worker processes on a loaded 2-core CI
        # machine (load 30) can take over the default 60 s to import and register.
        kwargs.setdefault("timeout", 180)
        cluster = LocalCluster(n_workers=n_workers, **kwargs)
        opened.append(cluster)
        client = Client(cluster)
        opened.append(client)
        return cluster, client

    yield factory
    for resource in reversed(opened):
        resource.close()
    started = descendants() - before
    for pid in started:  # a stopped process never exits: wake it so it can
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def no_leftover_process() -> bool:
        return not any(alive(pid) for pid in started)

    try:
        wait_for(no_leftover_process, timeout=60)
    finally:
        for pid in started:
            if alive(pid):
                psutil.Process(pid).kill()
