"""Scenario tests of the pure worker state: feed events, assert the exact commands."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.protocol._messages import (
    Compute,
    MissingData,
    ScatterStored,
    TaskDone,
    TaskErred,
    Transfer,
)
from shoal.protocol._serialize import Serialized
from shoal.worker._state import (
    ComputeAssigned,
    DataStored,
    Drop,
    Execute,
    ExecuteDone,
    Fetch,
    FetchDone,
    FetchFailed,
    KeysFreed,
    Report,
    StoreFailed,
    WorkerState,
)

ME = "tcp://me:1"
PAYLOAD = Serialized([b"task"])
ERROR = {"kind": "exception", "type": "builtins.ZeroDivisionError", "message": "boom", "key": "t"}


def compute(key: Any, deps: list[tuple[Any, list[str], int]] | None = None,
            priority: Any = (0,), send_inline: bool = True, run: int = 1) -> ComputeAssigned:
    return ComputeAssigned(Compute(key, PAYLOAD, deps or [], {}, priority, send_inline, "p", run))


def execute(key: Any, deps: tuple[Any, ...] = (), priority: Any = (0,)) -> Execute:
    return Execute(key, PAYLOAD, priority, True, deps)


def done(key: Any, nbytes: int = 8, error: dict[str, Any] | None = None) -> ExecuteDone:
    return ExecuteDone(key, nbytes, "int", 1.0, 2.0, 3, None, error)


def report_done(key: Any, nbytes: int = 8, run: int = 1) -> Report:
    return Report(TaskDone(key, nbytes, "int", 1.0, 2.0, 3, None, run))


def fetched(peer: str, got: dict[Any, int], missing: list[Any] | None = None) -> FetchDone:
    return FetchDone(peer, got, missing or [], 5.0, 6.0)


# --- running ------------------------------------------------------------------------------


def test_task_without_inputs_executes_at_once(ws: WorkerState) -> None:
    out = ws.handle(compute("t", priority=(3, 1), send_inline=False))
    assert out == [Execute("t", PAYLOAD, (3, 1), False, ())]


def test_result_is_held_and_reported(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    assert ws.handle(done("t", nbytes=100)) == [report_done("t", 100)]
    assert ws.held == {"t": 100}
    assert ws.managed_bytes == 100
    assert ws.tasks == {}


def test_inline_result_rides_along(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    inline = Serialized([b"42"])
    out = ws.handle(ExecuteDone("t", 2, "int", 1.0, 2.0, 0, inline, None))
    assert out == [Report(TaskDone("t", 2, "int", 1.0, 2.0, 0, inline, 1))]


def test_local_inputs_execute_without_fetching(ws: WorkerState) -> None:
    ws.handle(compute("a"))
    ws.handle(done("a"))
    ws.handle(DataStored("x", 50))
    out = ws.handle(compute("b", [("a", [ME], 8), ("x", [ME], 50)]))
    assert out == [execute("b", ("a", "x"))]


def test_execute_done_with_error_reports_task_erred(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    out = ws.handle(done("t", error=ERROR))
    assert out == [Report(TaskErred("t", ERROR, 1.0, 2.0, 3, 1))]
    assert "t" not in ws.held and ws.tasks == {}


def test_compute_for_a_result_already_held_reports_it_again_for_the_new_run(
    ws: WorkerState,
) -> None:
    ws.handle(compute("t", run=1))
    ws.handle(done("t", nbytes=7))
    out = ws.handle(compute("t", run=2))
    assert out == [Report(TaskDone("t", 7, "", 0.0, 0.0, -1, None, 2))]


def test_duplicate_compute_is_ignored(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    assert ws.handle(compute("t")) == []


# --- run ids: every report answers the latest assignment of its key ------------------------


def test_reports_echo_the_run_id_of_their_compute(ws: WorkerState) -> None:
    ws.handle(compute("a", run=41), compute("b", run=42))
    assert ws.handle(done("a")) == [report_done("a", run=41)]
    assert ws.handle(done("b", error=ERROR)) == [Report(TaskErred("b", ERROR, 1.0, 2.0, 3, 42))]


def test_task_freed_while_executing_then_assigned_again_resumes_under_the_new_run(
    ws: WorkerState,
) -> None:
    # dask's cancelled -> resumed: the thread already runs it, so it is not run twice; its
    # result answers the new assignment (the scheduler ignores reports of the old one).
    ws.handle(compute("t", run=1))
    ws.handle(KeysFreed(["t"]))
    assert ws.tasks["t"].state == "cancelled"
    assert ws.handle(compute("t", run=2)) == []  # no second Execute
    assert ws.handle(done("t", nbytes=5)) == [report_done("t", 5, run=2)]
    assert ws.held == {"t": 5}


def test_failure_of_a_resumed_run_answers_the_new_run(ws: WorkerState) -> None:
    ws.handle(compute("t", run=1))
    ws.handle(KeysFreed(["t"]))
    ws.handle(compute("t", run=2))
    assert ws.handle(done("t", error=ERROR)) == [Report(TaskErred("t", ERROR, 1.0, 2.0, 3, 2))]


def test_waiting_task_assigned_again_answers_the_new_run(ws: WorkerState) -> None:
    ws.handle(compute("t", [("x", ["tcp://peer:1"], 8)], run=1))
    assert ws.handle(compute("t", [("x", ["tcp://peer:1"], 8)], run=2)) == []  # one fetch
    out = ws.handle(fetched("tcp://peer:1", {"x": 8}))
    assert execute("t", ("x",)) in out
    assert report_done("t", run=2) in ws.handle(done("t"))


def test_task_freed_and_run_to_its_end_is_computed_afresh_for_the_next_run(
    ws: WorkerState,
) -> None:
    ws.handle(compute("t", run=1))
    ws.handle(KeysFreed(["t"]))
    assert ws.handle(done("t")) == [Drop(["t"])]  # the freed run's result goes
    assert ws.handle(compute("t", run=2)) == [execute("t")]
    assert ws.handle(done("t")) == [report_done("t", run=2)]


def test_unknown_event_is_a_type_error(ws: WorkerState) -> None:
    with pytest.raises(TypeError, match="unknown event"):
        ws.handle("not an event")  # type: ignore[arg-type]


def test_late_result_for_unknown_task_is_ignored(ws: WorkerState) -> None:
    assert ws.handle(done("ghost")) == []


# --- fetching -----------------------------------------------------------------------------


def test_missing_inputs_are_fetched_grouped_by_peer(ws: WorkerState) -> None:
    out = ws.handle(compute("t", [("a", ["p1"], 1), ("b", ["p1", "p2"], 1), ("c", ["p2"], 1)]))
    assert out == [Fetch("p1", ["a", "b"]), Fetch("p2", ["c"])]
    assert ws.in_flight == {"a": "p1", "b": "p1", "c": "p2"}


def test_fetch_done_runs_the_task_and_reports_transfer(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 10), ("b", ["p1"], 20)]))
    out = ws.handle(fetched("p1", {"a": 10, "b": 20}))
    assert out == [
        execute("t", ("a", "b")),
        Report(Transfer(["a", "b"], "p1", 30, 5.0, 6.0)),
    ]
    assert ws.held == {"a": 10, "b": 20}


def test_task_waits_for_all_of_its_fetches(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 1), ("b", ["p2"], 1)]))
    out = ws.handle(fetched("p1", {"a": 1}))
    assert out == [Report(Transfer(["a"], "p1", 1, 5.0, 6.0))]
    out = ws.handle(fetched("p2", {"b": 1}))
    assert out[0] == execute("t", ("a", "b"))


def test_input_shared_by_two_tasks_is_fetched_once(ws: WorkerState) -> None:
    assert ws.handle(compute("t1", [("a", ["p1"], 1)])) == [Fetch("p1", ["a"])]
    assert ws.handle(compute("t2", [("a", ["p1"], 1)])) == []
    out = ws.handle(fetched("p1", {"a": 1}))
    assert sorted(c.key for c in out if isinstance(c, Execute)) == ["t1", "t2"]


def test_peer_missing_data_tries_the_next_holder(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1", "p2"], 1)]))
    out = ws.handle(fetched("p1", {}, missing=["a"]))
    assert out == [Report(MissingData("a", "p1", "t")), Fetch("p2", ["a"])]
    out = ws.handle(fetched("p2", {"a": 1}))
    assert out[0] == execute("t", ("a",))


def test_no_holder_left_reports_missing_data_and_drops_the_task(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 1)]))
    out = ws.handle(fetched("p1", {}, missing=["a"]))
    assert out == [Report(MissingData("a", "p1", "t")), Report(MissingData("a", "", "t"))]
    assert ws.tasks == {} and ws.waiters == {} and ws.in_flight == {}
    # the scheduler sends the task again once the input exists somewhere
    assert ws.handle(compute("t", [("a", ["p3"], 1)])) == [Fetch("p3", ["a"])]


def test_input_without_any_holder_is_reported_at_once(ws: WorkerState) -> None:
    out = ws.handle(compute("t", [("a", [], 1)]))
    assert out == [Report(MissingData("a", "", "t"))]
    assert ws.tasks == {}


def test_giving_up_on_one_input_forgets_the_others(ws: WorkerState) -> None:
    out = ws.handle(compute("t", [("a", ["p1"], 1), ("b", ["p2"], 1)]))
    assert out == [Fetch("p1", ["a"]), Fetch("p2", ["b"])]
    ws.handle(fetched("p1", {}, missing=["a"]))
    assert ws.tasks == {}
    # b still arrives, but nobody needs it any more
    assert ws.handle(fetched("p2", {"b": 1})) == [
        Drop(["b"]),
        Report(Transfer(["b"], "p2", 1, 5.0, 6.0)),
    ]
    assert ws.held == {}


def test_fetch_failed_marks_peer_bad_and_tries_the_next(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1", "p2"], 1), ("b", ["p1", "p3"], 1)]))
    out = ws.handle(FetchFailed("p1", ["a", "b"]))
    assert out == [
        Report(MissingData("a", "p1", "t")),
        Report(MissingData("b", "p1", "t")),
        Fetch("p2", ["a"]),
        Fetch("p3", ["b"]),
    ]
    assert "p1" in ws.bad_peers


def test_bad_peer_is_skipped_for_other_inputs(ws: WorkerState) -> None:
    ws.handle(compute("t1", [("a", ["p1", "p2"], 1)]))
    ws.handle(FetchFailed("p1", ["a"]))
    out = ws.handle(compute("t2", [("b", ["p1", "p2"], 1)]))
    assert out == [Fetch("p2", ["b"])]


def test_holder_listed_again_by_scheduler_is_not_given_up_silently(ws: WorkerState) -> None:
    """After one failed fetch from p1, a new task whose input only p1 holds must either
    fetch it from p1 or tell the scheduler that p1 is the holder that failed: reporting
    MissingData with no holder leaves the scheduler's records unchanged, so it sends the
    task straight back here (a livelock)."""
    ws.handle(compute("t1", [("a", ["p1", "p2"], 1)]))
    ws.handle(FetchFailed("p1", ["a"]))
    out = ws.handle(compute("t2", [("b", ["p1"], 1)]))
    assert Fetch("p1", ["b"]) in out or Report(MissingData("b", "p1", "t2")) in out, out


# --- freeing ------------------------------------------------------------------------------


def test_freeing_a_held_result_drops_it(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    ws.handle(done("t"))
    assert ws.handle(KeysFreed(["t"])) == [Drop(["t"])]
    assert ws.held == {}


def test_freeing_unknown_keys_does_nothing(ws: WorkerState) -> None:
    assert ws.handle(KeysFreed(["nope"])) == []


def test_freed_while_executing_result_is_dropped(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    assert ws.handle(KeysFreed(["t"])) == []
    assert ws.handle(done("t")) == [Drop(["t"])]
    assert ws.held == {} and ws.tasks == {}


def test_freed_while_executing_and_failing_reports_nothing(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    ws.handle(KeysFreed(["t"]))
    assert ws.handle(done("t", error=ERROR)) == []


def test_freed_then_assigned_again_while_executing_keeps_result(ws: WorkerState) -> None:
    ws.handle(compute("t"))
    ws.handle(KeysFreed(["t"]))
    assert ws.handle(compute("t")) == []  # still running: no second Execute
    assert ws.handle(done("t")) == [report_done("t")]


def test_freeing_a_waiting_task_drops_its_input_on_arrival(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 1)]))
    assert ws.handle(KeysFreed(["t"])) == []
    assert ws.tasks == {} and "a" not in ws.waiters
    out = ws.handle(fetched("p1", {"a": 1}))
    assert out[0] == Drop(["a"])
    assert ws.held == {}


def test_fetched_input_dropped_after_its_last_local_user(ws: WorkerState) -> None:
    ws.handle(compute("t1", [("a", ["p1"], 4)]))
    ws.handle(compute("t2", [("a", ["p1"], 4)]))
    ws.handle(fetched("p1", {"a": 4}))
    assert ws.handle(done("t1")) == [report_done("t1")]
    assert "a" in ws.held
    assert ws.handle(done("t2")) == [Drop(["a"]), report_done("t2")]
    assert set(ws.held) == {"t1", "t2"}
    assert ws.users == {}


def test_fetched_input_dropped_after_its_user_fails(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 4)]))
    ws.handle(fetched("p1", {"a": 4}))
    assert ws.handle(done("t", error=ERROR)) == [
        Drop(["a"]),
        Report(TaskErred("t", ERROR, 1.0, 2.0, 3, 1)),
    ]
    assert ws.held == {}


def test_fetched_input_kept_for_a_later_local_user(ws: WorkerState) -> None:
    ws.handle(compute("t1", [("a", ["p1"], 4)]))
    ws.handle(fetched("p1", {"a": 4}))
    # t2 arrives while t1 still runs: a is local already
    assert ws.handle(compute("t2", [("a", ["p1"], 4)])) == [execute("t2", ("a",))]
    ws.handle(done("t1"))
    assert "a" in ws.held
    assert ws.handle(done("t2")) == [Drop(["a"]), report_done("t2")]


def test_own_results_are_not_dropped_after_local_use(ws: WorkerState) -> None:
    ws.handle(compute("a"))
    ws.handle(done("a"))
    ws.handle(compute("b", [("a", [ME], 8)]))
    assert ws.handle(done("b")) == [report_done("b")]
    assert set(ws.held) == {"a", "b"}


def test_scattered_data_is_held_until_freed(ws: WorkerState) -> None:
    assert ws.handle(DataStored("x", 1000)) == [Report(ScatterStored("x", None))]
    ws.handle(compute("t", [("x", [ME], 1000)]))
    ws.handle(done("t"))
    assert "x" in ws.held
    assert ws.handle(KeysFreed(["x"])) == [Drop(["x"])]


def test_scattered_data_that_cannot_be_loaded_is_reported(ws: WorkerState) -> None:
    error = {"kind": "error", "message": "no module named 'mine'"}
    assert ws.handle(StoreFailed("x", error)) == [Report(ScatterStored("x", error))]
    assert "x" not in ws.held


def test_freeing_a_task_does_not_drop_inputs_another_task_uses(ws: WorkerState) -> None:
    ws.handle(compute("t1", [("a", ["p1"], 4)]))
    ws.handle(compute("t2", [("a", ["p1"], 4)]))
    ws.handle(KeysFreed(["t1"]))
    out = ws.handle(fetched("p1", {"a": 4}))
    assert [c for c in out if isinstance(c, Execute)] == [execute("t2", ("a",))]
    assert [c for c in out if isinstance(c, Drop)] == []


def test_an_input_that_cannot_be_sent_fails_the_tasks_needing_it(ws: WorkerState) -> None:
    ws.handle(DataStored("local", 8))
    out = ws.handle(compute("t", [("x", ["tcp://p:1"], 8), ("local", [ME], 8)]))
    assert out == [Fetch("tcp://p:1", ["x"])]
    unsendable = {"kind": "exception", "type": "builtins.TypeError", "message": "no", "key": "x"}
    out = ws.handle(FetchDone("tcp://p:1", {}, [], 5.0, 6.0, {"x": unsendable}))
    assert out == [Report(TaskErred("t", {**unsendable, "key": "t"}, 0.0, 0.0, -1, 1))]
    assert ws.tasks == {} and ws.in_flight == {} and "x" not in ws.waiters
    assert ws.held == {"local": 8}  # scattered data stays


# --- hardening (issue 9) ----------------------------------------------------------------------


def test_input_listed_here_but_absent_names_this_worker_as_missing_holder(ws: WorkerState) -> None:
    """The scheduler thinks this worker holds ``a``; it does not. Naming no holder left the
    stale replica on the scheduler, which sent ``t`` straight back (a livelock): the worker
    names itself and forgets ``t`` until the scheduler sends it again."""
    out = ws.handle(compute("t", [("a", [ME], 8)]))
    assert out == [Report(MissingData("a", ME, "t"))]
    assert ws.tasks == {} and ws.waiters == {} and ws.in_flight == {}
    # re-sent after the scheduler dropped the stale replica: fetched from the real holder
    assert ws.handle(compute("t", [("a", ["p1"], 8)])) == [Fetch("p1", ["a"])]


def test_input_listed_here_and_elsewhere_but_absent_still_names_this_worker(ws: WorkerState) -> None:
    ws.handle(DataStored("x", 8))
    out = ws.handle(compute("t", [("x", [ME], 8), ("a", [ME, "p1"], 8)]))
    assert out == [Report(MissingData("a", ME, "t"))]
    assert ws.tasks == {} and ws.users == {} and ws.held == {"x": 8}


def test_freeing_the_last_waiter_forgets_the_fetch_so_reassignment_fetches_again(
    ws: WorkerState,
) -> None:
    ws.handle(compute("t", [("a", ["p1"], 1)]))
    ws.handle(KeysFreed(["t"]))
    assert ws.in_flight == {}
    # p1 froze; the scheduler sends t again naming another holder: fetch from it now
    assert ws.handle(compute("t", [("a", ["p2"], 1)])) == [Fetch("p2", ["a"])]
    assert ws.in_flight == {"a": "p2"}


def test_a_late_copy_of_an_input_from_a_forgotten_fetch_is_not_dropped(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 1)]))
    ws.handle(KeysFreed(["t"]))
    ws.handle(compute("t", [("a", ["p2"], 1)]))
    out = ws.handle(fetched("p2", {"a": 1}))
    assert out[0] == execute("t", ("a",))
    # the old fetch from p1 completes too: the copy t is using must stay
    assert [c for c in ws.handle(fetched("p1", {"a": 1})) if isinstance(c, Drop)] == []
    assert ws.held == {"a": 1}
    assert ws.handle(done("t")) == [Drop(["a"]), report_done("t")]


def test_a_forgotten_fetch_failing_late_does_not_disturb_the_current_one(ws: WorkerState) -> None:
    ws.handle(compute("t", [("a", ["p1"], 1)]))
    ws.handle(KeysFreed(["t"]))
    ws.handle(compute("t", [("a", ["p2"], 1)]))
    assert ws.handle(FetchFailed("p1", ["a"])) == []
    assert ws.in_flight == {"a": "p2"}
    assert ws.handle(fetched("p2", {"a": 1}))[0] == execute("t", ("a",))


def test_cancelled_task_reassigned_keeps_its_local_inputs(ws: WorkerState) -> None:
    """t is queued on the executor with input a (this worker's own result). Both are freed
    (t becomes cancelled), then t is assigned here again: the queued run reads a when it
    starts, so a must not be dropped meanwhile (it was: a spurious KeyError)."""
    ws.handle(compute("a"))
    ws.handle(done("a"))
    assert ws.handle(compute("t", [("a", [ME], 8)])) == [execute("t", ("a",))]
    assert ws.handle(KeysFreed(["a", "t"])) == []
    assert ws.held == {"a": 8}
    assert ws.handle(compute("t", [("a", ["p2"], 8)])) == []  # revived: still queued
    assert ws.handle(done("t")) == [Drop(["a"]), report_done("t")]
    assert ws.held == {"t": 8}


def test_cancelled_task_finishing_releases_its_pinned_inputs(ws: WorkerState) -> None:
    ws.handle(DataStored("x", 8))
    ws.handle(compute("t", [("x", [ME], 8)]))
    assert ws.handle(KeysFreed(["t", "x"])) == []
    assert ws.handle(done("t")) == [Drop(["x"]), Drop(["t"])]
    assert ws.held == {} and ws.users == {} and ws.tasks == {}


def test_input_computed_here_while_a_cancelled_user_waits_is_kept_until_that_user_ends(
    ws: WorkerState,
) -> None:
    """t (queued, reading fetched input a) is cancelled; a is then computed here and freed.
    The queued t still reads a when it starts, and may be revived: keep a until t ends."""
    ws.handle(compute("t", [("a", ["p1"], 8)]))
    ws.handle(fetched("p1", {"a": 8}))
    ws.handle(KeysFreed(["t"]))
    ws.handle(compute("a"))  # the scheduler lost track of a and recomputes it here
    assert ws.handle(done("a")) == [report_done("a")]
    assert ws.handle(KeysFreed(["a"])) == []
    assert ws.held == {"a": 8}
    assert ws.handle(compute("t", [("a", ["p2"], 8)])) == []  # revived
    assert ws.handle(done("t")) == [Drop(["a"]), report_done("t")]
    assert ws.users == {}


def test_own_result_freed_while_a_queued_task_here_needs_it_is_kept_until_that_task_ends(
    ws: WorkerState,
) -> None:
    ws.handle(compute("a"))
    ws.handle(done("a"))
    ws.handle(compute("t", [("a", [ME], 8)]))
    assert ws.handle(KeysFreed(["a"])) == []  # t is queued on the executor and reads a
    assert ws.handle(done("t")) == [Drop(["a"]), report_done("t")]
    assert ws.held == {"t": 8} and ws.users == {}


def test_a_task_that_asked_to_be_rescheduled_is_reported_as_such_and_forgotten(
        ws: WorkerState) -> None:
    from shoal.protocol._errors import reschedule_error
    from shoal.protocol._messages import TaskRescheduled

    ws.handle(compute("t", [("a", ["p1"], 4)]))
    ws.handle(fetched("p1", {"a": 4}))
    out = ws.handle(done("t", error=reschedule_error("t", ME, 2.0)))
    assert out == [Drop(["a"]), Report(TaskRescheduled("t", 1))]
    assert "t" not in ws.tasks and "t" not in ws.held
