"""A copy the scheduler's Active Memory Manager drops (a ``free-keys`` for a key held here)
against tasks here that need it: the worker keeps a copy a local task reads until that task
ends, and a task sent after the drop fetches the key from the holders it is given."""

from __future__ import annotations

from shoal.protocol._messages import Compute
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    CopiesStored,
    Drop,
    Execute,
    ExecuteDone,
    Fetch,
    FetchDone,
    KeysFreed,
    WorkerState,
)


def _compute(key: str, dep: str, holders: list[str], run: int = 1) -> ComputeAssigned:
    return ComputeAssigned(Compute(key, Serialized([b"task"]), [(dep, holders, 10)], {}, (0,),
                                   True, key, run))


def test_a_dropped_copy_that_a_running_task_reads_is_kept_until_it_ends(ws: WorkerState) -> None:
    ws.handle(CopiesStored({"a": 10}))
    assert [type(c) for c in ws.handle(_compute("t", "a", ["tcp://other:1"]))] == [Execute]
    # The AMM's drop crosses the task: nothing is dropped while t may still read it.
    assert ws.handle(KeysFreed(["a"])) == []
    assert "a" in ws.held
    done = ws.handle(ExecuteDone("t", 8, "int", 0.0, 1.0, 0, None, None))
    assert Drop(["a"]) in done
    assert "a" not in ws.held
    ws.validate()


def test_a_task_sent_after_the_drop_fetches_the_key_from_the_other_holder(ws: WorkerState) -> None:
    ws.handle(CopiesStored({"a": 10}))
    assert ws.handle(KeysFreed(["a"])) == [Drop(["a"])]
    cmds = ws.handle(_compute("t", "a", ["tcp://other:1"]))
    assert [type(c) for c in cmds] == [Fetch]
    assert cmds[0].peer == "tcp://other:1"
    cmds = ws.handle(FetchDone("tcp://other:1", {"a": 10}, [], 0.0, 1.0))
    assert any(isinstance(c, Execute) for c in cmds)
    ws.validate()
