"""An asynchronous program (async with LocalCluster / Client, awaiting futures, collections
and cluster calls), and programs whose tasks coordinate through locks, semaphores, events,
queues and variables, scatter their inputs, run through the executor interface or talk to
an actor."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import time

import dask.array as da
import numpy as np
import pytest

from shoal import (
    Client,
    Event,
    LocalCluster,
    Lock,
    Queue,
    Semaphore,
    Variable,
    as_completed,
    fire_and_forget,
    get_client,
)

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def test_an_asynchronous_program():
    async def main() -> dict:
        async with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                asynchronous=True, timeout=180) as cluster, \
                Client(cluster, asynchronous=True) as c:
            futs = c.map(inc, range(50))
            got = {"sum": sum(await c.gather(futs)), "one": await c.submit(inc, 1)}
            got["first"] = sorted([r async for _, r in as_completed(futs[:5], with_results=True)])
            x = da.arange(100, chunks=10)
            got["compute"] = int(await c.compute(x.sum()))
            got["persisted"] = int(await c.compute(c.persist(x).sum()))
            got["scatter"] = await c.gather(await c.scatter([1, 2, 3]))
            with pytest.raises(ZeroDivisionError):
                await c.submit(lambda: 1 / 0)
            sleeper = c.submit(time.sleep, 5, pure=False)
            await c.cancel([sleeper])
            got["cancelled"] = sleeper.status
            got["each"] = await asyncio.gather(*[c.submit(inc, i, pure=False) for i in range(3)])
            return got

    assert asyncio.run(asyncio.wait_for(main(), 120)) == {
        "sum": sum(range(1, 51)), "one": 2, "first": [1, 2, 3, 4, 5], "compute": 4950,
        "persisted": 4950, "scatter": [1, 2, 3], "cancelled": "cancelled", "each": [1, 2, 3]}


def critical(i: int, path: str) -> int:
    with Lock("programs-lock"):
        with open(path, "a") as f:
            f.write(f"s{i}\n")
        time.sleep(0.01)
        with open(path, "a") as f:
            f.write(f"e{i}\n")
    return i


def limited(i: int) -> int:
    with Semaphore(max_leases=1, name="programs-sem"):
        return i


def wait_for_event() -> bool:
    return Event("programs-event").wait(timeout=30)


def produce(n: int) -> int:
    q = Queue("programs-queue")
    for i in range(n):
        q.put(i)
    return n


def set_variable() -> None:
    Variable("programs-var", client=get_client()).set(123)


def test_tasks_that_coordinate(client, tmp_path):
    log = tmp_path / "log"
    assert sorted(client.gather(client.map(critical, range(6), [str(log)] * 6))) == list(range(6))
    lines = log.read_text().split()
    assert all(lines[j] == "s" + lines[j + 1][1:] for j in range(0, len(lines), 2))
    assert sorted(client.gather(client.map(limited, range(4)))) == [0, 1, 2, 3]
    waiter = client.submit(wait_for_event)
    Event("programs-event").set()
    assert waiter.result(timeout=30) is True
    client.submit(produce, 5).result(timeout=30)
    queue = Queue("programs-queue")
    assert [queue.get(timeout=10) for _ in range(5)] == [0, 1, 2, 3, 4]
    fire_and_forget(client.submit(set_variable, pure=False))
    assert Variable("programs-var").get(timeout=30) == 123


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self, k: int = 1) -> int:
        self.n += k
        return self.n


def total(a: np.ndarray) -> float:
    return float(a.sum())


def test_scatter_executor_and_actor(client):
    arr = np.arange(1_000_000, dtype="f8")
    [shared] = client.scatter([arr], broadcast=True)
    assert len(client.who_has([shared])[shared.key]) == 2
    assert client.gather(client.map(total, [shared] * 4)) == [float(arr.sum())] * 4
    named = client.scatter({"a": 1, "b": 2})
    assert client.gather(named) == {"a": 1, "b": 2}
    assert client.scatter(5, hash=False).key != client.scatter(5, hash=False).key
    assert client.submit(total, np.ones(2_000_000)).result(timeout=30) == 2_000_000
    with client.get_executor() as ex:
        assert ex.submit(inc, 1).result(timeout=30) == 2
        assert list(ex.map(inc, [1, 2], timeout=30)) == [2, 3]
        done, _ = cf.wait([ex.submit(inc, 5)], timeout=30)
        assert [d.result() for d in done] == [6]
    counter = client.submit(Counter, actor=True).result(timeout=30)
    assert counter.incr(2).result(timeout=30) == 2 and counter.n == 2


def test_the_scheduler_named_distributed_in_a_program_written_for_dask(client):
    import dask

    x = da.arange(100, chunks=10).sum()
    with dask.config.set(scheduler="distributed"):
        assert x.compute() == 4950
    assert client.submit(_nested_compute).result(timeout=30) == 45


def _nested_compute() -> int:
    return int(da.arange(10, chunks=5).sum().compute(scheduler="dask.distributed"))
