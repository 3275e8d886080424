"""``Adaptive.stop()`` lets a step under way finish and then ends the adapting task; the
cluster's ``_stop_now()`` ends it even when a step swallows the cancel (as
``asyncio.wait_for`` does on Python 3.11 when its wait ends as the cancel arrives), and
``adapt()`` does not wait on shoal's loop (an asynchronous cluster's caller is another
event loop). No processes: the cluster is a stand-in."""

from __future__ import annotations

import asyncio
import threading

from _waiting import wait_for

from shoal import _loop
from shoal.cluster._adaptive import Adaptive


class StandInCluster:
    status = "running"


def test_stop_now_ends_adapting_even_when_a_step_swallowed_the_cancel(monkeypatch):
    # (the cluster's close: it cuts a step under way short)
    stepping = threading.Event()

    async def swallowing_step(self: Adaptive) -> None:
        stepping.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # what wait_for did on 3.11 when the awaited wait had just ended

    monkeypatch.setattr(Adaptive, "adapt", swallowing_step)
    adaptive = Adaptive(StandInCluster(), minimum=0, maximum=1, interval=0.01)
    wait_for(stepping.is_set, timeout=30)
    task = adaptive._task
    assert task is not None
    adaptive._stop_now()
    wait_for(task.done, timeout=10)


def test_stop_lets_a_step_under_way_finish_then_ends_adapting(monkeypatch):
    # As dask's (its periodic callback stops; a step under way is not cancelled): a retire
    # cut between the scheduler's goodbye and the worker's close left a worker behind.
    stepping = threading.Event()
    finished: list[int] = []

    async def step(self: Adaptive) -> None:
        stepping.set()
        await asyncio.sleep(0.3)
        finished.append(1)

    monkeypatch.setattr(Adaptive, "adapt", step)
    adaptive = Adaptive(StandInCluster(), minimum=0, maximum=1, interval=0.01)
    wait_for(stepping.is_set, timeout=30)
    task = adaptive._task
    assert task is not None
    before = len(finished)
    adaptive.stop()
    wait_for(task.done, timeout=30)
    assert not task.cancelled() and len(finished) >= before + 1
    count = len(finished)
    assert adaptive._task is None and len(finished) == count  # no step after it


def test_adapt_created_on_shoals_loop_itself_starts_without_blocking(monkeypatch):
    steps = threading.Event()

    async def step(self: Adaptive) -> None:
        steps.set()

    monkeypatch.setattr(Adaptive, "adapt", step)

    async def make() -> Adaptive:
        return Adaptive(StandInCluster(), minimum=0, maximum=1, interval=0.01)

    adaptive = _loop.run_sync(make(), 30)
    try:
        wait_for(steps.is_set, timeout=30)
    finally:
        adaptive.stop()
    wait_for(lambda: adaptive._task is None, timeout=30)


def test_the_clusters_close_still_cuts_a_step_that_stop_let_finish(monkeypatch):
    # stop() (or a second adapt()) lets the step finish; the cluster's close that follows
    # must still cut it short, or a scale-up under way starts a worker after the close.
    stepping = threading.Event()

    async def long_step(self: Adaptive) -> None:
        stepping.set()
        await asyncio.sleep(30)

    monkeypatch.setattr(Adaptive, "adapt", long_step)
    adaptive = Adaptive(StandInCluster(), minimum=0, maximum=1, interval=0.01)
    wait_for(stepping.is_set, timeout=30)
    task = adaptive._task
    assert task is not None
    adaptive.stop()
    adaptive._stop_now()
    wait_for(task.done, timeout=10)
    assert task.cancelled()
