"""dask's asynchronous ``LocalCluster``: ``async with LocalCluster(..., asynchronous=True)``,
awaitable ``scale`` / ``wait_for_workers`` / ``get_logs`` / ``close``, with an asynchronous
Client on it, and an asynchronous Client starting one of its own.

Each test drives its own event loop with ``asyncio.run``; every wait has a deadline
(``asyncio.wait_for``), and every test checks that the processes it started are gone.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from shoal import Client, LocalCluster
from shoal.cluster._adaptive import Adaptive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # starts processes

# Start-up deadline: worker processes on a loaded 2-core machine can take a minute.
START = 180
DEADLINE = 120.0


def inc(x: int) -> int:
    return x + 1



def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 2 * START))


def cluster_kwargs(**kwargs: Any) -> dict[str, Any]:
    return {"threads_per_worker": 1, "dashboard_address": None, "timeout": START,
            "asynchronous": True, **kwargs}


def test_dask_async_pattern_runs_tasks_scales_and_closes(no_leftovers):
    async def main() -> None:
        async with LocalCluster(n_workers=1, **cluster_kwargs()) as cluster:
            assert cluster.status == "running" and cluster.asynchronous
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            async with Client(cluster, asynchronous=True, set_as_default=False) as client:
                assert await client.submit(inc, 1) == 2
                await cluster.scale(2)  # returns once the cluster has two workers
                assert sorted(cluster.workers) == [0, 1]
                assert len(cluster.scheduler_info["workers"]) == 2
                assert len(await client.nthreads()) == 2
                assert await client.gather(client.map(inc, range(10))) == list(range(1, 11))
                await cluster.scale_down(["1"])
                assert sorted(cluster.workers) == [0]
                await cluster.scale_up(2)
                assert len(cluster.workers) == 2
                await cluster.scale(1)
                assert len(cluster.scheduler_info["workers"]) == 1
        assert cluster.status == "closed"

    run(main)


def test_constructing_returns_at_once_and_the_users_loop_runs_while_it_starts(no_leftovers):
    async def main() -> None:
        cluster = LocalCluster(n_workers=1, **cluster_kwargs())
        seen: list[str] = []

        async def observe() -> None:
            seen.append(cluster.status)  # runs on this loop while the cluster starts

        try:
            assert cluster.status == "starting"  # the constructor did not wait
            await asyncio.gather(observe(), asyncio.wait_for(cluster, START))
            assert seen == ["starting"]
            assert cluster.status == "running"
            assert (await cluster) is cluster  # awaiting again: the started cluster
        finally:
            await asyncio.wait_for(cluster.close(), DEADLINE)

    run(main)


def test_operations_called_while_starting_wait_for_the_start(no_leftovers):
    async def main() -> None:
        cluster = LocalCluster(n_workers=0, **cluster_kwargs())
        try:
            await asyncio.wait_for(cluster.scale(1), START)  # before `await cluster`
            assert cluster.status == "running"
            assert [w["name"] for w in cluster.scheduler_info["workers"].values()] == [0]
        finally:
            await asyncio.wait_for(cluster.close(), DEADLINE)

    run(main)


def test_scale_goes_ahead_without_being_awaited(no_leftovers):
    async def main() -> None:
        async with LocalCluster(n_workers=0, **cluster_kwargs()) as cluster:
            cluster.scale(1)  # dask's async scale() is often not awaited
            await asyncio.wait_for(cluster.wait_for_workers(1, timeout=START), DEADLINE + START)
            assert len(cluster.scheduler_info["workers"]) == 1

    run(main)


def test_wait_for_workers_and_get_logs_are_awaitable(no_leftovers):
    async def main() -> None:
        async with LocalCluster(n_workers=1, processes=False, **cluster_kwargs()) as cluster:
            assert await cluster.wait_for_workers(1, timeout=DEADLINE) is None
            with pytest.raises(TimeoutError, match="only 1 of 2 workers"):
                await cluster.wait_for_workers(2, timeout=0.2)
            with pytest.raises(ValueError, match="positive integer"):
                cluster.wait_for_workers(0)
            logging.getLogger("shoal.cluster").warning("async-cluster-log-line")
            logs = await cluster.get_logs(workers=False)
            assert set(logs) == {"Cluster", "Scheduler"}
            assert "async-cluster-log-line" in logs["Cluster"]

    run(main)


def test_with_instead_of_async_with_says_to_use_async_with(no_leftovers):
    async def main() -> None:
        cluster = LocalCluster(n_workers=0, **cluster_kwargs())
        try:
            with pytest.raises(TypeError, match="async with"), cluster:
                pass
        finally:
            await asyncio.wait_for(cluster.close(), DEADLINE)
        assert cluster.status == "closed"
        await asyncio.wait_for(cluster.close(), DEADLINE)  # a second close: nothing to do

    run(main)


def test_closed_while_starting_leaves_nothing_and_awaiting_says_so(no_leftovers):
    async def main() -> None:
        cluster = LocalCluster(n_workers=2, **cluster_kwargs())
        await asyncio.wait_for(cluster.close(), DEADLINE)
        assert cluster.status == "closed"
        with pytest.raises(RuntimeError, match="closed before it had started"):
            await asyncio.wait_for(cluster, DEADLINE)
        with pytest.raises(RuntimeError, match="closed"):
            cluster.scale(1)

    run(main)


def test_a_failed_start_raises_on_await_and_closes_the_cluster(no_leftovers):
    async def main() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            cluster = LocalCluster(n_workers=1, scheduler_port=port, **cluster_kwargs())
            with pytest.raises(OSError):
                await asyncio.wait_for(cluster, START)
        assert cluster.status == "closed"

    run(main)


def test_adapt_on_an_asynchronous_cluster_scales_to_its_minimum(no_leftovers):
    async def main() -> None:
        async with LocalCluster(n_workers=0, **cluster_kwargs()) as cluster:
            adaptive = cluster.adapt(minimum=1, maximum=2, interval="100ms")
            assert isinstance(adaptive, Adaptive)  # not an awaitable, as dask's
            await asyncio.wait_for(cluster.wait_for_workers(1), START)
            adaptive.stop()

    run(main)


def test_client_asynchronous_without_address_starts_an_asynchronous_cluster(no_leftovers):
    async def main() -> None:
        async with Client(n_workers=1, threads_per_worker=1, dashboard_address=None,
                          timeout=START, asynchronous=True, set_as_default=False) as c:
            cluster = c.cluster
            assert isinstance(cluster, LocalCluster) and cluster.asynchronous
            assert await c.submit(inc, 41) == 42
            await asyncio.wait_for(cluster.scale(2), START)
            assert len(await c.nthreads()) == 2
        assert c.status == "closed" and cluster.status == "closed"

    run(main)


def test_get_client_of_an_asynchronous_cluster_is_asynchronous(no_leftovers):
    async def main() -> None:
        async with LocalCluster(n_workers=1, processes=False, **cluster_kwargs()) as cluster:
            client = await asyncio.wait_for(cluster.get_client(), DEADLINE)
            try:
                assert client.asynchronous and client.cluster is cluster
                assert cluster.get_client() is client
                assert await client.submit(inc, 1) == 2
            finally:
                await client.close()

    run(main)


def test_shutdown_of_an_asynchronous_client_closes_its_asynchronous_cluster(no_leftovers):
    async def main() -> None:
        cluster = await asyncio.wait_for(LocalCluster(n_workers=1, **cluster_kwargs()), START)
        client = await Client(cluster, asynchronous=True, set_as_default=False)
        await asyncio.wait_for(client.shutdown(), DEADLINE)
        assert client.status == "closed" and cluster.status == "closed"

    run(main)
