"""A worker's story (dask's ``Worker.story``): a bounded ring of what happened to each
key, read back in dask's worker rows ``(key, start, finish, final, recommendations,
stimulus_id, time)``."""

from __future__ import annotations

from shoal.protocol._messages import Compute
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    ExecuteDone,
    FetchDone,
    KeysFreed,
    WorkerState,
)

PAYLOAD = Serialized([b"task"])


def compute(key: str, deps: list[tuple[str, list[str], int]] | None = None) -> ComputeAssigned:
    return ComputeAssigned(Compute(key, PAYLOAD, deps or [], {}, (0,), True, "p", 1))


def test_a_tasks_life_reads_back_in_dasks_rows() -> None:
    ws = WorkerState("tcp://me:1")
    ws.handle(compute("t"), now=10.0)
    ws.handle(ExecuteDone("t", 8, "int", 10.0, 11.0, 0, None, None), now=11.0)
    ws.handle(KeysFreed(["t"]), now=12.0)
    assert ws.story("t") == [
        ("t", "released", "executing", "executing", {}, "compute-task-10.0", 10.0),
        ("t", "executing", "memory", "memory", {}, "task-finished-11.0", 11.0),
        ("t", "memory", "released", "released", {}, "free-keys-12.0", 12.0),
    ]
    # a stimulus id gives what that stimulus did, as dask's worker_story does
    assert ws.story("task-finished-11.0") == [ws.story("t")[1]]
    assert ws.story("other") == []
    ws.validate()


def test_inputs_fetched_and_failures_are_told() -> None:
    ws = WorkerState("tcp://me:1")
    ws.handle(compute("b", [("a", ["tcp://peer:1"], 8)]), now=1.0)
    ws.handle(FetchDone("tcp://peer:1", {"a": 8}, [], 1.0, 2.0), now=2.0)
    error = {"kind": "exception", "type": "builtins.ValueError", "message": "x", "key": "b"}
    ws.handle(ExecuteDone("b", 0, "", 2.0, 3.0, 0, None, error), now=3.0)
    assert [r[:3] for r in ws.story("a", "b")] == [
        ("b", "released", "waiting"),
        ("a", "flight", "memory"),
        ("b", "waiting", "executing"),
        ("b", "executing", "error"),
    ]
    ws.validate()


def test_the_story_keeps_the_newest_rows_only() -> None:
    ws = WorkerState("tcp://me:1", log_length=2)
    for i in range(3):
        ws.handle(compute(f"t{i}"), now=float(i))
    assert [r[0] for r in ws.log] == ["t1", "t2"]
    ws.set_log_length(1)  # the configured length, once read: the newest rows stay
    assert [r[0] for r in ws.log] == ["t2"]
