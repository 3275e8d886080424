"""dask's "Python API (advanced)": ``Scheduler``, ``Worker`` and ``Nanny`` started by hand
inside the user's own event loop (``asyncio.run``), awaited and used with ``async with``,
closed with ``close()`` and waited on with ``finished()``.

Each test drives its own loop; every wait has a deadline (``asyncio.wait_for``, or
``wait_for`` on a condition), and every test checks that the processes and threads it
started are gone.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import dask
import pytest

import shoal
from shoal import Client, Nanny, Scheduler, Worker, get_worker

from ._helpers import alive, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # starts processes

# Start-up deadline: a worker process on a loaded 2-core machine can take a minute.
START = 180


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 2 * START))


def where(x: int) -> tuple[str, Any, int, int]:
    w = get_worker()
    return w.address, w.name, os.getpid(), x + 1


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    """Fails the test if a thread it started (task threads, samplers...) outlives it; shoal's
    own loop thread (and its executor's) is shared by the process and stays."""
    before = set(threading.enumerate())
    yield

    def only_the_loop_is_new() -> bool:
        return all(t.name.startswith("shoal-loop") for t in set(threading.enumerate()) - before)

    try:
        wait_for(only_the_loop_is_new, timeout=30)
    except AssertionError:
        left = sorted(t.name for t in set(threading.enumerate()) - before)
        raise AssertionError(f"threads the test started are still alive: {left}") from None


def test_dasks_full_example_with_a_worker_and_a_nanny(no_leftovers, no_threads_left):
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with Scheduler(port=0, dashboard_address=":0") as s:
            assert s.status == "running" and s.address.startswith("tcp://127.0.0.1:")
            assert s.dashboard_link is not None
            async with Worker(s.address, nthreads=2) as w, Nanny(s.address) as n:
                assert w.nthreads == 2 and w.name == w.address  # dask: the address by default
                assert n.worker_address is not None and n.pid is not None and alive(n.pid)
                seen["pid"] = n.pid
                assert set(s.workers) == {w.address, n.worker_address}
                async with Client(s.address, asynchronous=True) as client:
                    assert await client.submit(lambda x: x + 1, 10) == 11
                    here = await client.submit(where, 1, workers=[w.address], pure=False)
                    there = await client.submit(where, 1, workers=[n.worker_address],
                                                pure=False)
            assert (w.status, n.status) == ("closed", "closed")
            # dask's Status members, as a program compares them (``is`` too)
            assert w.status is n.status is shoal.Status.closed
        assert s.status == "closed" and s.status is shoal.Status.closed
        # The Worker runs tasks in this process (its threads), the Nanny's in its own.
        assert here == (w.address, w.address, os.getpid(), 2)
        assert there[0] == n.worker_address and there[2] == seen["pid"] != os.getpid()

    run(main)
    assert not alive(seen["pid"])


def test_awaited_then_closed_and_finished_one_by_one(no_leftovers, no_threads_left):
    async def main() -> None:
        s = Scheduler(dashboard=False)
        assert s.status == "init" and s.address is None  # made, not started
        assert await s is s
        assert await s is s  # awaiting again: the running scheduler, started once
        w = await Worker(s.address, name="alice", nthreads=1, memory_limit="1GB",
                         resources={"GPU": 1})
        record = s.workers[w.address]
        assert (record.name, record.nthreads, record.memory_limit) == ("alice", 1, 10**9)
        assert w.local_directory is not None and os.path.isdir(w.local_directory)
        async with Client(s.address, asynchronous=True) as client:
            assert (await client.submit(where, 1, resources={"GPU": 1}))[1] == "alice"
        await w.close()
        await asyncio.wait_for(w.finished(), 30)
        assert w.status == "closed"
        await w.close()  # a second close does nothing
        await s.close()
        await asyncio.wait_for(s.finished(), 30)
        assert s.status == "closed"
        with pytest.raises(RuntimeError, match="cannot start again"):
            await s

    run(main)


def test_finished_returns_when_the_servers_close_by_themselves(no_leftovers, no_threads_left):
    async def main() -> None:
        s = await Scheduler(dashboard=False, idle_timeout="1 hour")
        assert s.idle_timeout == 3600
        w = await Worker(s.address, nthreads=1)
        n = await Nanny(s.address, nthreads=1)
        # Short only now that both have joined: workers joining are no activity (dask's
        # rule), and a nanny's worker process can take seconds to start on a loaded machine.
        s.idle_timeout = 1
        # Idle past its timeout, the scheduler closes; it tells its workers to go.
        await asyncio.wait_for(s.finished(), 60)
        await asyncio.wait_for(w.finished(), 60)
        await asyncio.wait_for(n.finished(), 60)
        assert (s.status, w.status, n.status) == ("closed", "closed", "closed")

    run(main)


def test_a_worker_with_no_scheduler_gives_up_at_dasks_connect_timeout(no_threads_left):
    async def main() -> None:
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
            w = Worker("tcp://127.0.0.1:1", nthreads=1)  # nothing listens on port 1
            with pytest.raises(TimeoutError, match=r"after 1 s: no scheduler at tcp://127"):
                await asyncio.wait_for(w, 30)
            assert w.status == "failed"
            with pytest.raises(OSError):  # dask's type: TimeoutError is an OSError
                await asyncio.wait_for(Worker("tcp://127.0.0.1:1", death_timeout=0.5), 30)

    run(main)


def test_a_nanny_with_no_scheduler_fails_as_dasks_does(no_leftovers):
    async def main() -> None:
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
            n = Nanny("tcp://127.0.0.1:1", nthreads=1)
            with pytest.raises(RuntimeError, match=r"Nanny failed to start: no scheduler "
                                                   r"answered at tcp://127\.0\.0\.1:1 within 1 s"):
                await asyncio.wait_for(n, 30)
            assert n.status == "failed" and n.pid is None  # no process was started
            with pytest.raises(TimeoutError, match=r"Nanny start timed out after 0\.5 s"):
                await asyncio.wait_for(Nanny("tcp://127.0.0.1:1", death_timeout=0.5), 30)

    run(main)


def test_cancelling_a_start_closes_what_it_started(no_leftovers, no_threads_left):
    async def main() -> None:
        w = Worker("tcp://127.0.0.1:1", nthreads=2)  # would try for 30 s
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(w, 0.5)
        await asyncio.wait_for(w.finished(), 30)  # returns once the close has finished
        assert w.status == "failed"

    run(main)


def test_workers_join_through_a_scheduler_file(tmp_path, no_leftovers, no_threads_left):
    path = str(tmp_path / "scheduler.json")

    async def main() -> None:
        async with Scheduler(dashboard=False, scheduler_file=path) as s, \
                Worker(scheduler_file=path, nthreads=1) as w, \
                Nanny(scheduler_file=path, nthreads=1, name="n0") as n:
            assert w.scheduler_address == s.address
            assert sorted(str(r.name) for r in s.workers.values()) == sorted([w.address, "n0"])
            assert n.name == "n0"

    run(main)


def test_a_nanny_restarts_its_worker_process_and_stops_it_on_close(no_leftovers):
    import signal

    async def main() -> None:
        async with Scheduler(dashboard=False) as s, Nanny(s.address, nthreads=1) as n:
            first, first_address = n.pid, n.worker_address
            assert first is not None and first_address in s.workers
            os.kill(first, signal.SIGKILL)

            async def restarted() -> None:
                # Polled: a condition, with the deadline below.
                while n.worker_address in (None, first_address) or set(s.workers) != {
                        n.worker_address}:
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(restarted(), START)
            assert n.status == "running" and n.pid != first and alive(n.pid)
            assert n.address == n.worker_address
            second = n.pid
        assert n.status == "closed" and not alive(second)

    run(main)


def test_a_nanny_closed_while_it_restarts_its_worker_stops_the_new_one(no_leftovers):
    """The close comes between a worker's death and its replacement's start, and the
    replacement starts while the close runs (a slow clean-up on a loaded machine): the
    replacement must not outlive the nanny (it would retry a closed scheduler forever)."""
    import signal

    started: list[int] = []

    async def main() -> None:
        async with Scheduler(dashboard=False) as s:
            n = await Nanny(s.address, nthreads=1)
            server = n._server
            first = n.pid
            assert first is not None
            start_process, remove_space = server._start_process, server._remove_worker_space

            async def recorded_start(standby: bool) -> Any:
                proc = await start_process(standby)
                started.append(proc.pid)
                return proc

            async def interleaved_remove(pid: int) -> None:
                deadline = asyncio.get_running_loop().time() + 30
                if not server._closing:  # the supervisor, the old worker gone: close now
                    while not server._closing and asyncio.get_running_loop().time() < deadline:
                        await asyncio.sleep(0.01)
                else:  # the close: the replacement (if any is coming) starts meanwhile
                    supervisor = server._supervisor
                    while (server.pid == pid and not supervisor.done()
                           and asyncio.get_running_loop().time() < deadline):
                        await asyncio.sleep(0.01)
                await remove_space(pid)

            server._start_process = recorded_start
            server._remove_worker_space = interleaved_remove
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: server.process.returncode is not None, timeout=30)
            await asyncio.wait_for(n.close(), START)
        wait_for(lambda: not any(alive(pid) for pid in [first, *started]), timeout=30)

    run(main)


