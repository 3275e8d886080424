"""Copies made for replicate/rebalance (``CopiesStored``) in the pure worker state."""

from __future__ import annotations

from shoal.protocol._messages import Compute
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    CopiesStored,
    Drop,
    Execute,
    KeysFreed,
    WorkerState,
)


def test_copies_are_held_without_acknowledging_a_scatter(ws: WorkerState) -> None:
    # A scatter acknowledgement would make the scheduler free a copy it does not list yet.
    assert ws.handle(CopiesStored({"a": 10, "b": 20})) == []
    assert ws.held == {"a": 10, "b": 20}
    assert ws.managed_bytes == 30


def test_copies_stay_until_the_scheduler_frees_them(ws: WorkerState) -> None:
    ws.handle(CopiesStored({"a": 10}))
    assert ws.handle(KeysFreed(["a"])) == [Drop(["a"])]
    assert ws.held == {}


def test_a_copy_serves_as_a_local_input(ws: WorkerState) -> None:
    ws.handle(CopiesStored({"a": 10}))
    msg = Compute("t", Serialized([b"task"]), [("a", ["tcp://other:1"], 10)], {}, (0,), True, "t", 1)
    cmds = ws.handle(ComputeAssigned(msg))
    assert [type(c) for c in cmds] == [Execute]


def test_a_copy_arriving_while_a_task_fetches_the_same_key_serves_the_task(
        ws: WorkerState) -> None:
    # replicate (or a retirement, or the AMM's test of it) copies a key here while a local
    # task is fetching it from a peer: the task takes the copy, the fetch is forgotten.
    msg = Compute("t", Serialized([b"task"]), [("a", ["tcp://other:1"], 10)], {}, (0,), True,
                  "t", 1)
    assert [type(c).__name__ for c in ws.handle(ComputeAssigned(msg))] == ["Fetch"]
    cmds = ws.handle(CopiesStored({"a": 10}))
    assert [type(c) for c in cmds] == [Execute]
    assert "a" not in ws.in_flight
    ws.validate()
