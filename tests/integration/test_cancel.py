"""Cancelling futures, with dask.distributed's semantics: the caller's interest only (unless
``force=True``), and a resubmission after a cancel computes afresh."""

from __future__ import annotations

import concurrent.futures

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
        wait_for(mine.cancelled, timeout=10)
        assert not theirs.done()
        gate.open()
        assert theirs.result(timeout=20) == 7

        mine = client.submit(gated, gate.path, 8, key="shared-cancel-2")
        theirs = other.submit(gated, gate.path, 8, key="shared-cancel-2")
        _wanted_by_both(client, "shared-cancel-2")
        mine.cancel(force=True)
        wait_for(theirs.cancelled, timeout=10)
        with pytest.raises(concurrent.futures.CancelledError):
            theirs.result(timeout=10)
        wait_for(lambda: "shared-cancel-2" not in scheduler_tasks(client), timeout=10)
    finally:
        other.close()
