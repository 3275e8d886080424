"""A graph arriving in pieces is kept by holds of bounded size: one set of a million tasks
grows by rehashing every one of them in a single step of the scheduler's loop (issue 14:
no step over 100 ms). Whatever the number of holds, the graph's results are kept until its
last piece is in and all are let go of after it."""

from __future__ import annotations

import pytest

from shoal.scheduler import _client_handlers
from shoal.scheduler._events import ClientLeft, ContinueWork, GraphSubmitted, WorkResumed
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row

HOLDING = " (graph arriving)"


def holds(state: SchedulerState) -> dict[str, int]:
    """Tasks kept by each graph hold now."""
    return {c: len(held) for c, held in state.clients.items() if HOLDING in c}


def send_leaves(sim: Sim, pieces: int, per_piece: int, stream: int = 1) -> list[object]:
    """``pieces`` pieces of ``per_piece`` leaves each (none wanted), all run to the end."""
    keys: list[object] = []
    for p in range(pieces):
        rows = [row(("leaf", p, i)) for i in range(per_piece)]
        keys += [r[0] for r in rows]
        sim.state.handle(GraphSubmitted(sim.client, rows, [], more=True, stream=stream))
        while running := [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]:
            for key in running:
                sim.finish(key)
        sim.state.validate()
    return keys


def resume_until_done(sim: Sim, cmds: list) -> None:
    while of(cmds, ContinueWork):
        cmds = sim.state.handle(WorkResumed())
        sim.state.validate()


def test_a_graph_larger_than_one_hold_is_kept_by_several_bounded_holds(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    monkeypatch.setattr(_client_handlers, "HOLD_TASKS", 5)
    sim.join("w1", nthreads=4)
    keys = send_leaves(sim, pieces=7, per_piece=2)  # 14 results held
    sizes = holds(sim.state)
    assert sum(sizes.values()) == 14
    assert len(sizes) > 1
    # a new hold starts once one has HOLD_TASKS: none exceeds it by more than a piece
    assert max(sizes.values()) <= 5 + 2 - 1
    assert all(sim.states(k) == ["memory"] for k in keys)  # kept: nobody wants them yet


def test_every_hold_of_a_graph_is_let_go_of_after_its_last_piece(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    monkeypatch.setattr(_client_handlers, "HOLD_TASKS", 5)
    monkeypatch.setattr(_client_handlers, "ENDING_STEP", 3)
    sim.join("w1", nthreads=4)
    keys = send_leaves(sim, pieces=7, per_piece=2)
    cmds = sim.state.handle(GraphSubmitted(sim.client, [row("root", keys)], ["root"],
                                           more=False, stream=1))
    assert computes(cmds) == [("w1", "root")]  # every leaf was still there
    resume_until_done(sim, cmds)
    assert holds(sim.state) == {}
    sim.finish("root")
    assert all(sim.states(k) == ["released"] for k in keys)  # let go of with the holds
    assert sim.state.clients.keys() == {"c"}


def test_a_client_leaving_mid_graph_lets_go_of_all_its_holds(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    monkeypatch.setattr(_client_handlers, "HOLD_TASKS", 4)
    sim.join("w1", nthreads=4)
    send_leaves(sim, pieces=5, per_piece=3)
    assert len(holds(sim.state)) > 1
    cmds = sim.state.handle(ClientLeft("c"))
    resume_until_done(sim, cmds)
    assert sim.state.tasks == {}
    assert sim.state.clients == {}


def test_two_graphs_in_pieces_at_once_keep_separate_holds(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    monkeypatch.setattr(_client_handlers, "HOLD_TASKS", 3)
    sim.join("w1", nthreads=4)
    first = send_leaves(sim, pieces=3, per_piece=2, stream=1)
    rows = [row(("other", i)) for i in range(5)]
    sim.state.handle(GraphSubmitted(sim.client, rows, [], more=True, stream=2))
    cmds = sim.state.handle(GraphSubmitted(sim.client, [row("root", first)], ["root"],
                                           more=False, stream=1))
    resume_until_done(sim, cmds)
    # stream 1's holds are gone; stream 2's one hold keeps its tasks
    assert list(holds(sim.state).values()) == [5]
    assert all(("other", i) in sim.state.tasks for i in range(5))
