"""A task that raises ``Reschedule`` is given back to the scheduler and placed again: not a
failure, and no retry is used up (dask's ``distributed.Reschedule``)."""

from __future__ import annotations

from shoal.scheduler._events import ReportDone, ReportErred, RescheduleAsked, SendFree
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row


def asked(sim: Sim, worker: str, key: str, run: int | None = None) -> RescheduleAsked:
    """``worker`` reports that ``key`` raised Reschedule, in its current run by default."""
    ts = sim.state.tasks.get(key)
    return RescheduleAsked(worker, key, run if run is not None else ts.run if ts else 0)


def test_a_rescheduled_task_is_placed_again(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    out = sim.state.handle(asked(sim, "w1", "a"))
    assert computes(out) == [("w1", "a")]
    assert of(out, ReportErred) == [] and of(out, SendFree) == []
    assert sim.states("a") == ["processing"]
    assert sim.finish("a") == [ReportDone("c", "a", 8, "int", None)]


def test_a_rescheduled_task_may_go_to_another_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.join("w2")
    sim.state.handle(asked(sim, "w1", "a"))
    ts = sim.state.tasks["a"]
    assert ts.state == "processing" and ts.processing_on is not None


def test_rescheduling_uses_no_retry(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", retries=1)])
    for _ in range(3):
        sim.state.handle(asked(sim, "w1", "a"))
    assert sim.state.tasks["a"].retries == 1
    assert computes(sim.fail("a")) == [("w1", "a")]  # the retry is still there


def test_rescheduling_keeps_the_inputs_and_the_dependents(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a")
    out = sim.state.handle(asked(sim, "w1", "b"))
    assert computes(out) == [("w1", "b")]
    assert sim.states("a", "b") == ["memory", "processing"]
    sim.finish("b")
    assert sim.states("b") == ["memory"]


def test_a_reschedule_from_a_worker_not_running_the_task_is_ignored(
        state: SchedulerState, sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")])
    running_on = state.tasks["a"].processing_on
    assert running_on is not None
    other = "w2" if running_on.address == "w1" else "w1"
    assert state.handle(asked(sim, other, "a")) == []
    assert state.handle(asked(sim, other, "unknown")) == []
    assert state.tasks["a"].processing_on is running_on
    assert all(cause != "RescheduleAsked" for *_, cause, _now in state.story("a"))


def test_a_rescheduled_task_released_meanwhile_is_ignored(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.release("a")
    assert sim.state.handle(asked(sim, "w1", "a")) == []
    assert sim.states("a") == ["forgotten"]


def test_a_reschedule_from_an_earlier_run_of_the_task_is_ignored(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    old = sim.state.tasks["a"].run
    sim.state.handle(asked(sim, "w1", "a"))  # placed again: a new run on w1
    assert sim.state.tasks["a"].run != old
    assert sim.state.handle(asked(sim, "w1", "a", run=old)) == []
    assert sim.states("a") == ["processing"]
