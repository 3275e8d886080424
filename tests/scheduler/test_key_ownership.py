"""A client acts only on the keys it holds: releasing or cancelling someone else's key
does nothing to their future (sharing is explicit, through datasets)."""

from __future__ import annotations

from shoal.scheduler._events import (
    ClientJoined,
    GraphSubmitted,
    KeysCancelled,
    KeysReleased,
    ReportCancelled,
    SendCompute,
)

from ._sim import Sim, computes, row, tasks_only


def test_releasing_a_key_another_client_holds_leaves_it_running(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.state.handle(ClientJoined("stranger"))
    assert sim.state.handle(KeysReleased("stranger", ["a"])) == []
    assert sim.states("a") == ["processing"]
    assert sim.state.tasks["a"].who_wants == {"c"}


def test_cancelling_a_key_another_client_holds_has_no_effect(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.state.handle(ClientJoined("stranger"))
    assert tasks_only(sim.state.handle(KeysCancelled("stranger", ["a"]))) == []  # (but said)
    assert sim.states("a") == ["processing"]
    assert sim.state.tasks["a"].who_wants == {"c"}


def test_cancelling_a_shared_key_only_lets_go_of_it_for_the_canceller(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.state.handle(ClientJoined("other"))
    out = sim.state.handle(GraphSubmitted("other", [], ["a"]))
    assert not computes(out)
    out = sim.cancel("a")
    # The canceller settles its own futures (a report could overtake a resubmission);
    # nobody else is told anything.
    assert not [c for c in out if isinstance(c, ReportCancelled)]
    assert sim.states("a") == ["processing"]
    assert sim.state.tasks["a"].who_wants == {"other"}
    assert not [c for c in out if isinstance(c, SendCompute)]
