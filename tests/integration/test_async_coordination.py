"""Lock, Semaphore, MultiLock, Queue, Variable and Event awaited from an asynchronous
client: each awaiting call is a coroutine on the caller's loop waiting for the scheduler's
answer (no thread per waiting call, as in dask), with dask's timeouts, and a cancelled
call leaves nothing behind: no lock taken, no queue item eaten, no waiter on the scheduler.

One in-process cluster for the module (no worker: the primitives live on the scheduler);
each test connects asynchronous clients to it, in process (the client's in-process
connection, whose requests may be applied directly) and over TCP.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shoal import Client, Event, Lock, MultiLock, Queue, Semaphore, Variable

pytestmark = pytest.mark.integration

WAITERS = 1000
SLACK_THREADS = 8  # threads a client may start for its own work, whatever the waiters


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Client]:
    with Client(processes=False, n_workers=0, dashboard_address=None) as c:
        yield c


@pytest.fixture(params=["inproc", "tcp"])
def connect(request: Any, cluster_client: Client) -> Callable[[], Any]:
    """An asynchronous client of the module's cluster, in process or over TCP."""
    target = cluster_client.cluster if request.param == "inproc" else cluster_client.scheduler_address

    async def open_client() -> Client:
        return await Client(target, asynchronous=True, set_as_default=False)

    return open_client


class _Names(dict):  # type: ignore[type-arg]
    """Names of primitives for one test run: fresh, since the cluster outlives the test."""

    def __missing__(self, base: str) -> str:
        self[base] = f"{base}-{uuid.uuid4().hex[:8]}"
        return self[base]


N = _Names()


@pytest.fixture(autouse=True)
def _fresh_names() -> None:
    N.clear()


def coordination(cluster_client: Client) -> Any:
    return cluster_client.cluster.scheduler.coordination.state


