"""Pure scheduler tests for tasks that give their thread back (``secede``) and for
fire-and-forget keys, which the scheduler holds until they finish."""

from __future__ import annotations

from shoal.scheduler._events import (
    ClientLeft,
    FireAndForgetAsked,
    ReportDone,
    SendFree,
)
from shoal.scheduler._state import FIRE_AND_FORGET

from ._sim import Sim, computes, of, row

# --- secede -------------------------------------------------------------------------------------


def test_seceded_task_frees_its_slot_so_the_worker_gets_more_work(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    assert computes(sim.submit([row("fib-6")])) == [("w1", "fib-6")]
    # A second unmeasured task waits: the one thread is busy.
    assert computes(sim.submit([row("fib-5")])) == []
    out = sim.seceded("w1", "fib-6", 0.001)
    assert computes(out) == [("w1", "fib-5")]
    ws = sim.state.workers["w1"]
    assert {t.key for t in ws.long_running} == {"fib-6"}
    assert sim.states("fib-6", "fib-5") == ["processing", "processing"]


def test_seceded_task_no_longer_counts_in_occupancy(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("slow-1")])
    ws = sim.state.workers["w1"]
    assert ws.occupancy > 0
    sim.seceded("w1", "slow-1", 0.002)
    assert ws.occupancy == 0.0


def test_secede_reports_the_compute_time_as_the_prefix_duration(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("fib-6")])
    sim.seceded("w1", "fib-6", 0.002)
    assert sim.state._estimate("fib") == 0.002
    # Finishing much later (after waiting for its children) does not skew the estimate.
    sim.finish("fib-6", duration=30.0)
    assert sim.state._estimate("fib") == 0.002


def test_seceded_task_result_flows_as_usual(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("fib-6")])
    sim.seceded("w1", "fib-6", 0.001)
    out = sim.finish("fib-6")
    assert of(out, ReportDone) == [ReportDone("c", "fib-6", 8, "int", None)]
    assert sim.states("fib-6") == ["memory"]
    assert not sim.state.workers["w1"].long_running


def test_secede_of_an_unknown_or_moved_task_is_ignored(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")])
    where = sim.state.tasks["a"].processing_on
    assert where is not None
    other = "w2" if where.address == "w1" else "w1"
    assert sim.seceded(other, "a", 0.1) == []
    assert sim.seceded("w1", "nope", 0.1) == []
    assert sim.seceded("gone", "a", 0.1) == []
    assert not sim.state.workers[other].long_running


def test_seceded_task_on_a_dying_worker_is_rerun(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.seceded("w1", "a", 0.001)
    sim.leave("w1")
    assert sim.states("a") == ["queued"]
    assert computes(sim.join("w2")) == [("w2", "a")]


def test_secede_twice_counts_once(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("a")])
    sim.seceded("w1", "a", 0.001)
    sim.seceded("w1", "a", 0.001)
    assert len(sim.state.workers["w1"].long_running) == 1


def test_released_seceded_task_leaves_long_running(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("a")])
    sim.seceded("w1", "a", 0.001)
    out = sim.release("a")
    assert of(out, SendFree) == [SendFree("w1", ["a"])]
    assert not sim.state.workers["w1"].long_running


# --- fire and forget ------------------------------------------------------------------------------


def test_fire_and_forget_key_runs_after_the_client_releases_it(sim: Sim) -> None:
    sim.submit([row("x"), row("report", ["x"])], wanted=["report"])
    sim.state.handle(FireAndForgetAsked(["report"]))
    sim.release("report")
    assert sim.states("x", "report") == ["queued", "waiting"]
    sim.join("w1")
    sim.finish("x")
    assert sim.states("report") == ["processing"]
    out = sim.finish("report")
    # Done: the scheduler stops holding it, and nobody else wants it.
    assert sim.states("x", "report") == ["forgotten", "forgotten"]
    assert of(out, SendFree)
    assert not of(out, ReportDone)  # nothing to report to a pseudo-client


def test_fire_and_forget_key_survives_its_client_leaving(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("report")])
    sim.state.handle(FireAndForgetAsked(["report"]))
    sim.state.handle(ClientLeft("c"))
    assert sim.states("report") == ["processing"]
    sim.finish("report")
    assert sim.states("report") == ["forgotten"]
    assert not sim.state.clients[FIRE_AND_FORGET]


def test_failed_fire_and_forget_key_is_let_go(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("report")])
    sim.state.handle(FireAndForgetAsked(["report"]))
    sim.release("report")
    sim.fail("report")
    assert sim.states("report") == ["forgotten"]


def test_fire_and_forget_key_still_wanted_by_a_client_stays(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("report")])
    sim.state.handle(FireAndForgetAsked(["report"]))
    out = sim.finish("report")
    assert ReportDone("c", "report", 8, "int", None) in out
    assert sim.states("report") == ["memory"]
    assert sim.state.tasks["report"].who_wants == {"c"}


def test_fire_and_forget_of_finished_or_unknown_keys_holds_nothing(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("done")])
    sim.finish("done")
    assert sim.state.handle(FireAndForgetAsked(["done", "unknown"])) == []
    assert sim.state.tasks["done"].who_wants == {"c"}
