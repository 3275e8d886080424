"""Which inputs a task reads last (``SendCompute.drop``, dropped by its worker as the task
succeeds), and what the scheduler makes of the worker's report of the drop: a key is never
dropped while a task, a client or a copy elsewhere still needs it, and one found needed
after all is recomputed, never waited for."""

from __future__ import annotations

from typing import Any

from shoal.scheduler._events import (
    GraphSubmitted,
    ReplicasAdded,
    ReportDone,
    SendCompute,
    SendFree,
    TaskFinished,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, of, row


def compute_of(cmds: list[Any], key: Any) -> SendCompute:
    (cmd,) = [c for c in of(cmds, SendCompute) if c.key == key]
    return cmd


def finish_dropping(sim: Sim, key: Any, dropped: tuple[Any, ...]) -> list[Any]:
    """The worker running ``key`` reports it done, having dropped ``dropped``."""
    ts = sim.state.tasks[key]
    assert ts.processing_on is not None
    return sim.state.handle(TaskFinished(ts.processing_on.address, key, 8, "int", 0.0, 0.001,
                                         0, None, ts.run, dropped))


def test_unwanted_input_of_its_only_dependent_is_dropped_there(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    out = sim.finish("a")
    assert compute_of(out, "b").drop == ("a",)


def test_input_a_client_wants_is_not_dropped(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["a", "b"])
    assert compute_of(sim.finish("a"), "b").drop == ()


def test_input_with_another_pending_dependent_is_not_dropped(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.submit([row("a"), row("b", ["a"]), row("c", ["a"])], wanted=["b", "c"])
    out = sim.finish("a")
    assert compute_of(out, "b").drop == ()
    assert compute_of(out, "c").drop == ()


def test_last_of_several_dependents_drops_the_input(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"], priority=(0,)), row("c", ["a"], priority=(1,))],
               wanted=["b", "c"])
    out = sim.finish("a")
    assert compute_of(out, "b").drop == ()  # "c" still to run
    out = sim.finish("b")
    assert compute_of(out, "c").drop == ("a",)


def test_input_held_on_another_worker_is_not_dropped(sim: Sim) -> None:
    # The worker fetches it: its fetched copy goes by itself; the holder's waits for a free.
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w2"])], wanted=["b"])
    assert compute_of(sim.finish("a"), "b").drop == ()


def test_input_of_a_failed_dependent_is_kept(sim: Sim) -> None:
    # A held failure keeps its inputs (for retrying or replaying it).
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"], priority=(0,)), row("c", ["a"], priority=(1,))],
               wanted=["b", "c"])
    sim.finish("a")
    out = sim.fail("b")
    assert compute_of(out, "c").drop == ()


def test_actor_input_is_not_dropped(sim: Sim, state: SchedulerState) -> None:
    sim.join("w1")
    state.handle(GraphSubmitted("c", [row("a"), row("b", ["a"])], ["b"], ["a"], {}))
    assert compute_of(sim.finish("a"), "b").drop == ()


def test_no_dependent_set_is_scanned(sim: Sim) -> None:
    # An input read by many tasks (its dependents a set): not looked at per assignment.
    sim.join("w1")
    readers = [row(f"r{i}", ["a"], priority=(i,)) for i in range(12)]
    sim.submit([row("a"), *readers], wanted=[r[0] for r in readers])
    out = sim.finish("a")
    for i in range(12):
        if i:
            out = sim.finish(f"r{i - 1}")
        assert compute_of(out, f"r{i}").drop == ()


def test_drop_report_releases_the_input_without_a_free(sim: Sim, state: SchedulerState) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a", nbytes=100)
    out = finish_dropping(sim, "b", ("a",))
    assert of(out, SendFree) == []
    assert sim.states("a", "b") == ["released", "memory"]
    w1 = state.workers["w1"]
    assert [t.key for t in w1.has_what] == ["b"]
    assert w1.nbytes == 8
    assert of(out, ReportDone) == [ReportDone("c", "b", 8, "int", None)]


def test_other_copies_of_a_dropped_input_are_freed(sim: Sim, state: SchedulerState) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w1"])], wanted=["b"])
    sim.finish("a")
    state.handle(ReplicasAdded("w2", ["a"]))  # a copy made meanwhile (replicate)
    out = finish_dropping(sim, "b", ("a",))
    assert of(out, SendFree) == [SendFree("w2", ["a"])]
    assert sim.states("a") == ["released"]


def test_dropped_input_a_client_came_to_want_is_recomputed(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    out = sim.finish("a")
    assert compute_of(out, "b").drop == ("a",)
    sim.submit([], wanted=["a"])  # a future on "a", after "b" was sent to read it last
    out = finish_dropping(sim, "b", ("a",))
    assert sim.states("a") == ["processing"]
    assert compute_of(out, "a").worker == "w1"
    out = sim.finish("a")
    assert ReportDone("c", "a", 8, "int", None) in out


def test_dropped_input_a_new_task_reads_is_recomputed_for_it(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a")
    out = sim.submit([row("a"), row("c", ["a"])], wanted=["c"])  # a new reader of "a"
    assert compute_of(out, "c").drop == ()  # "b" still reads it
    finish_dropping(sim, "b", ("a",))
    # "a" is gone from w1: recomputed there; "c" (sent to read it on w1) is sent back by
    # the worker, which lacks it, and runs again once "a" is back.
    assert sim.states("a", "c") == ["processing", "processing"]
    sim.missing("w1", "a", "w1", "c")
    assert sim.states("c") == ["waiting"]
    out = sim.finish("a")
    assert [c.key for c in of(out, SendCompute)] == ["c"]
    sim.finish("c")
    assert sim.states("c") == ["memory"]


def test_drop_reported_by_a_run_released_since_still_counts(sim: Sim, state: SchedulerState
                                                             ) -> None:
    # "b" was released while it ran (its report no longer counts as a result), and a
    # client came to want "a": the worker dropped "a" all the same, so w1 must not stay
    # listed as its holder; "a" is computed again for the client.
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a")
    old_run = state.tasks["b"].run
    sim.submit([], wanted=["a"])
    sim.release("b")
    assert sim.states("a") == ["memory"]
    state.handle(TaskFinished("w1", "b", 8, "int", 0.0, 0.001, 0, None, old_run, ("a",)))
    assert all(ws.address != "w1" for ws in state.tasks["a"].who_has)
    assert sim.states("a") == ["processing"]
