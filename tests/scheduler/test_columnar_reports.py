"""A worker's results as columns (``TasksFinished``, from one ``TasksDone`` message) are
handled exactly as the same ``TaskFinished`` events one after the other: same commands in
the same order, same states, same story; a row that raises does not stop the others."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.scheduler._events import (
    Command,
    ReportDone,
    SendCompute,
    SendFree,
    TaskFinished,
    TasksFinished,
)
from shoal.scheduler._state import EventsFailed, SchedulerState

from ._sim import Sim, of, row


def columns(worker: str, rows: list[TaskFinished]) -> TasksFinished:
    """``rows`` (all of ``worker``) as one columnar event, columns as tuples (as decoded)."""
    assert all(r.worker == worker for r in rows)
    cols = zip(*[(r.key, r.nbytes, r.typename, r.start, r.stop, r.thread, r.inline, r.run,
                  r.dropped, r.pickled_type) for r in rows], strict=True)
    return TasksFinished(worker, *map(tuple, cols))


def graph() -> list[tuple[Any, ...]]:
    """A map, a reduction over part of it (inputs read last: dropped by their worker), and a
    second level."""
    rows = [row(f"a{i}") for i in range(12)]
    rows += [row("b0", ["a0", "a1"]), row("b1", ["a2", "a3", "a4"]), row("c", ["b0", "b1"])]
    return rows


def reports(sim: Sim, sent: dict[Any, SendCompute], stale: bool) -> dict[str, list[TaskFinished]]:
    """What each worker reports for the tasks it runs now (by key), each echoing its run and
    the inputs its compute said to drop; with ``stale``, a late report of an earlier run and
    one of a key the scheduler never had come first."""
    out: dict[str, list[TaskFinished]] = {}
    for key in sorted(k for k, ts in sim.state.tasks.items() if ts.state == "processing"):
        ts = sim.state.tasks[key]
        assert ts.processing_on is not None
        w = ts.processing_on.address
        rows = out.setdefault(w, [])
        if stale and not rows:
            rows.append(TaskFinished(w, key, 8, "int", 0.0, 0.001, 0, None, ts.run - 1))
            rows.append(TaskFinished(w, "never-known", 8, "int", 0.0, 0.001, 0, None, 1))
        rows.append(TaskFinished(w, key, 8 + len(str(key)), "int", sim.now, sim.now + 0.002, 0,
                                 None, ts.run, sent[key].drop))
    return out


def test_results_as_columns_end_as_one_event_each() -> None:
    one, many = Sim(SchedulerState()), Sim(SchedulerState())
    sent: dict[Any, SendCompute] = {}
    for sim in (one, many):
        sim.join("w1", nthreads=2)
        sim.join("w2")
        for cmd in of(sim.submit(graph(), wanted=["c", "a5", "a7"]), SendCompute):
            sent[cmd.key] = cmd
    rounds = 0
    while one.state.tasks["c"].state != "memory":
        rounds += 1
        assert rounds < 50, "the graph did not finish"
        by_worker = reports(one, sent, stale=rounds == 2)
        assert by_worker == reports(many, sent, stale=rounds == 2)
        for w, rows in by_worker.items():
            batch = columns(w, rows)  # first: the handler of ``dropped`` clears it
            out_one = one.state.handle(*rows)
            out_many = many.state.handle(batch)
            assert out_one == out_many
            for cmd in of(out_one, SendCompute):
                sent[cmd.key] = cmd
    assert any(cmd.drop for cmd in sent.values())  # the dropping path was taken
    assert {k: ts.state for k, ts in one.state.tasks.items()} == {
        k: ts.state for k, ts in many.state.tasks.items()}
    assert one.state._log == many.state._log  # same story, same causes ("TaskFinished")
    assert one.state.completed_total == many.state.completed_total == 10  # c, b*, a0-5, a7
    one.state.validate()
    many.state.validate()


def test_a_row_that_raises_does_not_stop_the_rows_after_it(sim: Sim) -> None:
    sim.join("w1", nthreads=4)
    sim.submit([row(k) for k in ("a", "b", "c")])
    runs = {k: sim.run_of(k) for k in "abc"}
    event = columns("w1", [
        TaskFinished("w1", "a", 8, "int", 0.0, 0.001, 0, None, runs["a"]),
        TaskFinished("w1", ["unhashable"], 8, "int", 0.0, 0.001, 0, None, 1),
        TaskFinished("w1", "b", 8, "int", 0.0, 0.001, 0, None, runs["b"]),
    ])
    with pytest.raises(EventsFailed) as failed:
        sim.state.handle(event)
    assert isinstance(failed.value.failures[0][1], TypeError)
    done: list[Command] = of(failed.value.commands, ReportDone)
    assert [c.key for c in done] == ["a", "b"]
    assert sim.states("a", "b", "c") == ["memory", "memory", "processing"]


def test_every_row_that_raises_is_reported_not_only_the_first(sim: Sim) -> None:
    sim.join("w1", nthreads=4)
    sim.submit([row("a")])
    event = columns("w1", [
        TaskFinished("w1", ["unhashable"], 8, "int", 0.0, 0.001, 0, None, 1),
        TaskFinished("w1", "a", 8, "int", 0.0, 0.001, 0, None, sim.run_of("a")),
        TaskFinished("w1", {"also": "unhashable"}, 8, "int", 0.0, 0.001, 0, None, 1),
    ])
    with pytest.raises(EventsFailed) as failed:
        sim.state.handle(event)
    first = failed.value.failures[0][1]
    assert isinstance(first, TypeError)
    assert any("{'also': 'unhashable'}" in note for note in first.__notes__)
    assert sim.states("a") == ["memory"]


def test_rows_of_a_worker_not_running_them_are_freed_there(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")])
    ts = sim.state.tasks["a"]
    assert ts.processing_on is not None
    other = "w2" if ts.processing_on.address == "w1" else "w1"
    out = sim.state.handle(columns(other, [
        TaskFinished(other, "a", 8, "int", 0.0, 0.001, 0, None, ts.run),
        TaskFinished(other, "gone", 8, "int", 0.0, 0.001, 0, None, 3),
    ]))
    assert of(out, SendFree) == [SendFree(other, ["a"]), SendFree(other, ["gone"])]
    assert sim.states("a") == ["processing"]


def test_columns_read_back_as_the_events_they_stand_for() -> None:
    rows = [TaskFinished("w1", "a", 8, "int", 0.0, 1.0, 2, None, 3, ("x",)),
            TaskFinished("w1", ("b", 0), 9, "str", 1.0, 2.0, 2, None, 4)]
    assert columns("w1", rows).rows() == rows
