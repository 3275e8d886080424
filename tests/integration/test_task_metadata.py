"""``get_task_metadata()``: the final state (and metadata) of the tasks computed inside the
block, dask's shape. On the shared ``client``."""

from __future__ import annotations

import asyncio

import dask

from shoal import Client, get_task_metadata, wait


def inc(x: int) -> int:
    return x + 1


def boom(x: int) -> int:
    raise ValueError(x)


def test_collects_the_state_of_tasks_computed_in_the_block(client):
    before = client.submit(inc, 100, key="tmd-before")
    before.result()
    with get_task_metadata() as tmd:
        assert tmd.metadata is None and tmd.state is None
        ok = client.submit(inc, 1, key="tmd-ok")
        bad = client.submit(boom, 1, key="tmd-bad")
        wait([ok, bad])
        total = dask.delayed(inc)(2, dask_key_name="tmd-delayed").compute()
    assert total == 3
    assert tmd.state == {"tmd-ok": "memory", "tmd-bad": "erred", "tmd-delayed": "memory"}
    # dask: a task without metadata has None (its TaskState.metadata default)
    assert tmd.metadata == {"tmd-ok": None, "tmd-bad": None, "tmd-delayed": None}
    with get_task_metadata() as later:  # its plugin is gone: a new block starts afresh
        pass
    assert later.state == {} and later.metadata == {}
    assert not any(name.startswith("task-metadata-")
                   for name in client.run_on_scheduler(lambda dask_scheduler: list(
                       dask_scheduler.plugins)))


def test_works_with_an_asynchronous_client(client):
    async def main() -> dict:
        async with Client(client.scheduler_info()["address"], asynchronous=True) as ac:
            async with get_task_metadata() as tmd:
                await ac.submit(inc, 5, key="tmd-async")
            return tmd.state

    assert asyncio.run(main()) == {"tmd-async": "memory"}

