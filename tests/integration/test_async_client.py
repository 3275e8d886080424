"""Issue 11, "What a user must be able to do": the asynchronous Client.

Each test drives its own event loop with ``asyncio.run`` (or a uvloop loop) and, unless it is
about starting a cluster, connects an asynchronous client to the shared session cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import dask
import pytest
import uvloop

from shoal import Client, Future, LocalCluster, as_completed, default_client, wait

from ._helpers import gated, wait_for

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def fail(message: str) -> None:
    raise ValueError(message)


def big(n: int) -> bytes:
    return b"x" * n  # too big to ride along with its key-done message: fetched


def run_on(loop_kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop_kind == "uvloop":
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()
    return asyncio.run(main())


async def connect(client: Client) -> Client:
    c = await Client(client.scheduler_address, asynchronous=True, set_as_default=False)
    assert c.asynchronous and c.status == "running"
    return c


@pytest.mark.timeout(300)  # 30-80 s at load 25 on 2 cores (starts processes)
def test_async_with_starts_a_local_cluster_and_every_call_is_awaitable():
    async def main() -> None:
        async with Client(n_workers=2, threads_per_worker=1, dashboard_address=None,
                          asynchronous=True) as c:
            x = await c.submit(inc, 1)
            xs = await c.gather(c.map(inc, range(10)))
            y = await c.compute(dask.delayed(inc)(41))
            assert (x, xs, y) == (2, list(range(1, 11)), 42)
            assert len(await c.nthreads()) == 2
        assert c.status == "closed"
        assert c.cluster.status == "closed"

    asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_await_client_connects_from_a_plain_asyncio_or_a_uvloop_loop(client, loop_kind):
    async def main() -> Any:
        c = await connect(client)
        try:
            return await c.submit(inc, 10, pure=False), await c.gather([c.submit(big, 200_000)])
        finally:
            await c.close()
        assert c.status == "closed"

    x, [blob] = run_on(loop_kind, main)
    assert x == 11 and blob == b"x" * 200_000


def test_awaiting_gather_of_a_running_task_does_not_block_the_awaiting_loop(client, gate):
    async def main() -> tuple[int, str]:
        c = await connect(client)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        fut = c.submit(gated, gate.path, "opened", pure=False)
        gathering = asyncio.ensure_future(c.gather(fut))
        while ticks < 20:  # the ticker runs while gather waits on the gated task
            await asyncio.sleep(0.001)
        assert not gathering.done()
        gate.open()
        value = await gathering
        t.cancel()
        await c.close()
        return ticks, value

    ticks, value = asyncio.run(main())
    assert value == "opened" and ticks >= 20


def test_future_result_exception_and_traceback_are_awaitable(client):
    async def main() -> None:
        c = await connect(client)
        ok, bad = c.submit(inc, 1), c.submit(fail, "boom", pure=False)
        assert await ok == 2
        assert await ok.result() == 2
        assert await ok.exception() is None
        exc = await bad.exception()
        assert isinstance(exc, ValueError) and "boom" in str(exc)
        assert "fail" in "".join(traceback.format_tb(await bad.traceback()))
        await c.close()

    asyncio.run(main())


def test_remote_errors_raise_through_await_with_the_remote_traceback(client):
    async def main() -> None:
        c = await connect(client)
        with pytest.raises(ValueError, match="remote trouble") as info:
            await c.submit(fail, "remote trouble", pure=False)
        assert "raise ValueError(message)" in "".join(traceback.format_tb(info.tb))
        with pytest.raises(ValueError, match="in gather"):
            await c.gather([c.submit(inc, 1), c.submit(fail, "in gather", pure=False)])
        assert await c.gather([c.submit(fail, "skipped", pure=False)], errors="skip") == []
        await c.close()

    asyncio.run(main())


def test_scatter_run_persist_and_cluster_questions_are_awaitable(client):
    async def main() -> None:
        c = await connect(client)
        data = await c.scatter([1, 2, 3])
        assert all(isinstance(f, Future) for f in data)
        assert await c.gather(data) == [1, 2, 3]
        one = await c.scatter(5, broadcast=True)
        assert await one == 5
        who = await c.who_has(data)
        assert set(who) == {f.key for f in data} and all(who.values())
        assert any(data[0].key in keys for keys in (await c.has_what()).values())
        assert set(await c.run(inc, 1)) == set(await c.nthreads())
        info = await c.scheduler_info(asynchronous=True)
        assert len(info["workers"]) == 2
        await c.wait_for_workers(2)
        assert await c.story(data[0])
        persisted = c.persist(dask.delayed(inc)(data[0]))
        await wait(persisted)
        assert await c.compute(persisted) == 2
        await c.publish_dataset(nums=data)
        assert "nums" in await c.list_datasets()
        assert await c.gather(await c.get_dataset("nums")) == [1, 2, 3]
        await c.unpublish_dataset("nums")
        await c.log_event("h9-topic", {"n": 1})
        await wait_async(lambda: c.get_events("h9-topic"))
        await c.close()

    asyncio.run(main())


async def wait_async(ask: Callable[[], Any], timeout: float = 10) -> None:
    """Until the awaitable ``ask()`` gives something truthy (or fail after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await ask():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_cancel_and_retry_are_awaitable(client, gate):
    async def main() -> None:
        c = await connect(client)
        held = c.submit(gated, gate.path, 1, pure=False)
        await c.cancel([held])
        assert held.cancelled()  # as soon as the cancel's await returns, as in dask
        with pytest.raises(concurrent.futures.CancelledError):
            await held
        bad = c.submit(fail, "again", pure=False)
        await wait(bad)
        await c.retry([bad])
        with pytest.raises(ValueError, match="again"):
            await bad
        await c.close()

    asyncio.run(main())


def test_future_cancel_and_retry_are_awaitable_with_an_async_client(client, gate):
    # dask's Future.cancel/retry return the client's cancel/retry: awaitables here
    async def main() -> None:
        c = await connect(client)
        held = c.submit(gated, gate.path, 2, pure=False)
        await held.cancel()
        assert held.cancelled()
        bad = c.submit(fail, "once more", pure=False)
        await wait(bad)
        await bad.retry()
        with pytest.raises(ValueError, match="once more"):
            await bad
        await c.close()

    asyncio.run(main())


def test_async_for_over_as_completed_yields_every_future_as_it_finishes(client):
    async def main() -> None:
        c = await connect(client)
        futs = c.map(inc, range(20), pure=False)
        seen = [f async for f in as_completed(futs)]
        assert sorted(f.key for f in seen) == sorted(f.key for f in futs)
        results = [(f, r) async for f, r in as_completed(c.map(inc, range(5)), with_results=True)]
        assert sorted(r for _, r in results) == [1, 2, 3, 4, 5]
        mixed = [c.submit(inc, 1), c.submit(fail, "in as_completed", pure=False)]
        pairs = [p async for p in as_completed(mixed, with_results=True, raise_errors=False)]
        errors = [r for _, r in pairs if isinstance(r, tuple)]
        assert len(errors) == 1 and errors[0][0] is ValueError
        with pytest.raises(ValueError, match="raised"):
            async for _ in as_completed([c.submit(fail, "raised", pure=False)], with_results=True):
                pass
        await c.close()

    asyncio.run(main())


def test_async_for_as_completed_times_out(client, gate):
    async def main() -> None:
        c = await connect(client)
        held = c.submit(gated, gate.path, 1, pure=False)
        with pytest.raises(TimeoutError, match="not done"):
            async for _ in as_completed([held], timeout=0.05):
                pass
        gate.open()
        await c.close()

    asyncio.run(main())


def test_wait_is_awaitable_with_an_asynchronous_client(client, gate):
    async def main() -> None:
        c = await connect(client)
        quick = c.submit(inc, 1, pure=False)
        held = c.submit(gated, gate.path, 2, pure=False)
        done, not_done = await wait([quick, held], return_when="FIRST_COMPLETED")
        assert quick in done and held in not_done
        with pytest.raises(TimeoutError):
            await wait([held], timeout=0.05)
        gate.open()
        done, not_done = await wait([quick, held])
        assert done == {quick, held} and not not_done
        assert await wait([]) == (set(), set())  # nothing to wait for: still awaitable
        await c.close()

    asyncio.run(main())


def test_cancelling_an_awaiting_coroutine_leaves_the_client_usable(client, gate):
    async def main() -> None:
        c = await connect(client)
        held = c.submit(gated, gate.path, 1, pure=False)
        waiting = asyncio.ensure_future(c.gather([held]))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await c.submit(inc, 2, pure=False) == 3
        gate.open()
        assert await held == 1
        await c.close()

    asyncio.run(main())


def test_closing_an_async_client_ends_what_it_waits_for(client, gate):
    async def main() -> None:
        c = await connect(client)
        held = c.submit(gated, gate.path, 1, pure=False)
        await c.close()
        assert c.status == "closed"
        with pytest.raises(Exception, match="client was closed before this future finished"):
            await held
        with pytest.raises(RuntimeError, match="closed"):
            c.submit(inc, 1)
        await c.close()  # closing twice is fine

    asyncio.run(main())


def test_sync_runs_a_coroutine_function_blocking_or_awaitable(client):
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert client.sync(double, 4) == 8

    async def main() -> tuple[int, int, int]:
        c = await connect(client)
        a = await c.sync(double, 5)
        b = await client.sync(double, 6, asynchronous=True)  # per-call override
        d = await client.gather(client.submit(inc, 6), asynchronous=True)
        await c.close()
        return a, b, d

    assert asyncio.run(main()) == (10, 12, 7)
    with pytest.raises(TimeoutError):
        client.sync(asyncio.sleep, 5, callback_timeout=0.05)


def test_current_default_client_and_loop(client):
    assert Client.current() is default_client() is client
    assert default_client(client) is client
    assert client.loop.is_running() and not client.asynchronous

    async def main() -> None:
        c = await Client(client.scheduler_address, asynchronous=True)
        assert Client.current() is c and default_client() is c
        assert c.loop is client.loop  # shoal's one loop, not the caller's
        assert c.loop is not asyncio.get_running_loop()
        assert dask.config.get("scheduler") == "dask.distributed"
        await c.close()

    asyncio.run(main())
    assert Client.current() is client


def test_an_async_client_says_how_to_use_it():
    with pytest.raises(RuntimeError, match="outside a running event loop"):
        Client("tcp://127.0.0.1:1", asynchronous=True)


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


def test_actors_of_an_async_client_are_awaited(client):
    async def main() -> tuple[int, int]:
        c = await connect(client)
        counter = await c.submit(Counter, actor=True)
        called = await counter.increment()
        read = await counter.n  # an attribute read is awaitable too, as in dask
        await c.close()
        return called, read

    assert asyncio.run(main()) == (1, 1)


def test_an_async_client_used_before_it_is_connected_says_so():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"

    async def main() -> None:
        c = Client(address, asynchronous=True, set_as_default=False, timeout=0.3)
        with pytest.raises(RuntimeError, match="still connecting"):
            c.submit(inc, 1)
        with pytest.raises(OSError, match="timed out"):
            await c
        assert c.status == "closed"

    try:
        asyncio.run(main())
    finally:
        silent.close()


def test_shutdown_of_an_async_client_closes_the_cluster_it_is_connected_to():
    async def main() -> Any:
        cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
        c = await Client(cluster, asynchronous=True, set_as_default=False)
        assert await c.submit(inc, 1) == 2
        await c.shutdown()
        return c, cluster

    c, cluster = asyncio.run(main())
    assert c.status == "closed" and cluster.status == "closed"


def test_a_done_callback_may_read_a_failed_result_without_blocking():
    seen: list[BaseException] = []
    with Client(n_workers=1, processes=False, dashboard_address=None, set_as_default=False) as c:
        fut = c.submit(fail, "in a callback", pure=False)

        def read(f: Future) -> None:
            try:
                f.result()
            except ValueError as exc:
                seen.append(exc)

        fut.add_done_callback(read)
        wait_for(lambda: seen)
    assert "in a callback" in str(seen[0])


def test_datasets_mapping_of_an_async_client(client):
    async def main() -> None:
        c = await connect(client)
        x = await c.scatter(7)
        await c.publish_dataset(x, name="h9-mapped")
        assert await (await c.datasets["h9-mapped"]) == 7
        assert [n async for n in c.datasets if n == "h9-mapped"] == ["h9-mapped"]
        with pytest.raises(TypeError, match="publish_dataset"):
            c.datasets["other"] = x
        with pytest.raises(TypeError, match="list_datasets"):
            len(c.datasets)
        await c.unpublish_dataset("h9-mapped")
        await c.close()

    asyncio.run(main())


def test_explain_is_awaitable_and_recreate_error_locally_still_raises_here(client):
    async def main() -> None:
        c = await connect(client)
        bad = c.submit(fail, "explained", pure=False)
        story = await c.explain(bad)
        assert story.key == bad.key and "explained" in story.message
        with pytest.raises(ValueError, match="explained"):
            c.recreate_error_locally(bad)  # blocking, as in dask: it runs the task here
        await c.close()

    asyncio.run(main())


def test_an_abandoned_async_for_over_as_completed_leaves_no_error_behind(client, gate, caplog):
    held = client.submit(gated, gate.path, 1, pure=False)
    ac = as_completed([held])

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ac.__anext__(), 0.05)

    asyncio.run(main())  # its loop is closed now, its waiter cancelled
    gate.open()
    wait_for(ac.has_ready)
    assert "done-callback" not in caplog.text


