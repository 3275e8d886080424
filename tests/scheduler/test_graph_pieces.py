"""A large graph arrives in pieces (``GraphSubmitted(more=True)`` until the last one): its
tasks start running at once, and what they produce is kept until the last piece is in,
since a later piece may hold a dependent."""

from __future__ import annotations

import pytest

from shoal.scheduler import _client_handlers
from shoal.scheduler._events import (
    ClientLeft,
    ContinueWork,
    GraphSubmitted,
    KeysCancelled,
    ReportDone,
    ReportErred,
    SendFree,
    WorkResumed,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row


def done(cmds: list) -> list[object]:
    """Keys reported done to the client (the graph's holder is no client: nothing is sent)."""
    return [r.key for r in of(cmds, ReportDone) if r.client == "c"]


def piece(
    sim: Sim, rows: list[tuple[object, ...]], wanted: list[object], more: bool, stream: int = 1,
    held: list[object] | None = None,
) -> list:
    return sim.state.handle(GraphSubmitted(sim.client, rows, wanted, more=more, stream=stream,
                                           held=held))


def whole(sim: Sim, rows: list[tuple[object, ...]], wanted: list[object]) -> list:
    return sim.state.handle(GraphSubmitted(sim.client, rows, wanted))


def test_a_whole_graph_between_two_pieces_keeps_the_first_pieces_results(sim: Sim) -> None:
    sim.join("w1")
    piece(sim, [row("a")], [], more=True)
    sim.finish("a")
    whole(sim, [row("x")], ["x"])
    sim.finish("x")
    cmds = piece(sim, [row("b", ["a"])], ["b"], more=False)
    assert computes(cmds) == [("w1", "b")]
    assert sim.state.tasks["a"].state == "memory"
    sim.state.validate()


def test_two_graphs_of_one_client_sent_in_pieces_at_once_keep_their_own_results(
    sim: Sim,
) -> None:
    sim.join("w1")
    piece(sim, [row("a")], [], more=True, stream=1)
    piece(sim, [row("t")], [], more=True, stream=2)
    sim.finish("a")
    sim.finish("t")
    piece(sim, [row("b", ["a"])], ["b"], more=False, stream=1)
    sim.finish("b")
    # stream 1 is in: its hold ended and let go of "a"; stream 2's hold keeps "t"
    assert sim.state.tasks["a"].state == "released"
    assert sim.state.tasks["t"].state == "memory"
    cmds = piece(sim, [row("u", ["t"])], ["u"], more=False, stream=2)
    assert computes(cmds) == [("w1", "u")]
    sim.state.validate()


def test_the_first_piece_runs_before_the_rest_arrive(sim: Sim) -> None:
    sim.join("w1")
    cmds = piece(sim, [row("a")], [], more=True)
    assert computes(cmds) == [("w1", "a")]


def test_a_result_is_kept_for_a_dependent_in_a_later_piece(sim: Sim) -> None:
    sim.join("w1")
    piece(sim, [row("a")], [], more=True)
    cmds = sim.finish("a")
    assert sim.states("a") == ["memory"]  # nobody wants it yet, but a dependent may come
    assert not of(cmds, SendFree)
    cmds = piece(sim, [row("b", ["a"])], ["b"], more=False)
    assert computes(cmds) == [("w1", "b")]
    cmds = sim.finish("b")
    assert done(cmds) == ["b"]
    assert sim.states("a", "b") == ["released", "memory"]  # as for a graph sent whole


def test_a_piece_naming_what_later_pieces_use_keeps_only_that(sim: Sim) -> None:
    # (a million-task array's pieces: without it, every result of a piece stays in memory
    # until the last piece is in, hundreds of thousands of them)
    sim.join("w1", nthreads=3)
    piece(sim, [row("a"), row("s", ["a"]), row("b")], [], more=True, held=["s", "b"])
    sim.finish("a")
    cmds = sim.finish("s")
    # "a" fed "s" in its own piece and nothing later uses it: freed at once, as whole
    assert sim.states("a", "s") == ["released", "memory"]
    assert [k for f in of(cmds, SendFree) for k in f.keys] == ["a"]
    sim.finish("b")
    cmds = piece(sim, [row("t", ["s", "b"])], ["t"], more=False)
    assert computes(cmds) == [("w1", "t")]
    sim.finish("t")
    assert sim.states("s", "b", "t") == ["released", "released", "memory"]
    sim.state.validate()


def test_a_key_a_piece_does_not_hold_nor_need_is_not_computed(sim: Sim) -> None:
    sim.join("w1")
    cmds = piece(sim, [row("a"), row("x")], [], more=True, held=["a"])
    assert computes(cmds) == [("w1", "a")]  # "x": no later piece uses it (as dask: not run)
    assert sim.states("x") == ["forgotten"]
    piece(sim, [row("b", ["a"])], ["b"], more=False)
    sim.finish("a")
    sim.finish("b")
    assert sim.states("b") == ["memory"]


def test_the_last_piece_lets_go_of_intermediates_nobody_needs(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    piece(sim, [row("a"), row("x")], [], more=True)
    sim.finish("a")
    piece(sim, [row("b", ["a"])], ["b"], more=False)
    # x is neither wanted nor an input of anything: dropped although it was computing.
    assert sim.states("x") == ["forgotten"]
    assert "c (graph arriving)" not in sim.state.clients


def test_a_wanted_key_done_before_the_last_piece_is_reported_then(sim: Sim) -> None:
    sim.join("w1")
    piece(sim, [row("a")], [], more=True)
    assert not done(sim.finish("a"))
    cmds = piece(sim, [row("b")], ["a", "b"], more=False)
    assert done(cmds) == ["a"]


def test_a_wanted_key_of_an_early_piece_is_reported_as_soon_as_done(sim: Sim) -> None:
    sim.join("w1")
    piece(sim, [row("a")], ["a"], more=True)
    assert done(sim.finish("a")) == ["a"]
    piece(sim, [row("b")], ["b"], more=False)
    assert sim.state.tasks["a"].who_wants == {"c"}


def test_a_failure_before_the_last_piece_reaches_dependents_and_the_client(sim: Sim) -> None:
    sim.join("w1")
    piece(sim, [row("a")], [], more=True)
    sim.fail("a")
    cmds = piece(sim, [row("b", ["a"])], ["b"], more=False)
    assert sim.states("a", "b") == ["erred", "erred"]
    assert [r.key for r in of(cmds, ReportErred)] == ["b"]


def test_a_worker_dying_between_pieces_recomputes_kept_results(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    piece(sim, [row("a")], [], more=True)
    holder = sim.state.tasks["a"].processing_on
    assert holder is not None
    sim.finish("a")
    cmds = sim.leave(holder.address)
    assert sim.states("a") == ["processing"]
    assert len(computes(cmds)) == 1
    sim.finish("a")
    piece(sim, [row("b", ["a"])], ["b"], more=False)
    assert sim.states("b") == ["processing"]


def test_the_client_leaving_between_pieces_drops_its_graph(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    piece(sim, [row("a"), row("x")], [], more=True)
    sim.finish("a")
    sim.state.handle(ClientLeft("c"))
    assert sim.states("a", "x") == ["forgotten", "forgotten"]
    assert sim.state.clients == {}


def test_cancelling_after_the_last_piece_cancels_the_whole_graph(sim: Sim) -> None:
    sim.join("w1")
    piece(sim, [row("a")], [], more=True)
    piece(sim, [row("b", ["a"])], ["b"], more=False)
    sim.state.handle(KeysCancelled("c", ["b"]))
    assert sim.states("a", "b") == ["forgotten", "forgotten"]


def test_pieces_of_two_clients_are_kept_apart(state: SchedulerState) -> None:
    one, two = Sim(state, "one"), Sim(state, "two")
    one.join("w1")
    piece(one, [row("a")], [], more=True)
    piece(two, [row("a"), row("t")], [], more=True)
    piece(one, [row("b", ["a"])], ["b"], more=False)
    assert one.states("a", "t") == ["processing", "queued"]  # two's graph still arriving
    piece(two, [row("u", ["t"])], ["u"], more=False)
    assert state.tasks["a"].who_wants == frozenset()
    assert set(state.clients) == {"one", "two"}


def test_a_graph_in_many_pieces_completes_like_one_graph(sim: Sim) -> None:
    """A reduction tree sent 3 rows a piece, inputs first, finishes with one report."""
    sim.join("w1")
    sim.join("w2")
    rows = [row(("leaf", i)) for i in range(8)]
    rows += [row(("pair", i), [("leaf", 2 * i), ("leaf", 2 * i + 1)]) for i in range(4)]
    rows += [row(("quad", i), [("pair", 2 * i), ("pair", 2 * i + 1)]) for i in range(2)]
    rows += [row("root", [("quad", 0), ("quad", 1)])]
    reports = []
    for start in range(0, len(rows), 3):
        last = start + 3 >= len(rows)
        cmds = piece(sim, rows[start:start + 3], ["root"] if last else [], more=not last)
        # finish whatever is running, as workers would meanwhile
        while True:
            running = [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]
            if not running:
                break
            for key in running:
                cmds = sim.finish(key)
                reports += done(cmds)
    assert reports == ["root"]
    # as for a graph sent whole: inputs of a held result are released, kept as lineage
    assert {k: ts.state for k, ts in sim.state.tasks.items() if k != "root"} == dict.fromkeys(
        [r[0] for r in rows[:-1]], "released")
    assert sim.states("root") == ["memory"]


def test_an_error_report_names_the_missing_input_of_a_piece(sim: Sim) -> None:
    """Pieces must come inputs first: a row naming an input no piece had fails clearly."""
    sim.join("w1")
    piece(sim, [row("a")], [], more=True)
    cmds = piece(sim, [row("b", ["nowhere"])], ["b"], more=False)
    (report,) = of(cmds, ReportErred)
    assert "nowhere" in report.error["message"]


def test_tasks_a_piece_names_as_wanted_need_no_hold(sim: Sim) -> None:
    """A map in pieces: the client wants every task, so ending the hold costs nothing."""
    sim.join("w1")
    piece(sim, [row("a"), row("b")], ["a", "b"], more=True)
    assert sim.state.tasks["a"].who_wants == {"c"}
    assert sim.state.clients["c (graph arriving)"] == set()
    piece(sim, [row("z")], ["z"], more=False)
    assert "c (graph arriving)" not in sim.state.clients


def _tree_in_pieces(sim: Sim, leaves: int) -> list[tuple[object, ...]]:
    """A sum of ``leaves`` leaves (pairs, then a root), all but the root's piece sent
    ``more=True`` and run to the end: every leaf and pair result held for later pieces."""
    rows = [row(("leaf", i)) for i in range(leaves)]
    rows += [row(("pair", i), [("leaf", 2 * i), ("leaf", 2 * i + 1)]) for i in range(leaves // 2)]
    piece(sim, rows, [], more=True)
    while running := [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]:
        for key in running:
            sim.finish(key)
    return rows


def _resume_until_done(sim: Sim, cmds: list) -> int:
    """Feed back WorkResumed for as long as the state asks; the number of steps taken."""
    steps = 0
    while of(cmds, ContinueWork):
        assert len(of(cmds, ContinueWork)) == 1  # one request at a time
        steps += 1
        cmds = sim.state.handle(WorkResumed())
        sim.state.validate()
    return steps


def test_ending_a_large_hold_goes_in_bounded_steps_with_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes = []
    for step in (1_000_000, 4):
        monkeypatch.setattr(_client_handlers, "ENDING_STEP", step)
        sim = Sim(SchedulerState())
        sim.join("w1", nthreads=4)
        rows = _tree_in_pieces(sim, 16)  # 24 held results
        forgotten = []
        cmds = piece(sim, [row("root", [("pair", i) for i in range(8)])], ["root"], more=False)
        before = len(sim.state.tasks)
        steps = 0
        while of(cmds, ContinueWork):
            steps += 1
            cmds = sim.state.handle(WorkResumed())
            forgotten.append(before - len(sim.state.tasks))
            before = len(sim.state.tasks)
            sim.state.validate()
        assert all(n <= step for n in forgotten)  # every step bounded
        assert steps == (0 if step > 24 else 5)  # 16 leaves go in steps of 4 (pairs kept)
        sim.finish("root")
        outcomes.append({k: ts.state for k, ts in sim.state.tasks.items()})
        assert set(outcomes[-1]) == {r[0] for r in rows} | {"root"}
    assert outcomes[0] == outcomes[1]


def test_a_graph_sent_while_the_last_hold_is_ending_keeps_its_own_results(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    monkeypatch.setattr(_client_handlers, "ENDING_STEP", 2)
    sim.join("w1", nthreads=4)
    _tree_in_pieces(sim, 8)  # 12 held results: leaves no longer needed once the root comes
    cmds = piece(sim, [row("root", [("pair", i) for i in range(4)])], ["root"], more=False)
    assert of(cmds, ContinueWork)
    # the next graph, in pieces, while the first hold is still being let go of
    piece(sim, [row("a")], [], more=True)
    sim.finish("a")
    _resume_until_done(sim, cmds)
    assert sim.states("a") == ["memory"]  # still kept: its graph has not fully arrived
    cmds = piece(sim, [row("b", ["a"])], ["b"], more=False)
    assert computes(cmds) == [("w1", "b")]
    assert sim.state.clients.keys() == {"c"}


def test_a_client_leaving_with_a_large_hold_drops_it_in_steps(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    monkeypatch.setattr(_client_handlers, "ENDING_STEP", 3)
    sim.join("w1", nthreads=4)
    _tree_in_pieces(sim, 8)
    cmds = sim.state.handle(ClientLeft("c"))
    assert _resume_until_done(sim, cmds) == 3  # 12 held results, 3 per step
    assert sim.state.tasks == {}
    assert sim.state.clients == {}


def test_a_piece_resending_a_task_of_an_ending_hold_keeps_it_for_its_own_dependents(
    monkeypatch: pytest.MonkeyPatch, sim: Sim,
) -> None:
    """The same graph computed again at once (``x.compute()`` twice): its first piece
    names results the last graph's hold still keeps; the new graph must keep them too."""
    monkeypatch.setattr(_client_handlers, "ENDING_STEP", 2)
    sim.join("w1", nthreads=4)
    _tree_in_pieces(sim, 8)
    cmds = piece(sim, [row("root", [("pair", i) for i in range(4)])], ["root"], more=False)
    assert of(cmds, ContinueWork)  # the first hold is being let go of, in steps
    sim.finish("root")
    rows = [row(("leaf", i)) for i in range(8)]
    rows += [row(("pair", i), [("leaf", 2 * i), ("leaf", 2 * i + 1)]) for i in range(4)]
    piece(sim, rows, [], more=True)  # the same graph again, its first piece
    kept = [k for k in sim.state.tasks if sim.state.tasks[k].state == "memory"]
    _resume_until_done(sim, cmds)
    assert all(sim.state.tasks[k].state == "memory" for k in kept if k != "root")
    cmds = piece(sim, [row("again", [("pair", i) for i in range(4)])], ["again"], more=False)
    reports = done(cmds)
    while running := [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]:
        for key in running:
            reports += done(sim.finish(key))
    assert not of(cmds, ReportErred)
    assert reports == ["again"]
