"""A second answer for an input the worker already holds (found by the worker fuzzer,
tests/worker/test_fuzz.py): it must never drop the copy a task is about to read."""

from __future__ import annotations

from shoal.protocol._messages import Compute
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    DataStored,
    Drop,
    Execute,
    ExecuteDone,
    FetchDone,
    FetchFailed,
    KeysFreed,
    Report,
    WorkerState,
)

PAYLOAD = Serialized([b"task"])


def _compute(key: str, deps: list[tuple[str, list[str], int]]) -> ComputeAssigned:
    return ComputeAssigned(Compute(key, PAYLOAD, deps, {}, (0,), True, "p", 1))


def test_second_answer_for_a_held_input_keeps_it(ws: WorkerState) -> None:
    ws.handle(_compute("t", [("x", ["tcp://peer:1"], 8)]))
    out = ws.handle(FetchDone("tcp://peer:1", {"x": 8}, [], 1.0, 2.0))
    assert Execute("t", PAYLOAD, (0,), True, ("x",)) in out
    # The same value again (a duplicated reply, or a second fetch that raced the first):
    # "t" is queued to read "x", so the shell must keep it.
    again = ws.handle(FetchDone("tcp://peer:1", {"x": 8}, [], 3.0, 4.0))
    assert not [c for c in again if isinstance(c, Drop)]
    assert ws.held == {"x": 8}


def test_unrequested_value_is_dropped(ws: WorkerState) -> None:
    out = ws.handle(FetchDone("tcp://peer:1", {"y": 8}, [], 1.0, 2.0))
    assert Drop(["y"]) in out
    assert ws.held == {}


def test_cancelled_run_of_a_key_held_as_an_input_keeps_the_input(ws: WorkerState) -> None:
    # "x" was fetched for "t" (queued to run); the scheduler, thinking "x" lost, has it
    # computed here too and then cancels that run. Its result must not take the copy
    # "t" is about to read.
    ws.handle(_compute("t", [("x", ["tcp://peer:1"], 8)]))
    ws.handle(FetchDone("tcp://peer:1", {"x": 8}, [], 1.0, 2.0))
    ws.handle(_compute("x", []))
    ws.handle(KeysFreed(["x"]))
    out = ws.handle(ExecuteDone("x", 8, "int", 3.0, 4.0, 0, None, None))
    assert not [c for c in out if isinstance(c, Drop)]
    assert ws.held == {"x": 8}


def test_input_computed_here_while_being_fetched_runs_its_waiting_task(ws: WorkerState) -> None:
    # "t" waits for "x" from a peer. The scheduler, having lost track of "x" (its only
    # replica was reported missing by another worker), computes "x" here. The local result
    # is the input "t" waits for: "t" runs now, and the fetch's late answer changes nothing.
    ws.handle(_compute("t", [("x", ["tcp://peer:1"], 8)]))
    assert ws.in_flight == {"x": "tcp://peer:1"}
    ws.handle(_compute("x", []))
    out = ws.handle(ExecuteDone("x", 8, "int", 3.0, 4.0, 0, None, None))
    assert Execute("t", PAYLOAD, (0,), True, ("x",)) in out
    ws.validate()
    late = ws.handle(FetchDone("tcp://peer:1", {"x": 8}, [], 5.0, 6.0))
    assert not [c for c in late if isinstance(c, (Drop, Execute))]
    assert ws.held == {"x": 8}


def test_input_scattered_here_while_being_fetched_runs_its_waiting_task(ws: WorkerState) -> None:
    ws.handle(_compute("t", [("x", ["tcp://peer:1"], 8)]))
    out = ws.handle(DataStored("x", 8))
    assert Execute("t", PAYLOAD, (0,), True, ("x",)) in out
    ws.validate()
    failed = ws.handle(FetchFailed("tcp://peer:1", ["x"]))
    assert not [c for c in failed if isinstance(c, (Drop, Execute, Report))]
    assert ws.held == {"x": 8}


def test_fetched_copy_is_not_dropped_while_a_run_of_that_key_is_queued(ws: WorkerState) -> None:
    # "x" was fetched for "t"; the scheduler, thinking "x" lost, has it computed here too.
    # When "t" ends, the fetched copy is no longer needed, but the executor may already
    # have written the new run's result into the same slot of the data store: a Drop now
    # would delete the result the scheduler is about to be told this worker holds.
    ws.handle(_compute("t", [("x", ["tcp://peer:1"], 8)]))
    ws.handle(FetchDone("tcp://peer:1", {"x": 8}, [], 1.0, 2.0))
    assert ws.handle(_compute("x", [])) == [Execute("x", PAYLOAD, (0,), True, ())]
    out = ws.handle(ExecuteDone("t", 8, "int", 3.0, 4.0, 0, None, None))
    assert Drop(["x"]) not in out
    ws.handle(ExecuteDone("x", 8, "int", 3.0, 4.0, 0, None, None))
    assert ws.held == {"t": 8, "x": 8}