def test_an_async_client_made_on_shoals_own_loop_can_be_awaited_twice(client):
    async def on_shoal_loop() -> int:
        c = Client(client.scheduler_address, asynchronous=True, set_as_default=False)
        async with c:
            assert await c is c
            return await c.submit(inc, 4, pure=False)

    assert client.sync(on_shoal_loop) == 5


def test_an_asynchronous_clients_awaitables_are_coroutines_for_create_task(client):
    # dask's asynchronous methods return coroutines, which programs hand to
    # asyncio.create_task; shoal's returned asyncio futures (and a ``Ready`` for queued
    # operations), which create_task refuses ("a coroutine was expected").
    async def main() -> list[Any]:
        c = await connect(client)
        try:
            f = c.submit(inc, 1)
            made = [c.gather([f]), f.result(), c.scatter(5), c.cancel([c.submit(inc, 9)]),
                    c.run(lambda: 7), c.nthreads(), wait([f])]
            assert all(asyncio.iscoroutine(aw) for aw in made), made
            got = [await asyncio.create_task(aw) for aw in made]
            got[2] = await got[2]  # (the scattered future)
            got[4] = set(got[4].values())
            return got[:5]
        finally:
            await c.close()

    assert asyncio.run(main()) == [[2], 2, 5, None, {7}]


