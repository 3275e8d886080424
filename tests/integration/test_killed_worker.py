"""Issue 4: a task that kills every worker that runs it ends in KilledWorker, not a hang."""

from __future__ import annotations

import os

import dask
import pytest

from shoal import Client, KilledWorker, LocalCluster
from shoal._loop import run_sync

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


def test_a_worker_closed_by_its_nanny_counts_against_no_task(make_client, gate):
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        c = make_client(n_workers=2)
    fut = c.submit(gated, gate.path, 5, pure=False)
    tasks = c.cluster.scheduler.state.tasks
    wait_for(lambda: fut.key in tasks and tasks[fut.key].processing_on is not None, timeout=120)
    runner = tasks[fut.key].processing_on.address
    name = c.scheduler_info()["workers"][runner]["name"]
    nanny = c.cluster.workers[name]
    run_sync(nanny.close(), 60)  # its SIGTERM, announced: a close on purpose
    wait_for(lambda: fut.key in tasks and tasks[fut.key].processing_on is not None
             and tasks[fut.key].processing_on.address != runner, timeout=30)
    gate.open()
    assert fut.result(timeout=60) == 5


def signal_self(signum):
    import signal
    import time

    os.kill(os.getpid(), signum)
    time.sleep(30)  # the worker closes meanwhile
    return "survived " + signal.Signals(signum).name


def secede_then_signal_self(signum):
    from shoal import secede

    secede()  # out of the pool (a worker_client task): still running there
    return signal_self(signum)


def test_a_task_that_signals_its_own_worker_to_stop_raises_killed_worker(make_client):
    # The worker closed gracefully on a SIGTERM it did not get from its nanny, blaming no
    # task: the task moved to the next worker and stopped it too, until both nannies gave
    # up restarting (10 a minute) and result() waited for ever. In dask the signal kills the
    # worker process: KilledWorker after allowed-failures.
    import signal

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        c = make_client(n_workers=2)  # its own nannies: each restarts 10 times a minute
    for fn, signum in ((signal_self, signal.SIGTERM), (signal_self, signal.SIGINT),
                       (secede_then_signal_self, signal.SIGTERM)):
        fut = c.submit(fn, signum, pure=False)
        with pytest.raises(KilledWorker):
            fut.result(timeout=60)
        assert c.submit(inc, signum, pure=False).result(timeout=60) == signum + 1
    state = c.cluster.scheduler.state
    wait_for(lambda: len(state.workers) == 2, timeout=60)  # both restarted, as after a crash


def raise_(what):
    import sys

    if what == "exit":
        sys.exit()
    if what == "exit-3":
        sys.exit(3)
    raise KeyboardInterrupt


def test_a_task_raising_system_exit_ends_its_worker_process_as_in_dask(make_client):
    # dask lets SystemExit and KeyboardInterrupt through its worker ("system-shutting-down"):
    # the worker process ends, its nanny restarts it, and the task is KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        c = make_client(n_workers=2)
    for what in ("exit", "exit-3", "interrupt"):
        fut = c.submit(raise_, what, pure=False)
        with pytest.raises(KilledWorker):
            fut.result(timeout=60)
        assert c.submit(inc, 1, pure=False).result(timeout=60) == 2
    state = c.cluster.scheduler.state
    wait_for(lambda: len(state.workers) == 2, timeout=60)


def test_many_tasks_that_kill_their_worker_each_end_as_killed_worker(make_client):
    # The nanny gave up on a worker that died 11 times in a minute: a map of poison tasks
    # left the rest waiting for ever, with no worker. dask's nanny always restarts; the
    # scheduler's allowed-failures ends each poison task. Only deaths before registering (a
    # worker that cannot start) count against the nanny's limit now.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        c = make_client(n_workers=1)
    futures = c.map(die_with, [1] * 12, pure=False)
    for fut in futures:
        with pytest.raises(KilledWorker):
            fut.result(timeout=60)
    assert c.submit(inc, 1, pure=False).result(timeout=60) == 2
