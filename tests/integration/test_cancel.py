"""Cancelling futures, with dask.distributed's semantics: the caller's interest only (unless
``force=True``), and a resubmission after a cancel computes afresh."""

from __future__ import annotations

import concurrent.futures
import os

import dask
import pytest

from shoal import Client

from ._helpers import gated, scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def test_cancel_then_resubmit_of_a_pure_task_computes_afresh(client, gate):
    fut = client.submit(gated, gate.path, 41)
    fut.cancel()
    again = client.submit(gated, gate.path, 41)
    assert again.key == fut.key
    gate.open()
    assert again.result(timeout=20) == 41
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=10)


def test_cancelled_futures_read_cancelled_as_soon_as_cancel_returns(client, gate):
    # dask.distributed's sync cancel returns once the futures are cancelled: code that
    # asks right away (a cleanup loop, as_completed bookkeeping) must not see "pending".
    futs = client.map(gated, [gate.path] * 20, range(20), pure=False)
    client.cancel(futs)
    assert [f.status for f in futs] == ["cancelled"] * 20
    assert all(f.cancelled() and f.done() for f in futs)
    lone = client.submit(gated, gate.path, 99, pure=False)
    lone.cancel()
    assert lone.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        lone.result(timeout=10)


def _wanted_by_both(client, key):
    def check():
        ts = scheduler_tasks(client).get(key)
        return ts is not None and len(ts.who_wants) == 2

    wait_for(check, timeout=10)


def test_cancel_leaves_another_clients_future_running_unless_forced(client, gate):
    other = Client(client.cluster)
    try:
        mine = client.submit(gated, gate.path, 7, key="shared-cancel-1")
        theirs = other.submit(gated, gate.path, 7, key="shared-cancel-1")
        _wanted_by_both(client, "shared-cancel-1")
        mine.cancel()
        wait_for(mine.cancelled, timeout=60)
        assert not theirs.done()
        gate.open()
        assert theirs.result(timeout=20) == 7

        mine = client.submit(gated, gate.path, 8, key="shared-cancel-2")
        theirs = other.submit(gated, gate.path, 8, key="shared-cancel-2")
        _wanted_by_both(client, "shared-cancel-2")
        mine.cancel(force=True)
        wait_for(theirs.cancelled, timeout=60)
        with pytest.raises(concurrent.futures.CancelledError):
            theirs.result(timeout=60)
        wait_for(lambda: "shared-cancel-2" not in scheduler_tasks(client), timeout=60)
    finally:
        other.close()


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def test_cancelled_tasks_queued_on_a_worker_are_not_run(make_client, gate, tmp_path):
    # The "note" prefix is never measured before the queued tasks are sent: assumed short,
    # they are sent to the worker to queue behind the blocker, however slow the machine.
    with dask.config.set({"distributed.scheduler.unknown-task-duration": "1ms"}):
        c = make_client(n_workers=1)
    log = str(tmp_path / "ran.txt")
    assert c.submit(append_line, log, "warm", key="warm-0").result(timeout=120) == "warm"
    blocker = c.submit(gated, gate.path, 0, key="note-block", priority=10)
    queued = [c.submit(append_line, log, f"q{i}", key=f"note-{i}") for i in range(1, 21)]
    tasks = c.cluster.scheduler.state.tasks
    wait_for(lambda: all(k in tasks and tasks[k].state == "processing"
                         for k in ["note-block"] + [f.key for f in queued]), timeout=30)
    c.cancel(queued)
    again = c.submit(append_line, log, "q3", key="note-3")  # wanted again: runs once
    # client.run reaches the worker after the scheduler's frees (one ordered connection),
    # and runs beside the blocked task thread: once it answers, the worker knows.
    c.run(os.getpid)
    gate.open()
    assert blocker.result(timeout=120) == 0
    assert again.result(timeout=120) == "q3"
    last = c.submit(append_line, log, "last", key="note-last")
    assert last.result(timeout=120) == "last"
    with open(log) as f:
        assert f.read().split() == ["warm", "q3", "last"]


def test_cancelling_an_old_future_again_leaves_its_resubmission_alone(client, gate):
    old = client.submit(gated, gate.path, 5)
    old.cancel()
    new = client.submit(gated, gate.path, 5)
    old.cancel()  # already cancelled: the new computation of the same key is not touched
    gate.open()
    assert new.result(timeout=20) == 5
    assert old.cancelled()


def test_a_blocking_cancel_returns_with_the_futures_cancelled(client, gate):
    # dask's Future.cancel() / Client.cancel() return once the futures are cancelled, so a
    # program may check f.cancelled() (or f.status) straight after.
    for i in range(20):
        fut = client.submit(gated, gate.path, i)
        fut.cancel()
        assert fut.cancelled() and fut.status == "cancelled"
        futs = client.map(gated, [gate.path] * 3, [i, i + 1, i + 2])
        client.cancel(futs)
        assert [f.status for f in futs] == ["cancelled"] * 3


def test_closing_a_client_cancels_its_pending_futures(client, gate):
    # dask: after Client.close() the client's futures are 'cancelled' and result() raises
    # CancelledError (a program's `except CancelledError` around it must still catch).
    other = Client(client.cluster)
    held = other.map(gated, [gate.path] * 2, [1, 2], pure=False)
    other.close()
    assert [f.status for f in held] == ["cancelled", "cancelled"]
    assert all(f.cancelled() and f.done() for f in held)
    with pytest.raises(concurrent.futures.CancelledError, match="client was closed"):
        held[0].result(timeout=5)
