"""A long-running cluster must return to where it was after each finished workload.

People keep one cluster for days (a JupyterHub user, a service): whatever a workload leaves
behind on the scheduler, the workers or the client after it is released grows with every
round. Each test repeats a workload just enough rounds to show growth, then compares the
tables it touches with a baseline taken after one warm-up round.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from shoal import Client, Event, LocalCluster, Lock, Queue, Semaphore, Variable

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def _coordination_tables(dask_scheduler: Any) -> dict[str, int]:
    state = dask_scheduler.coordination.state
    return {
        "queues": len(state.queues.queues),
        "semaphores": len(state.semaphores.semaphores),
        "variables": len(state.variables.values) + len(state.variables.getters),
        "events": len(state.flags.raised) + len(state.flags.waiters),
        "held": sum(len(keys) for keys in state.holds.counts.values()),
        "handing": len(state.holds.handing),
    }


def _coordination(client: Any) -> dict[str, int]:
    return client.run_on_scheduler(_coordination_tables)


def _scheduler_tables(dask_scheduler: Any) -> dict[str, Any]:
    state = dask_scheduler.state
    return {
        "tasks": len(state.tasks),
        "wanted": {client: len(keys) for client, keys in state.clients.items()
                   if not client.startswith("Client-worker-")},
        "groups": len(state.group_counts),
        "scattered": len(dask_scheduler._scattered),
        "runs": len(dask_scheduler._pending_runs) + len(dask_scheduler._run_futures),
        "loop tasks": len(dask_scheduler._tasks),
        "timers": len(dask_scheduler.coordination._timers),
        **_coordination_tables(dask_scheduler),
    }


def _worker_tables(dask_worker: Any) -> dict[str, int]:
    import threading

    return {
        "data": len(dask_worker.data),
        "tasks": len(dask_worker.state.tasks),
        "threads": threading.active_count(),
        # Connections to and from the other workers are a pool (one per peer), made when
        # placement first moves data between two workers: not counted.
        "fds": len(os.listdir("/proc/self/fd")) - len(dask_worker._peers)
        - len(dask_worker._incoming),
    }


def _snapshot(client: Any) -> tuple[Any, ...]:
    import gc

    gc.collect()
    return (client.run_on_scheduler(_scheduler_tables), client.run(_worker_tables),
            len(client._states))


def _inc(x: int) -> int:
    return x + 1


def _fail(x: int) -> int:
    raise ValueError(f"task {x} fails on purpose")


def _in_task(x: int) -> int:
    from shoal import worker_client

    with worker_client() as c:
        return c.submit(_inc, x).result()


def test_mixed_workload_returns_the_cluster_to_baseline(client) -> None:
    import dask
    import dask.array as da

    def workload(i: int) -> None:
        assert client.gather(client.map(_inc, range(i * 100, i * 100 + 20))) == list(
            range(i * 100 + 1, i * 100 + 21))
        assert dask.compute(dask.delayed(sum)([dask.delayed(_inc)(j) for j in range(5)]))
        x = da.ones((40, 40), chunks=10).persist()
        assert x.sum().compute() == 1600
        del x
        failing = client.submit(_fail, i, retries=1)
        with pytest.raises(ValueError):
            failing.result()
        del failing
        scattered = client.scatter([i, i + 1], broadcast=True)
        client.publish_dataset(scattered, name=f"leaks-ds-{i}")
        client.unpublish_dataset(f"leaks-ds-{i}")
        del scattered
        assert client.submit(_in_task, i, pure=False).result() == i + 1
        v = Variable(f"leaks-var-{i}", client=client)
        v.set(client.submit(_inc, i))
        assert v.get().result() == i + 1
        v.delete()
        s = Semaphore(2, name=f"leaks-sem-{i}", client=client)
        with s:
            pass
        s.close()
        Event(f"leaks-ev-{i}", client=client).wait(timeout=0.01)

    workload(0)
    # A worker's first task that uses a client starts that client and its loop (threads,
    # an epoll, pipes), kept for the worker's life: once on every worker before the baseline.
    for address in client.scheduler_info()["workers"]:
        assert client.submit(_in_task, 0, workers=[address], pure=False).result() == 1
    before = _settled_snapshot(client)
    for i in range(1, 3):
        workload(i)
    _settles_to(client, before)


def _settled_snapshot(client: Any) -> tuple[Any, ...]:
    """A snapshot once the client's releases are out (a future freed by the garbage
    collector is released by the loop a moment later) and the scheduler has applied them:
    it wants for the client just the futures the client holds."""
    snaps: list[tuple[Any, ...]] = []

    def settled() -> bool:
        snaps.append(_snapshot(client))
        if client._dead or client._outbox:
            return False
        return snaps[-1][0]["wanted"].get(client.id, 0) == snaps[-1][2]

    wait_for(settled, timeout=10)
    return snaps[-1]


def _settles_to(client: Any, before: tuple[Any, ...]) -> None:
    """Wait (with a deadline) for the cluster to be back at ``before``; else show the diff."""
    try:
        wait_for(lambda: _snapshot(client) == before, timeout=10)
    except AssertionError:
        assert _snapshot(client) == before


def test_closed_queues_leave_no_trace_on_the_scheduler(client) -> None:
    def workload(i: int) -> None:
        q = Queue(f"leaks-queue-{i}", client=client)
        q.put(i)
        assert q.get() == i
        q.put(client.submit(int, i))  # a future left in the queue is let go at close
        q.close()

    workload(-1)
    before = _coordination(client)
    for i in range(3):
        workload(i)
    assert _coordination(client) == before


def test_dropped_locks_leave_no_trace_on_the_scheduler(client) -> None:
    def workload(i: int) -> None:
        lock = Lock(f"leaks-lock-{i}", client=client)
        with lock:
            pass

    workload(-1)
    before = _coordination(client)
    for i in range(3):
        workload(i)
    assert _coordination(client) == before


def test_task_stream_is_bounded_by_dask_config_key() -> None:
    # dask's distributed.scheduler.dashboard.tasks.task-stream-length bounds the records
    # get_task_stream reads: a user who keeps a cluster for days lowers it to bound memory.
    import dask

    from shoal.scheduler._server import Scheduler

    with dask.config.set({"distributed.scheduler.dashboard.tasks.task-stream-length": 10}):
        scheduler = Scheduler()
    assert scheduler.state.task_stream.maxlen == 10
    assert Scheduler().state.task_stream.maxlen == 100_000  # dask's default


class Counter:
    n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_in_process_clusters_with_actors_leave_no_sockets_open(no_leftovers) -> None:
    # A closing worker closes the connections made to it (actor calls, fetches): with
    # in-process workers nobody else would, and each round kept a socket pair open.
    def workload() -> None:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                          dashboard_address=None) as cluster, Client(cluster) as c:
            counter = c.submit(Counter, actor=True).result()
            assert counter.incr().result() == 1

    workload()
    before = _open_fds()
    for _ in range(3):
        workload()
    wait_for(lambda: _open_fds() <= before, timeout=10)


def _process_resources() -> dict[str, int]:
    import asyncio
    import threading

    import psutil

    from shoal import _loop

    async def loop_tasks() -> int:
        return len(asyncio.all_tasks())

    return {
        "threads": threading.active_count(),
        "fds": _open_fds(),
        "children": len([p for p in psutil.Process().children(recursive=True)
                         if p.status() != psutil.STATUS_ZOMBIE]),
        "loop tasks": _loop.run_sync(loop_tasks(), 10),
    }


def test_restarts_and_passing_clients_leave_process_resources_as_they_were(make_client) -> None:
    c = make_client(n_workers=1)

    def workload(i: int) -> None:
        assert c.submit(_inc, i).result() == i + 1
        c.restart()
        with Client(c.scheduler.address, set_as_default=False) as other:
            assert other.submit(_inc, i).result() == i + 1

    workload(0)
    before = _process_resources()
    for i in range(1, 2):
        workload(i)

    def back() -> bool:  # none grew (a connection closed since the baseline may be fewer)
        now = _process_resources()
        return all(now[name] <= before[name] for name in before)

    try:
        wait_for(back, timeout=10)
    except AssertionError:
        assert _process_resources() == before


class _Payload:
    pass


def test_failed_result_keeps_no_caller_frame_alive(client) -> None:
    # The remote traceback is rebuilt (tblib) with frames whose f_back is the caller's
    # stack; a local holding the exception in a frame on that stack made a cycle, so the
    # caller's locals (often big data) lived until a full collection, which shoal's raised
    # GC thresholds make rare in a long session.
    import gc
    import weakref

    def caller() -> weakref.ref[_Payload]:
        payload = _Payload()
        future = client.submit(_fail, 7)
        try:
            future.result()
        except ValueError:
            pass
        return weakref.ref(payload)

    gc.disable()
    try:
        ref = caller()
        assert ref() is None
    finally:
        gc.enable()


def test_scattering_a_value_already_held_keeps_no_bytes_on_the_scheduler(client) -> None:
    first = client.scatter(["leaks-same-value"])
    again = client.scatter(["leaks-same-value"])  # the same key: already in memory
    assert [f.key for f in first] == [f.key for f in again]
    assert client.gather(again) == ["leaks-same-value"]
    wait_for(lambda: client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler._scattered))
             == 0, timeout=10)