def test_many_coroutines_blocked_on_a_queue_leave_room_for_the_put_that_frees_them(client):
    # An asynchronous client's Queue.get (and every coordination call) ran in a thread of
    # the caller loop's default executor, which has at most 32 (6 on two cores): with that
    # many getters waiting, the put that would free them never got a thread (a hang).
    from shoal import Queue

    n = 40

    async def main() -> list[int]:
        c = await connect(client)
        try:
            q = Queue("many-getters", client=c)
            getters = [asyncio.create_task(q.get(timeout=60)) for _ in range(n)]
            await asyncio.sleep(0)  # (they start)
            for i in range(n):
                await asyncio.wait_for(q.put(i), 20)
            return sorted(await asyncio.wait_for(asyncio.gather(*getters), 30))
        finally:
            await c.close()

    assert asyncio.run(main()) == list(range(n))


def test_get_of_an_async_client_is_awaitable(client):
    graph = {"get-a": (inc, 1), "get-b": (inc, "get-a"), "get-e": (fail, "get failed")}

    async def main() -> None:
        c = await connect(client)
        try:
            answer = c.get(graph, ["get-b", ["get-a"]])
            assert asyncio.iscoroutine(answer)  # as dask's: create_task takes it
            assert await answer == [3, [2]]
            with pytest.raises(ValueError, match="get failed"):
                await c.get(graph, "get-e")
            assert c.get(graph, "get-a", asynchronous=False) == 2  # per call, as dask's
        finally:
            await c.close()

    asyncio.run(main())
    # A synchronous client's get, and dask's collections through it, still block.
    assert client.get(graph, "get-b") == 3
    assert dask.delayed(inc)(1).compute(scheduler=client) == 2
    assert dask.compute(dask.delayed(inc)(2), scheduler=client) == (3,)
