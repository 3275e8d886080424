"""Lock and Semaphore from a task thread travel over the thread's own channel to the
scheduler (shoal/client/_channel.py), with the semantics of the worker client's connection:
the lease stays held after the task ends, messages of the thread stay in order across both
connections, a wait ends when the worker's client closes, and TLS clusters work the same.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dask
import pytest

from shoal import Client, LocalCluster, Lock, Queue, Security, Semaphore, secede
from shoal.client._worker_client import close_worker_client

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def take(name: str) -> bool:
    """A task that takes a lock and ends without releasing it."""
    return Lock(name).acquire()


def take_after_seceding(name: str) -> bool:
    """As ``take``, in a thread that leaves the pool and so ends after this task."""
    secede()
    return Lock(name).acquire()


def put_under_lock(lock_name: str, queue_name: str, n: int) -> int:
    """Each round: wait for the lock, queue a value (a put that gets no answer), release."""
    lock, queue = Lock(lock_name), Queue(queue_name)
    for i in range(n):
        lock.acquire()
        queue.put(i)
        lock.release()
    return n


def release_then_ask(name: str, n: int) -> list[bool]:
    """Release (on the channel, no answer), then ask the scheduler (on the client's
    connection) whether the lock is held."""
    lock = Lock(name)
    seen = []
    for _ in range(n):
        lock.acquire()
        lock.release()
        seen.append(lock.locked())
    return seen


# Short for a quick test, yet long enough that a loaded machine (a loop late by most of a
# second) still refreshes in time: holders refresh every lease-timeout / 5.
LEASE_TIMEOUT = 2.0


def hold_past_the_lease_timeout(name: str) -> int:
    """Take a lease over the channel, keep it for 2.5 lease-timeouts, report the value seen
    by the scheduler then (the loop refreshed it meanwhile), and release."""
    sem = Semaphore(max_leases=1, name=name)
    assert sem.acquire()
    time.sleep(2.5 * LEASE_TIMEOUT)
    value = sem.get_value()
    sem.release()
    return value


def release_from_a_thread_of_its_own(name: str) -> tuple[bool, bool]:
    """Take the lock in the task (its channel), release it from a thread the task starts
    (not a task thread: the worker client's connection), then ask whether it is held."""
    lock = Lock(name)
    assert lock.acquire()
    held = lock.locked()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join(30)
    return held, lock.locked()


def lock_round_trips(name: str, n: int) -> int:
    lock = Lock(name)
    for _ in range(n):
        assert lock.acquire()
        lock.release()
    return n


def holders(cluster: Any, name: str) -> list[str]:
    sem = cluster.scheduler.coordination.state.semaphores.semaphores.get(name)
    return [] if sem is None else [lease.holder for lease in list(sem.leases.values())]


def test_lock_taken_in_a_task_is_held_by_a_channel_not_a_client(make_client) -> None:
    c = make_client(n_workers=1)
    assert c.submit(take, "chan-held", pure=False).result(timeout=120) is True
    sched = c.cluster.scheduler
    (holder,) = holders(c.cluster, "chan-held")
    assert holder in sched.coordination._channels
    assert holder not in sched._clients  # the scheduler counts no extra client
    # held after the task ended, as by the worker's client
    assert Lock("chan-held", client=c).acquire(timeout=0.2) is False


def test_lease_taken_in_a_thread_that_ended_stays_held_and_its_channel_is_reused(
        make_client) -> None:
    c = make_client(n_workers=1)
    names = [f"chan-seceded-{i}" for i in range(4)]
    for name in names:  # one after another: each runs in a thread that then ends
        assert c.submit(take_after_seceding, name, pure=False).result(timeout=120) is True
    for name in names:
        assert Lock(name, client=c).acquire(timeout=0.05) is False
    # a new thread took over the channel of the thread that ended before it
    assert len(c.cluster.scheduler.coordination._channels) == 1


def test_value_queued_before_a_release_in_a_task_is_there_for_the_next_holder(
        make_client) -> None:
    c = make_client(n_workers=1)
    lock, queue = Lock("chan-order", client=c), Queue("chan-order-q", client=c)
    n = 50
    assert lock.acquire()
    fut = c.submit(put_under_lock, "chan-order", "chan-order-q", n, pure=False)
    sem = c.cluster.scheduler.coordination.state.semaphores
    for i in range(n):
        wait_for(lambda: len(sem.semaphores["chan-order"].waiters) == 1)  # the task's turn
        lock.release()  # the task takes it, queues i, releases
        assert lock.acquire(timeout=30)
        assert queue.get(timeout=0) == i  # no wait: it was applied before the release
    lock.release()
    assert fut.result(timeout=120) == n


def test_task_sees_its_own_release_in_a_later_request(make_client) -> None:
    c = make_client(n_workers=1)
    assert c.submit(release_then_ask, "chan-own", 100, pure=False).result(timeout=60) == (
        [False] * 100)


def test_lease_taken_over_a_channel_is_refreshed_by_the_worker_client(make_client) -> None:
    with dask.config.set({"distributed.scheduler.locks.lease-timeout": f"{LEASE_TIMEOUT}s",
                          "distributed.scheduler.locks.lease-validation-interval": "50ms"}):
        c = make_client(n_workers=1, processes=False)
        fut = c.submit(hold_past_the_lease_timeout, "chan-refresh", pure=False)
        sched = c.cluster.scheduler
        wait_for(lambda: holders(c.cluster, "chan-refresh"))
        (holder,) = holders(c.cluster, "chan-refresh")
        assert holder in sched.coordination._channels
        # Refused for longer than a lease lives unrefreshed: the worker client refreshed it.
        assert Semaphore(max_leases=1, name="chan-refresh", client=c).acquire(
            timeout=1.5 * LEASE_TIMEOUT) is False
        assert fut.result(timeout=60) == 1  # never expired


def test_lock_taken_in_a_task_can_be_released_from_a_thread_it_started(make_client) -> None:
    c = make_client(n_workers=1)
    fut = c.submit(release_from_a_thread_of_its_own, "chan-thread", pure=False)
    assert fut.result(timeout=120) == (True, False)
    assert Lock("chan-thread", client=c).acquire(timeout=5)


def test_task_waiting_on_a_lock_hears_when_the_worker_client_closes(make_client) -> None:
    c = make_client(n_workers=1, processes=False, threads_per_worker=2)
    lock = Lock("chan-closing", client=c)
    assert lock.acquire()
    fut = c.submit(lambda: Lock("chan-closing").acquire(), pure=False)
    sched = c.cluster.scheduler
    wait_for(lambda: any(w.holder in sched.coordination._channels for w in
                         sched.coordination.state.semaphores.semaphores["chan-closing"].waiters))
    (worker,) = c.cluster.workers.values()
    close_worker_client(worker)
    assert isinstance(fut.exception(timeout=30), ConnectionError)
    lock.release()


def test_lock_in_tasks_on_a_tls_cluster(monkeypatch) -> None:
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    sec = Security.temporary()
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None,
                      security=sec, protocol="tls://") as cluster, \
            Client(cluster.scheduler_address, security=sec, timeout=20) as c:
        assert c.submit(lock_round_trips, "chan-tls", 50).result(timeout=120) == 50
        assert c.submit(take, "chan-tls", pure=False).result(timeout=120) is True
        (holder,) = holders(cluster, "chan-tls")
        assert holder in cluster.scheduler.coordination._channels


def test_lock_round_trips_from_tasks_on_two_worker_processes(make_client) -> None:
    c = make_client(n_workers=2)
    futs = c.map(lock_round_trips, ["chan-shared"] * 4, [200] * 4, pure=False)
    assert c.gather(futs) == [200] * 4
    assert holders(c.cluster, "chan-shared") == []


_inside = {"now": 0, "peak": 0}
_guard = threading.Lock()


def count_inside(_: int) -> int:
    """30 times: take the lock and count, in this process, how many tasks are inside."""
    lock = Lock("chan-threads")
    for _ in range(30):
        with lock:
            with _guard:
                _inside["now"] += 1
                _inside["peak"] = max(_inside["peak"], _inside["now"])
            with _guard:
                _inside["now"] -= 1
    return 1


def test_task_threads_of_one_worker_never_share_the_lock(
        make_client) -> None:
    c = make_client(n_workers=1, processes=False, threads_per_worker=3)
    assert sum(c.gather(c.map(count_inside, range(3), pure=False))) == 3
    assert _inside["peak"] == 1
    assert 1 <= len(c.cluster.scheduler.coordination._channels) <= 3  # one per thread
