"""Issue 4: a task that kills every worker that runs it ends in KilledWorker, not a hang."""

from __future__ import annotations

import os

import dask
import pytest

from shoal import Client, KilledWorker, LocalCluster

from ._helpers import gated, wait_for

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


def die_with(status):
    os._exit(status)


def test_a_task_exiting_with_the_nannys_own_statuses_is_a_crash_not_a_request(fragile_client):
    # The nanny reads some exit statuses of its worker as requests (3: leave for good, 5:
    # restart now, 6: lifetime over...). A task calling os._exit with one of them used to
    # pass for that request: with 3 the nanny stopped restarting, both workers were gone
    # after the retry, and the user waited forever.
    c = fragile_client
    for status in (3, 4, 5, 6, 7):
        fut = c.submit(die_with, status, pure=False)
        with pytest.raises(KilledWorker):
            fut.result(timeout=60)
        assert c.submit(inc, status, pure=False).result(timeout=60) == status + 1
    state = c.cluster.scheduler.state
    wait_for(lambda: len(state.workers) == 2, timeout=60)  # both restarted, as after a crash


def test_worker_processes_say_they_are_ready_once_their_imports_are_done(fragile_client):
    # Until then a worker's death blames none of its tasks (they wait for its background
    # imports); after, a task that kills a fresh worker at once is blamed (the test above,
    # on restarted workers).
    c = fragile_client
    assert c.submit(inc, 1, pure=False).result(timeout=30) == 2
    state = c.cluster.scheduler.state
    wait_for(lambda: len(state.workers) == 2 and all(ws.ready for ws in state.workers.values()),
             timeout=60)


def test_explain_names_the_task_and_the_workers_that_died(fragile_client):
    c = fragile_client
    workers_before = set(c.scheduler_info()["workers"])
    fut = c.submit(die, pure=False)
    with pytest.raises(KilledWorker):
        fut.result(timeout=60)
    text = str(c.explain(fut))
    assert fut.key in text
    assert any(address in text for address in workers_before)


def sleep_then_die(seconds):
    import time

    time.sleep(seconds)
    os._exit(1)


def test_a_poison_task_does_not_take_down_the_tasks_queued_behind_it(make_client):
    # The "fast" prefix is never measured before the innocents are sent; assumed short (no
    # measured duration, however slow the machine), they are sent ahead to the worker and
    # queue there behind the poison.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.unknown-task-duration": "1ms"}):
        c = make_client(n_workers=1)
    assert c.submit(inc, 0, key="warm-up-0").result(timeout=120) == 1  # imports this module
    poison = c.submit(sleep_then_die, 2.0, key="fast-1000", priority=10)
    innocent = [c.submit(inc, i, key=f"fast-{i}") for i in range(1, 21)]
    tasks = c.cluster.scheduler.state.tasks
    wait_for(lambda: "fast-1000" in tasks and tasks["fast-1000"].started, timeout=120)
    assert sum(ts.state == "processing" for ts in list(tasks.values())) > 1  # queued behind it
    with pytest.raises(KilledWorker):
        poison.result(timeout=60)
    assert [f.result(timeout=60) for f in innocent] == list(range(2, 22))


def test_a_worker_closed_on_purpose_counts_against_no_task(make_client, gate):
    import signal

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        c = make_client(n_workers=2)
    fut = c.submit(gated, gate.path, 5, pure=False)
    tasks = c.cluster.scheduler.state.tasks
    wait_for(lambda: fut.key in tasks and tasks[fut.key].processing_on is not None, timeout=120)
    runner = tasks[fut.key].processing_on.address
    pid = c.run(os.getpid)[runner]
    os.kill(pid, signal.SIGTERM)  # a graceful close: the nanny's way of stopping a worker
    wait_for(lambda: fut.key in tasks and tasks[fut.key].processing_on is not None
             and tasks[fut.key].processing_on.address != runner, timeout=30)
    gate.open()
    assert fut.result(timeout=60) == 5
