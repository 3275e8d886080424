"""Reports that arrive after the scheduler changed its mind (found by the cluster fuzzer,
tests/scheduler/test_fuzz.py): they must not make it believe a worker holds data it drops."""

from __future__ import annotations

from shoal.scheduler._events import SendFree

from ._sim import Sim, row


def test_result_of_a_run_freed_on_that_worker_adds_no_replica(sim: Sim) -> None:
    # "a" runs on w1; the client releases it (w1 is told to free it) and submits it again;
    # it lands on w2 and finishes there. Then w1's result of the freed run arrives: w1
    # drops that value when the free reaches it, so it must not count as a holder.
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"])])
    assert SendFree("w1", ["a"]) in sim.release("a")
    sim.submit([row("a", workers=["w2"])])
    sim.finish("a", worker="w2")
    out = sim.finish("a", worker="w1")
    ts = sim.state.tasks["a"]
    assert [ws.address for ws in ts.who_has] == ["w2"]
    assert sim.state.workers["w1"].has_what == set()
    assert out == [SendFree("w1", ["a"])]


def test_duplicate_result_from_the_holder_changes_nothing(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a", worker="w1", nbytes=100)
    assert sim.finish("a", worker="w1", nbytes=100) == []
    assert sim.state.workers["w1"].nbytes == 100
