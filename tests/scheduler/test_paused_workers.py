"""Workers paused by memory (pure scheduler): nothing new is placed on them; root tasks
stay queued on the scheduler; work resumes there once they resume."""

from __future__ import annotations

from shoal.scheduler import _placement as placement
from shoal.scheduler._events import SendCompute, SendFree, WorkerPaused

from ._sim import Sim, computes, of, row

BIG = placement.LOCALITY_BYTES + 1


def pause(sim: Sim, worker: str, paused: bool = True) -> list:
    return sim.state.handle(WorkerPaused(worker, paused))


def test_root_tasks_stay_queued_while_the_only_worker_is_paused(sim: Sim) -> None:
    sim.join("w1")
    pause(sim, "w1")
    assert computes(sim.submit([row("a"), row("b")])) == []
    assert sim.states("a", "b") == ["queued", "queued"]
    out = computes(pause(sim, "w1", False))
    assert len(out) == 1 and out[0][0] == "w1"  # unknown durations: one per thread


def test_new_work_goes_to_the_worker_that_is_not_paused(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    pause(sim, "w1")
    out = sim.submit([row(f"t-{i}") for i in range(4)])
    assert {w for w, _ in computes(out)} == {"w2"}


def test_a_big_input_on_a_paused_worker_is_fetched_by_another(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")], wanted=["a", "b"])
    holder = sim.state.tasks["a"].processing_on
    assert holder is not None
    other = "w2" if holder.address == "w1" else "w1"
    pause(sim, holder.address)
    sim.submit([row("b", ["a"])])
    out = sim.finish("a", nbytes=BIG)
    assert computes(out) == [(other, "b")]


def test_a_task_restricted_to_a_paused_worker_waits_for_it_to_resume(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    pause(sim, "w1")
    assert computes(sim.submit([row("a", workers=["w1"])])) == []
    assert sim.states("a") == ["no-worker"]
    assert computes(pause(sim, "w1", False)) == [("w1", "a")]


def test_pausing_an_unknown_worker_is_ignored(sim: Sim) -> None:
    assert pause(sim, "nobody") == []


def test_a_paused_worker_that_leaves_is_forgotten(sim: Sim) -> None:
    sim.join("w1")
    pause(sim, "w1")
    sim.leave("w1")
    assert sim.state._paused == set()
    out = sim.join("w1")
    assert of(out, SendFree) == [] and of(out, SendCompute) == []
