"""A fetch of a key answered while a run of that same key is under way here: the fetched
copy and the run's result share one slot of the worker's store, so the copy nobody needs
must not be dropped from it (the drop could delete the run's result, already written).
Found by the cluster fuzzer (seed 198926, hostile): a key scattered, fetched for a task
that was then freed, and computed here under the same key while the fetch was in flight;
the worker reported the result, then held nothing."""

from __future__ import annotations

from shoal.protocol._messages import TaskDone, Transfer
from shoal.worker._state import (
    Drop,
    Execute,
    ExecuteDone,
    FetchDone,
    KeysFreed,
    Report,
    WorkerState,
)

from .test_state import PAYLOAD, compute

PEER = "tcp://peer:1"
ERROR = {"kind": "exception", "type": "builtins.ValueError", "message": "no", "key": "s"}


def fetching_s_then_running_it(ws: WorkerState) -> None:
    ws.handle(compute("y", deps=[("s", [PEER], 100)]))
    assert "s" in ws.in_flight
    ws.handle(KeysFreed(["y"]))  # the fetch of s goes on, wanted by nobody
    assert ws.handle(compute("s", run=4)) == [Execute("s", PAYLOAD, (0,), True, ())]


def test_a_copy_fetched_while_its_key_runs_here_is_not_dropped(ws: WorkerState) -> None:
    fetching_s_then_running_it(ws)
    out = ws.handle(FetchDone(PEER, {"s": 100}, [], 5.0, 6.0))
    assert Drop(["s"]) not in out
    assert Report(Transfer(["s"], PEER, 100, 5.0, 6.0)) in out
    out = ws.handle(ExecuteDone("s", 8, "int", 1.0, 2.0, 3, None, None))
    assert out == [Report(TaskDone("s", 8, "int", 1.0, 2.0, 3, None, 4))]
    assert ws.held == {"s": 8}


def test_the_copy_goes_when_the_run_beside_it_fails(ws: WorkerState) -> None:
    fetching_s_then_running_it(ws)
    ws.handle(FetchDone(PEER, {"s": 100}, [], 5.0, 6.0))
    out = ws.handle(ExecuteDone("s", 0, "", 1.0, 2.0, 3, None, ERROR))
    assert out[0] == Drop(["s"])  # the copy left in the slot goes with the failed run
    assert "s" not in ws.held


def test_a_copy_nobody_needs_is_dropped_when_no_run_of_its_key_is_here(
    ws: WorkerState,
) -> None:
    ws.handle(compute("y", deps=[("s", [PEER], 100)]))
    ws.handle(KeysFreed(["y"]))
    assert Drop(["s"]) in ws.handle(FetchDone(PEER, {"s": 100}, [], 5.0, 6.0))