def test_off_loopback_workers_need_the_token_the_scheduler_made_up(no_leftovers,
                                                                   no_threads_left):
    async def main() -> None:
        with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
            async with Scheduler(host="0.0.0.0", dashboard=False) as s:
                assert s.security.token  # bound off loopback: authentication is on
                with pytest.raises(TimeoutError, match="requires authentication"):
                    await asyncio.wait_for(Worker(s.address, nthreads=1), 30)
                with pytest.raises(RuntimeError, match="requires authentication"):
                    await asyncio.wait_for(Nanny(s.address, nthreads=1), 30)
                async with Worker(s.address, nthreads=1, security=s.security) as w, \
                        Nanny(s.address, nthreads=1, security=s.security) as n, \
                        Client(s.address, asynchronous=True, security=s.security) as client:
                    assert set(s.workers) == {w.address, n.worker_address}
                    assert await client.submit(sum, [1, 2]) == 3

    run(main)


def status_in_a_task() -> tuple[str, bool, str]:
    status = get_worker().status
    return status.name, status == "running", type(status).__name__


def test_worker_started_by_hand_has_the_status_a_task_reads(no_threads_left):
    # dask's get_worker().status is a Status member (.name); a shoal.Worker started by hand
    # is what get_worker() returns in its tasks, so it must answer the same way throughout.
    async def main() -> None:
        w = Worker("tcp://127.0.0.1:1", nthreads=1)
        assert w.status.name == "init" and w.status == "init"
        async with Scheduler(dashboard_address=None) as s, Worker(s.address, nthreads=1) as w, \
                Client(s.address, asynchronous=True) as c:
            name, running, kind = await c.submit(status_in_a_task, pure=False)
            assert (name, running, kind) == ("running", True, "Status")
            assert w.status.name == "running" and w.status is w._server.status
            assert "status: running" in repr(w)
        assert w.status.name == "closed" and w.status == "closed"

    run(main)
