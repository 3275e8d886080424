"""Issue 4: a task that kills every worker that runs it ends in KilledWorker, not a hang."""

from __future__ import annotations

import os

import dask
import pytest

from shoal import Client, KilledWorker, LocalCluster

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def die():
    os._exit(1)


@pytest.fixture(scope="module")
def fragile_client():
    """A fresh cluster that gives up on a task after it killed 2 workers (allowed-failures=1)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_a_task_that_kills_its_workers_raises_killed_worker(fragile_client):
    c = fragile_client
    fut = c.submit(die, pure=False)
    with pytest.raises(KilledWorker) as info:
        fut.result(timeout=60)
    message = str(info.value)
    assert fut.key in message
    assert "tcp://" in message  # names a worker that died running it
    assert c.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_explain_names_the_task_and_the_workers_that_died(fragile_client):
    c = fragile_client
    workers_before = set(c.scheduler_info()["workers"])
    fut = c.submit(die, pure=False)
    with pytest.raises(KilledWorker):
        fut.result(timeout=60)
    text = str(c.explain(fut))
    assert fut.key in text
    assert any(address in text for address in workers_before)
