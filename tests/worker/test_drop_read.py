"""Inputs a task reads last (``Compute.drop``): the worker drops them as the task succeeds
and says so in its ``TaskDone``, instead of holding them until the scheduler's free; never
while anything here may still read them."""

from __future__ import annotations

from typing import Any

from shoal.protocol._messages import Compute, TaskDone, TaskErred
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    Drop,
    Execute,
    ExecuteDone,
    KeysFreed,
    Report,
    WorkerState,
)

ME = "tcp://me:1"
PAYLOAD = Serialized([b"task"])
ERROR = {"kind": "exception", "type": "builtins.ZeroDivisionError", "message": "boom", "key": "b"}


def compute(key: Any, deps: tuple[Any, ...] = (), drop: tuple[Any, ...] = (), run: int = 1,
            holders: tuple[str, ...] = (ME,)) -> ComputeAssigned:
    rows = [(d, list(holders), 8) for d in deps]
    return ComputeAssigned(Compute(key, PAYLOAD, rows, {}, (0,), False, "p", run, drop))


def done(key: Any, error: dict[str, Any] | None = None) -> ExecuteDone:
    return ExecuteDone(key, 8, "int", 1.0, 2.0, 3, None, error)


def holding(ws: WorkerState, *keys: Any) -> None:
    """``ws`` computed ``keys`` (the scheduler knows it holds them)."""
    for key in keys:
        ws.handle(compute(key))
        ws.handle(done(key))


def task_done(cmds: list[Any]) -> TaskDone:
    (msg,) = [c.msg for c in cmds if isinstance(c, Report) and isinstance(c.msg, TaskDone)]
    return msg


def test_input_read_last_is_dropped_as_the_task_succeeds(ws: WorkerState) -> None:
    holding(ws, "a")
    ws.handle(compute("b", ("a",), drop=("a",), run=7))
    out = ws.handle(done("b"))
    assert Drop(["a"]) in out
    assert out.index(Drop(["a"])) < out.index(Report(task_done(out)))  # gone before it says so
    assert task_done(out).dropped == ("a",)
    assert task_done(out).run == 7
    assert "a" not in ws.held and "a" not in ws.assigned
    assert "b" in ws.held


def test_input_is_kept_when_the_task_fails(ws: WorkerState) -> None:
    # A failure keeps its inputs on the scheduler (retries, replaying the error).
    holding(ws, "a")
    ws.handle(compute("b", ("a",), drop=("a",)))
    out = ws.handle(done("b", error=ERROR))
    assert [c for c in out if isinstance(c, Drop)] == []
    assert isinstance(out[0].msg, TaskErred)
    assert "a" in ws.held and "a" in ws.assigned


def test_input_another_local_task_still_reads_is_kept(ws: WorkerState) -> None:
    # "c" was assigned here after "b" (the scheduler's view changed): it pins "a".
    holding(ws, "a")
    ws.handle(compute("b", ("a",), drop=("a",)))
    ws.handle(compute("c", ("a",)))
    out = ws.handle(done("b"))
    assert [c for c in out if isinstance(c, Drop)] == []
    assert task_done(out).dropped == ()
    assert "a" in ws.held
    ws.handle(done("c"))
    assert "a" in ws.held  # without a drop of its own, "a" waits for the scheduler's free


def test_task_freed_while_running_drops_nothing(ws: WorkerState) -> None:
    # Stolen or released while it ran: another worker may be about to fetch "a" from here.
    holding(ws, "a")
    ws.handle(compute("b", ("a",), drop=("a",)))
    ws.handle(KeysFreed(["b"]))
    out = ws.handle(done("b"))
    assert out == [Drop(["b"])]
    assert "a" in ws.held and "a" in ws.assigned


def test_task_assigned_again_drops_what_the_latest_assignment_says(ws: WorkerState) -> None:
    holding(ws, "a")
    ws.handle(compute("b", ("a",), drop=("a",), run=1))
    ws.handle(KeysFreed(["b"]))
    ws.handle(compute("b", ("a",), drop=(), run=2))  # revived: "a" is wanted meanwhile
    out = ws.handle(done("b"))
    assert task_done(out).dropped == () and task_done(out).run == 2
    assert "a" in ws.held


def test_fetched_input_is_dropped_as_before_and_not_reported(ws: WorkerState) -> None:
    # A fetched copy is never the scheduler's replica: it goes when unused, as always.
    from shoal.worker._state import FetchDone

    out = ws.handle(compute("b", ("a",), drop=("a",), holders=("tcp://peer:1",)))
    assert not [c for c in out if isinstance(c, Execute)]
    ws.handle(FetchDone("tcp://peer:1", {"a": 8}, [], 5.0, 6.0))
    out = ws.handle(done("b"))
    assert Drop(["a"]) in out
    assert task_done(out).dropped == ()
    assert "a" not in ws.held


def test_input_freed_by_the_scheduler_first_is_not_reported_dropped(ws: WorkerState) -> None:
    holding(ws, "a")
    ws.handle(compute("b", ("a",), drop=("a",)))
    ws.handle(KeysFreed(["a"]))  # pinned by "b" until it ends
    out = ws.handle(done("b"))
    assert Drop(["a"]) in out
    assert task_done(out).dropped == ()  # the scheduler already let it go
    assert "a" not in ws.held
