"""Scenario tests of a task's basic life in the pure scheduler: submit, run, report, release.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler._events import (
    ClientLeft,
    LogEvent,
    ReportDone,
    ReportErred,
    SendCompute,
    SendFree,
)
from shoal.scheduler._state import SchedulerState

from ._sim import PAYLOAD, Sim, computes, of, row

# --- the basic life of a task -----------------------------------------------------------------


def test_submit_runs_and_reports(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("inc-1", fids=["f1"], priority=(0, 1))])
    assert out == [
        SendCompute("w1", "inc-1", PAYLOAD, [], ("f1",), (0, 1), True, "inc", 1),
    ]
    assert sim.states("inc-1") == ["processing"]
    out = sim.finish("inc-1", nbytes=28, typename="int")
    assert out == [ReportDone("c", "inc-1", 28, "int", None)]
    assert sim.states("inc-1") == ["memory"]
    ts = sim.state.tasks["inc-1"]
    assert {w.address for w in ts.who_has} == {"w1"}
    assert ts.nbytes == 28


def test_inline_result_is_forwarded_to_client(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    out = sim.finish("a", inline=PAYLOAD)
    assert out == [ReportDone("c", "a", 8, "int", PAYLOAD)]


def test_submit_without_workers_queues_until_one_joins(sim: Sim) -> None:
    assert sim.submit([row("a")]) == []
    assert sim.states("a") == ["queued"]
    assert computes(sim.join("w1")) == [("w1", "a")]


def test_resubmitting_a_key_in_memory_reports_it_at_once(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a", nbytes=5, typename="list")
    assert sim.submit([row("a")]) == [ReportDone("c", "a", 5, "list", None)]


def test_unwanted_tasks_are_not_run(sim: Sim) -> None:
    sim.join("w1")
    assert sim.submit([row("a"), row("b")], wanted=["b"]) == [
        SendCompute("w1", "b", PAYLOAD, [], (), (0,), True, "b", 1),
    ]
    assert "a" not in sim.state.tasks


def test_send_inline_false_for_intermediate_tasks(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    (cmd,) = of(out, SendCompute)
    assert cmd.key == "a" and cmd.send_inline is False


# --- releasing ----------------------------------------------------------------------------


def test_release_frees_memory_and_forgets(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert sim.release("a") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}
    assert sim.state.workers["w1"].has_what == set()
    assert sim.state.workers["w1"].nbytes == 0


def test_release_of_processing_task_tells_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    assert sim.release("a") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}
    # a late result for the forgotten task is dropped on the worker
    assert sim.finish("a", worker="w1") == [SendFree("w1", ["a"])]


def test_release_of_queued_task_sends_nothing(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", priority=(0,)), row("b", priority=(1,))])
    assert sim.release("b") == []
    assert sim.states("b") == ["forgotten"]


def test_release_of_waiting_dependent_releases_its_inputs(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    assert sim.release("b") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


def test_input_kept_while_another_client_holds_it(state: SchedulerState) -> None:
    one, two = Sim(state, "one"), Sim(state, "two")
    one.join("w1")
    one.submit([row("a")])
    two.submit([row("a")])
    one.finish("a")
    assert one.release("a") == []
    assert two.release("a") == [SendFree("w1", ["a"])]


def test_client_leaving_releases_what_it_held(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    out = sim.state.handle(ClientLeft("c"))
    assert [c for c in out if not isinstance(c, LogEvent)] == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


def test_inputs_kept_while_failed_dependent_is_held(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a")
    out = sim.fail("b")
    assert [type(c) for c in out] == [ReportErred]
    assert sim.states("a", "b") == ["memory", "erred"]
    assert sim.release("b") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}
