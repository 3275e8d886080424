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

from shoal import Client, LocalCluster, Lock, Queue

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


def test_closed_queues_leave_no_trace_on_the_scheduler(client) -> None:
    def workload(i: int) -> None:
        q = Queue(f"leaks-queue-{i}", client=client)
        q.put(i)
        assert q.get() == i
        q.put(client.submit(int, i))  # a future left in the queue is let go at close
        q.close()

    workload(-1)
    before = _coordination(client)
    for i in range(5):
        workload(i)
    assert _coordination(client) == before


def test_dropped_locks_leave_no_trace_on_the_scheduler(client) -> None:
    def workload(i: int) -> None:
        lock = Lock(f"leaks-lock-{i}", client=client)
        with lock:
            pass

    workload(-1)
    before = _coordination(client)
    for i in range(5):
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
