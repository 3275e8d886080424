"""The scheduler's idle timeout (``shoal scheduler --idle-timeout``, dask's
``distributed.scheduler.idle-timeout``): the pure decision, fed the facts of each tick."""

from __future__ import annotations

import asyncio

import dask
import pytest

from shoal.scheduler._idle import IdleTimeout, activity_mark, is_busy
from shoal.scheduler._server import Scheduler, _idle_timeout
from shoal.scheduler._state import SchedulerState


def test_without_a_timeout_the_scheduler_never_closes():
    idle = IdleTimeout(None)
    assert not any(idle.observe(t, False, 0) for t in range(0, 10_000, 100))


def test_an_idle_scheduler_closes_once_the_timeout_has_passed():
    idle = IdleTimeout(10)
    assert [idle.observe(t, False, "m") for t in (0, 1, 5, 9.5, 10)] == [
        False, False, False, False, True]


def test_work_resets_the_idle_clock():
    idle = IdleTimeout(10)
    idle.observe(0, False, "m")
    idle.observe(1, False, "m")
    assert not idle.observe(9, True, "m")  # a task runs
    assert not idle.observe(12, False, "m")  # idle again from here
    assert not idle.observe(21, False, "m")
    assert idle.observe(22, False, "m")


def test_activity_between_ticks_resets_the_idle_clock():
    """A task submitted and finished between two ticks is never seen running; the mark
    (tasks finished, tasks and clients known) says that something happened."""
    idle = IdleTimeout(10)
    idle.observe(0, False, (0, 0, 0))
    assert not idle.observe(9, False, (1, 1, 1))
    assert not idle.observe(18, False, (1, 1, 1))
    assert idle.observe(19, False, (1, 1, 1))


def test_a_timeout_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="must be positive"):
        IdleTimeout(0)


def test_an_empty_scheduler_state_is_not_busy():
    state = SchedulerState()
    assert not is_busy(state)
    assert activity_mark(state) == (0, 0, 0)


def test_a_queued_or_running_task_makes_the_state_busy():
    state = SchedulerState()
    state.group_counts["inc"] = {"waiting": 0, "queued": 1, "no-worker": 0, "processing": 0,
                                 "memory": 0}
    assert is_busy(state)
    state.group_counts["inc"].update(queued=0, processing=2)
    assert is_busy(state)
    state.group_counts["inc"].update(processing=0, memory=2)
    assert not is_busy(state)  # results held in memory are not work


def test_the_idle_timeout_comes_from_dasks_config():
    assert _idle_timeout() is None  # dask's default: null
    with dask.config.set({"distributed.scheduler.idle-timeout": "2 minutes"}):
        assert _idle_timeout() == 120.0


def test_a_scheduler_with_an_idle_timeout_closes_itself():
    async def run() -> None:
        sched = Scheduler("127.0.0.1", 0, idle_timeout=1.5)
        await sched.start()
        try:
            await asyncio.wait_for(sched.finished(), 60)
        finally:
            await sched.close()
        assert sched._closed

    asyncio.run(run())


def test_the_idle_timeout_is_an_attribute_to_read_and_change_as_dasks():
    """dask's ``Scheduler.idle_timeout``, read at each check: a change applies to a running
    scheduler (a timeout set once its workers have joined)."""
    sched = Scheduler("127.0.0.1", 0)
    assert sched.idle_timeout is None
    sched.idle_timeout = 30
    assert sched.idle_timeout == 30
    assert sched._idle.observe(0, False, "m") is False  # the decision reads the new value
    assert sched._idle.observe(30, False, "m") is True
    with pytest.raises(ValueError, match="must be positive"):
        sched.idle_timeout = 0
    assert sched.idle_timeout == 30
    sched.idle_timeout = None
    assert not sched._idle.observe(1e6, False, "m")
