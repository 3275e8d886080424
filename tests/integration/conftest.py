"""Fixtures for shoal's integration acceptance tests (real processes, real sockets).

- ``client``: one ``Client(n_workers=2, threads_per_worker=1)`` shared by the whole session, to
  keep the suite fast on a 2-core machine. Tests on it must leave it healthy: no killed workers,
  no blocked threads (use ``gate``), no config changes.
- ``make_client``: a fresh ``LocalCluster`` + ``Client`` for tests that kill workers or need
  their own configuration; closed at teardown.
- ``gate``: a file gate (see ``_helpers.Gate``) opened automatically at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _process_origin import describe

from shoal import Client, LocalCluster

from ._helpers import Gate, alive, descendants, wait_for

__all__ = ["wait_for"]


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    before = descendants()
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c
    started = descendants() - before
    try:
        wait_for(lambda: not any(alive(pid) for pid in started), timeout=20)
    except AssertionError:
        left = {pid for pid in started if alive(pid)}
        raise AssertionError(f"processes started during the session are still alive:\n{describe(left)}") from None


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Factory: ``make_client(n_workers=2, **cluster_kwargs)`` -> a Client on a fresh LocalCluster."""
    opened: list[Any] = []

    def factory(n_workers: int = 2, **kwargs: Any) -> Client:
        kwargs.setdefault("threads_per_worker", 1)
        kwargs.setdefault("dashboard_address", None)
        # Start-up's deadline: worker processes on a loaded 2-core CI machine can take over
        # the default 60 s to import and register; a test's own assertions are untouched.
        kwargs.setdefault("timeout", 180)
        cluster = LocalCluster(n_workers=n_workers, **kwargs)
        opened.append(cluster)
        c = Client(cluster)
        opened.append(c)
        return c

    yield factory
    for resource in reversed(opened):
        resource.close()


@pytest.fixture
def gate(tmp_path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.open()


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """Fails the test if a process it started is still alive afterwards."""
    before = descendants()
    yield
    started = descendants() - before
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=30)

