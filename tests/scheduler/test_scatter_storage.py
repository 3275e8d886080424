"""Scenario tests of scattering data through the pure scheduler: where it is stored, broadcast, loss.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler._events import (
    DropScattered,
    ReportDone,
    ReportErred,
    SendCompute,
    SendStore,
)

from ._sim import Sim, of, row

# --- scatter ------------------------------------------------------------------------------


def test_scatter_stores_on_one_worker_and_reports(sim: Sim) -> None:
    sim.join("w1")
    out = sim.scatter([("x", 100)])
    assert out == [
        SendStore("w1", "x"), ReportDone("c", "x", 100, "ndarray", None), DropScattered(["x"])
    ]
    assert sim.states("x") == ["memory"]


def test_scatter_spreads_items_over_workers(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 1), ("y", 1)])
    assert sorted(c.worker for c in of(out, SendStore)) == ["w1", "w2"]


def test_scatter_to_named_workers(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 1), ("y", 1), ("z", 1)], workers=["w2"])
    assert {c.worker for c in of(out, SendStore)} == {"w2"}


def test_scatter_broadcast_stores_everywhere(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 100)], broadcast=True)
    assert sorted(c.worker for c in of(out, SendStore)) == ["w1", "w2"]
    assert of(out, ReportDone) == [ReportDone("c", "x", 100, "ndarray", None)]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w1", "w2"}
    assert sim.state.workers["w2"].nbytes == 100
    assert sorted(c.worker for c in sim.release("x")) == ["w1", "w2"]


def test_broadcast_data_survives_losing_one_holder(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 100)], broadcast=True)
    assert sim.leave("w1") == []
    assert sim.states("x") == ["memory"]


def test_scatter_existing_key_reports_it_again(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)])
    # Nothing is sent, so the shell lets go of the bytes it kept for sending (a long-lived
    # cluster whose clients scatter the same values again must not pile them up).
    assert sim.scatter([("x", 100)]) == [ReportDone("c", "x", 100, "ndarray", None),
                                         DropScattered(["x"])]


def test_scatter_of_a_key_on_its_way_keeps_its_bytes_until_the_ack(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)], ack=False)
    again = sim.scatter([("x", 100)], ack=False)
    assert of(again, DropScattered) == []  # a worker's death would need them again
    assert of(sim.ack("w1", "x"), DropScattered) == [DropScattered(["x"])]


def test_scatter_without_workers_errs_instead_of_hanging(sim: Sim) -> None:
    erred, dropped = sim.scatter([("x", 1)])
    assert isinstance(erred, ReportErred) and erred.error["kind"] == "lost-data"
    assert dropped == DropScattered(["x"])


def test_scattered_input_used_by_task(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)])
    (cmd,) = of(sim.submit([row("y", ["x"])]), SendCompute)
    assert cmd.deps == [("x", ["w1"], 100)]