async def until(predicate: Callable[[], object], timeout: float = 30) -> None:
    """Wait on the caller's loop until ``predicate()`` holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.005)


def run(main: Any) -> Any:
    return asyncio.run(asyncio.wait_for(main, 120))


# --- many waiters, few threads -----------------------------------------------------------


def test_a_thousand_awaiting_getters_of_one_queue_take_no_thread_each(connect):
    async def main() -> list[int]:
        c = await connect()
        try:
            q = await Queue(N["thousand-getters"], client=c)
            await q.qsize()
            before = threading.active_count()
            getters = [asyncio.ensure_future(q.get(timeout=60)) for _ in range(WAITERS)]
            await until(lambda: len(c._coord_pending) >= WAITERS)
            assert threading.active_count() <= before + SLACK_THREADS
            for i in range(WAITERS):
                await q.put(i)
            got = await asyncio.wait_for(asyncio.gather(*getters), 60)
            assert threading.active_count() <= before + SLACK_THREADS
            return sorted(got)
        finally:
            await c.close()

    assert run(main()) == list(range(WAITERS))


def test_a_thousand_awaiting_event_waits_end_when_it_is_set(connect):
    async def main() -> list[bool]:
        c = await connect()
        try:
            ev = Event(N["thousand-waits"], client=c)
            assert not await ev.is_set()
            before = threading.active_count()
            waits = [asyncio.ensure_future(ev.wait(timeout=60)) for _ in range(WAITERS)]
            await until(lambda: len(c._coord_pending) >= WAITERS)
            assert threading.active_count() <= before + SLACK_THREADS
            await ev.set()
            return await asyncio.wait_for(asyncio.gather(*waits), 60)
        finally:
            await c.close()

    assert run(main()) == [True] * WAITERS


def test_a_thousand_awaiting_acquires_of_one_lock_take_it_in_turn(connect):
    async def main() -> tuple[int, int]:
        c = await connect()
        try:
            lock = Lock(N["thousand-acquires"], client=c)
            assert await lock.acquire()
            before = threading.active_count()
            inside = {"now": 0, "peak": 0, "done": 0}

            async def one() -> None:
                async with Lock(N["thousand-acquires"], client=c):
                    inside["now"] += 1
                    inside["peak"] = max(inside["peak"], inside["now"])
                    await asyncio.sleep(0)
                    inside["now"] -= 1
                    inside["done"] += 1

            tasks = [asyncio.ensure_future(one()) for _ in range(WAITERS)]
            await until(lambda: len(c._coord_pending) >= WAITERS)
            assert threading.active_count() <= before + SLACK_THREADS
            await lock.release()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            assert threading.active_count() <= before + SLACK_THREADS
            return inside["peak"], inside["done"]
        finally:
            await c.close()

    assert run(main()) == (1, WAITERS)


# --- timeouts, as dask's ------------------------------------------------------------------


def test_timeouts_of_awaited_calls_are_dasks(connect):
    async def main() -> None:
        c = await connect()
        try:
            q = await Queue(N["timeouts"], client=c)
            for timeout in (0.1, "100ms", datetime.timedelta(milliseconds=100)):
                with pytest.raises(TimeoutError):  # dask: asyncio's (the builtin) TimeoutError
                    await q.get(timeout=timeout)
            held = Lock(N["timeouts"], client=c)
            assert await held.acquire()
            other = Lock(N["timeouts"], client=c)
            assert await other.acquire(timeout=0.1) is False
            assert await other.acquire(timeout="100ms") is False
            assert await other.acquire(blocking=False) is False
            assert await Semaphore(1, N["timeouts-sem"], client=c).acquire(timeout=0) is True
            assert await Semaphore(1, N["timeouts-sem"], client=c).acquire(timeout=0.1) is False
            assert await Event(N["timeouts"], client=c).wait(timeout=0.1) is False
            with pytest.raises(TimeoutError):
                await Variable(N["timeouts"], client=c).get(timeout="100ms")
            await held.release()
            assert await other.acquire(timeout=5) is True
            await other.release()
        finally:
            await c.close()

    run(main())


# --- cancellation leaves nothing behind ---------------------------------------------------


def test_a_cancelled_get_does_not_eat_the_item_another_getter_waits_for(connect, cluster_client):
    state = coordination(cluster_client)

    async def main() -> list[Any]:
        c = await connect()
        try:
            q = await Queue(N["cancelled-get"], client=c)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(q.get(), 0.2)  # cancelled by wait_for
            await until(lambda: not state.queues.queues[N["cancelled-get"]].getters)
            await q.put("first")
            got = [await q.get(timeout=5)]
            # A cancel that races the item on its way: put, then cancel the getter at once.
            for i in range(20):
                task = asyncio.ensure_future(q.get())
                await until(lambda: state.queues.queues[N["cancelled-get"]].getters)
                await q.put(i)
                task.cancel()
                try:
                    got.append(await task)  # it may have had it before the cancel came
                except asyncio.CancelledError:
                    got.append(await q.get(timeout=5))  # ... or the next getter has it
            await until(lambda: not state.queues.queues[N["cancelled-get"]].getters)
            assert await q.qsize() == 0
            return got
        finally:
            await c.close()

    assert run(main()) == ["first", *range(20)]


def test_items_a_cancelled_get_got_go_back_though_its_queue_object_was_closed(
        connect, cluster_client):
    """The getter's Queue object is closed right after the cancel, while the item it got is
    on its way: the item goes back all the same (another object keeps the queue open)."""
    state = coordination(cluster_client)

    async def main() -> list[Any]:
        c = await connect()
        try:
            keeper = await Queue(N["closed-get"], client=c)  # keeps the queue open
            got = []
            for i in range(20):
                q = await Queue(N["closed-get"], client=c)
                task = asyncio.ensure_future(q.get())
                await until(lambda: state.queues.queues[N["closed-get"]].getters)
                await keeper.put(i)
                task.cancel()
                q.close()
                try:
                    got.append(await task)  # it may have had it before the cancel came
                except asyncio.CancelledError:
                    got.append(await keeper.get(timeout=5))  # ... or it went back
            assert await keeper.qsize() == 0
            return got
        finally:
            await c.close()

    assert run(main()) == list(range(20))


def test_a_cancelled_acquire_never_takes_the_lock(connect, cluster_client):
    state = coordination(cluster_client)

    async def main() -> None:
        c = await connect()
        try:
            holder = Lock(N["cancelled-acquire"], client=c)
            assert await holder.acquire()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(Lock(N["cancelled-acquire"], client=c).acquire(), 0.2)
            await until(lambda: not state.semaphores.semaphores[N["cancelled-acquire"]].waiters)
            await holder.release()
            third = Lock(N["cancelled-acquire"], client=c)
            assert await third.acquire(timeout=5)
            # A cancel that races the grant: release, then cancel the waiter at once.
            for _ in range(20):
                waiter = Lock(N["cancelled-acquire"], client=c)
                task = asyncio.ensure_future(waiter.acquire())
                await until(lambda: state.semaphores.semaphores[N["cancelled-acquire"]].waiters)
                await third.release()
                task.cancel()
                try:
                    assert await task  # granted before the cancel: it holds it
                    await waiter.release()
                except asyncio.CancelledError:
                    assert not waiter._leases
                assert await third.acquire(timeout=5)
            await third.release()
            await until(lambda: N["cancelled-acquire"] not in state.semaphores.semaphores)
        finally:
            await c.close()

    run(main())


def test_a_multilock_acquire_cancelled_as_it_is_granted_leaves_the_object_clean(
        connect, cluster_client):
    """The cancel races the grant; whichever wins, the same MultiLock can take the locks
    again at once (not "already acquired", nor the locks still held for it)."""
    state = coordination(cluster_client)

    async def main() -> None:
        c = await connect()
        try:
            names = [N["ml-cancel-a"], N["ml-cancel-b"]]
            holder = MultiLock(names, client=c)
            assert await holder.acquire()
            waiter = MultiLock(names, client=c)
            for _ in range(20):
                task = asyncio.ensure_future(waiter.acquire())
                await until(lambda: waiter.id in state.multilocks.requests)
                await holder.release()
                task.cancel()
                try:
                    assert await task  # granted before the cancel: it holds them
                    assert waiter.locked()
                    await waiter.release()
                except asyncio.CancelledError:
                    assert not waiter.locked()
                assert await waiter.acquire(blocking=False) is True
                await waiter.release()
                assert await holder.acquire(timeout=5)
            await holder.release()
            await until(lambda: not state.multilocks.requests)
        finally:
            await c.close()

    run(main())


def test_cancelled_waits_of_every_primitive_leave_no_waiter_on_the_scheduler(
        connect, cluster_client):
    state = coordination(cluster_client)

    def waiting() -> list[Any]:
        return [w for waits in (state.flags.waiters, state.variables.getters) for w in waits] + [
            s for s in state.semaphores.semaphores.values() if s.waiters] + [
            r for r in state.multilocks.requests.values() if r.needed] + [
            q for q in state.queues.queues.values() if q.getters or q.putters]

    async def main() -> None:
        c = await connect()
        try:
            sem = Semaphore(2, N["cancel-sem"], client=c)
            assert await sem.acquire() and await sem.acquire()
            multi = MultiLock([N["cancel-a"], N["cancel-b"]], client=c)
            assert await multi.acquire()
            full = await Queue(N["cancel-full"], client=c, maxsize=1)
            await full.put(0)
            tasks = [asyncio.ensure_future(aw) for aw in (
                Event(N["cancel-ev"], client=c).wait(),
                Variable(N["cancel-var"], client=c).get(),
                Semaphore(2, N["cancel-sem"], client=c).acquire(),
                MultiLock([N["cancel-b"], N["cancel-a"]], client=c).acquire(),
                (await Queue(N["cancel-q"], client=c)).get(),
                full.put(1),
            )]
            await until(lambda: len(waiting()) == len(tasks))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await until(lambda: not waiting())
            await sem.release()
            assert await Semaphore(2, N["cancel-sem"], client=c).acquire(timeout=5)
            await multi.release()
            assert await MultiLock([N["cancel-a"]], client=c).acquire(timeout=5)
            assert await full.get(timeout=5) == 0 and await full.qsize() == 0
        finally:
            await c.close()

    run(main())
