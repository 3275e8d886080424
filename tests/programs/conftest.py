"""Fixtures for tests/programs: whole programs of the kind people run with dask.distributed,
run on shoal, each checked against dask's local scheduler (``scheduler="sync"``) or plain
pandas/numpy.

- ``client``: one ``Client`` on a ``LocalCluster`` of 2 single-threaded workers, each with a
  ``GPU`` resource of 1, shared by this directory's tests. Tests on it leave it healthy: no
  killed workers, no restarts.
- ``make_client``: a fresh cluster for the programs that restart it or kill workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from integration._helpers import alive, descendants, wait_for

from shoal import Client, LocalCluster


@pytest.fixture(scope="session")
def programs_client() -> Iterator[Client]:
    before = descendants()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      resources={"GPU": 1}, timeout=180) as cluster, Client(cluster) as c:
        yield c
    started = descendants() - before
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=30)


@pytest.fixture
def client(programs_client: Client) -> Client:
    return programs_client


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Factory: ``make_client(**cluster_kwargs)`` -> a Client on a fresh 2-worker cluster."""
    opened: list[Any] = []

    def factory(**kwargs: Any) -> Client:
        kwargs.setdefault("n_workers", 2)
        kwargs.setdefault("threads_per_worker", 1)
        kwargs.setdefault("dashboard_address", None)
        kwargs.setdefault("timeout", 180)  # start-up on a loaded 2-core machine
        cluster = LocalCluster(**kwargs)
        opened.append(cluster)
        c = Client(cluster)
        opened.append(c)
        return c

    yield factory
    for resource in reversed(opened):
        resource.close()
