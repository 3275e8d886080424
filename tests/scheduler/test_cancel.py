"""Scenario tests of cancelling tasks in the pure scheduler.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler._events import (
    ReportCancelled,
    ReportDone,
    SendFree,
)

from ._sim import Sim, computes, of, row

# --- cancel --------------------------------------------------------------------------------


def test_cancel_processing_task(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    out = sim.cancel("a")
    # the cancelling client settled its futures itself: a report could reach a resubmission
    assert out == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


def test_cancel_waiting_task_releases_its_input(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a", duration=5.0)
    sim.submit([row("z", prefix="a")])  # w1 busy: b's successor queue is irrelevant
    out = sim.cancel("b")
    assert SendFree("w1", ["a"]) in out
    assert "a" not in sim.state.tasks and "b" not in sim.state.tasks


def test_cancel_finished_task_releases_its_result(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert sim.cancel("a") == [SendFree("w1", ["a"])]
    assert sim.states("a") == ["forgotten"]


def test_cancel_drops_only_the_callers_interest_in_a_shared_task(sim: Sim) -> None:
    other = Sim(sim.state, client="d")
    sim.join("w1")
    sim.submit([row("a")])
    other.submit([row("a")])
    assert sim.cancel("a") == []
    assert sim.states("a") == ["processing"]
    assert sim.state.tasks["a"].who_wants == {"d"}
    assert of(sim.finish("a"), ReportDone) == [ReportDone("d", "a", 8, "int", None)]


def test_forced_cancel_cancels_the_task_for_every_client(sim: Sim) -> None:
    other = Sim(sim.state, client="d")
    sim.join("w1")
    sim.submit([row("a")])
    other.submit([row("a")])
    out = sim.cancel("a", force=True)
    assert out == [ReportCancelled("d", "a", "cancelled by the client"), SendFree("w1", ["a"])]
    assert sim.states("a") == ["forgotten"]


def test_cancel_cancels_the_dependents_nobody_else_wants(sim: Sim) -> None:
    other = Sim(sim.state, client="d")
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"]), row("c", ["a"])], wanted=["a", "b"])
    other.submit([row("c", ["a"])])
    out = sim.cancel("a")
    assert of(out, ReportCancelled) == [ReportCancelled("c", "b", "cancelled by the client")]
    assert sim.states("a", "b", "c") == ["processing", "forgotten", "waiting"]
    assert sim.state.tasks["a"].who_wants == set()


def test_cancelled_task_submitted_again_runs_afresh(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.cancel("a")
    assert computes(sim.submit([row("a")])) == [("w1", "a")]
    assert of(sim.finish("a"), ReportDone) == [ReportDone("c", "a", 8, "int", None)]


def test_a_wanted_key_neither_in_the_graph_nor_on_the_cluster_is_cancelled(sim: Sim) -> None:
    # client.get({"z": 1}, "missing"): dask cancels the future ("lost dependencies"); a
    # key no one will ever compute must not leave its caller waiting forever.
    sim.join("w1")
    out = sim.submit([row("a")], wanted=["a", "missing"])
    (report,) = of(out, ReportCancelled)
    assert (report.client, report.key) == (sim.client, "missing")
    assert "not in the graph" in report.reason
    # A future of a key the cluster forgot (a Variable's or a dataset's, after
    # client.restart()) meets this too: the reason says how a key is forgotten.
    assert "client.restart()" in report.reason and "compute it again" in report.reason
    assert "missing" not in sim.state.tasks and sim.states("a") == ["processing"]
