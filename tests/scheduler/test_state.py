"""Scenario tests of the pure scheduler: feed events, assert the exact commands.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

import pytest

from shoal.protocol._errors import KilledWorker, LostDataError, error_to_exception
from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ClientLeft,
    CloseWorker,
    DropScattered,
    HeartbeatReceived,
    ReportCancelled,
    ReportDone,
    ReportErred,
    SendCompute,
    SendFree,
    SendStore,
    Tick,
    TransferDone,
)
from shoal.scheduler._state import InvalidTransition, SchedulerState, key_prefix

from ._sim import PAYLOAD, Sim, computes, of, row

BIG = placement.LOCALITY_BYTES + 1

# --- the basic life of a task -----------------------------------------------------------------


def test_submit_runs_and_reports(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("inc-1", fids=["f1"], priority=(0, 1))])
    assert out == [
        SendCompute("w1", "inc-1", PAYLOAD, [], ("f1",), (0, 1), True, "inc", 1),
    ]
    assert sim.states("inc-1") == ["processing"]
    out = sim.finish("inc-1", nbytes=28, typename="int")
    assert out == [ReportDone("c", "inc-1", 28, "int", None)]
    assert sim.states("inc-1") == ["memory"]
    ts = sim.state.tasks["inc-1"]
    assert {w.address for w in ts.who_has} == {"w1"}
    assert ts.nbytes == 28


def test_inline_result_is_forwarded_to_client(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    out = sim.finish("a", inline=PAYLOAD)
    assert out == [ReportDone("c", "a", 8, "int", PAYLOAD)]


def test_submit_without_workers_queues_until_one_joins(sim: Sim) -> None:
    assert sim.submit([row("a")]) == []
    assert sim.states("a") == ["queued"]
    assert computes(sim.join("w1")) == [("w1", "a")]


def test_resubmitting_a_key_in_memory_reports_it_at_once(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a", nbytes=5, typename="list")
    assert sim.submit([row("a")]) == [ReportDone("c", "a", 5, "list", None)]


def test_unwanted_tasks_are_not_run(sim: Sim) -> None:
    sim.join("w1")
    assert sim.submit([row("a"), row("b")], wanted=["b"]) == [
        SendCompute("w1", "b", PAYLOAD, [], (), (0,), True, "b", 1),
    ]
    assert "a" not in sim.state.tasks


def test_send_inline_false_for_intermediate_tasks(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    (cmd,) = of(out, SendCompute)
    assert cmd.key == "a" and cmd.send_inline is False


# --- dependencies and placement ---------------------------------------------------------------


def test_dependent_waits_for_its_input_then_runs(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    assert computes(out) == [("w1", "a")]
    assert sim.states("a", "b") == ["processing", "waiting"]
    out = sim.finish("a", nbytes=10)
    (cmd,) = of(out, SendCompute)
    assert (cmd.worker, cmd.key, cmd.deps) == ("w1", "b", [("a", ["w1"], 10)])
    assert of(out, ReportDone) == []  # nobody wants a
    assert sim.finish("b") == [ReportDone("c", "b", 8, "int", None), SendFree("w1", ["a"])]
    # a's value is freed once its last dependent is done; its record stays as b's lineage
    assert sim.states("a", "b") == ["released", "memory"]
    assert sim.release("b") == [SendFree("w1", ["b"])]
    assert sim.state.tasks == {}


def test_input_released_after_last_dependent_finishes(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"], priority=(1,)), row("c", ["a"], priority=(2,))],
               wanted=["b", "c"])
    assert computes(sim.finish("a")) == [("w1", "b")]
    out = sim.finish("b")
    assert out[0] == ReportDone("c", "b", 8, "int", None)
    assert computes(out) == [("w1", "c")]
    assert of(out, SendFree) == []  # c still needs a
    out = sim.finish("c")
    assert out == [ReportDone("c", "c", 8, "int", None), SendFree("w1", ["a"])]
    assert sim.states("a") == ["released"]


def test_big_input_pulls_dependent_to_its_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit(
        [row("big", workers=["w2"]), row("small", workers=["w1"]), row("f", ["big", "small"])],
        wanted=["f"],
    )
    sim.finish("small", nbytes=100)
    out = sim.finish("big", nbytes=BIG)
    assert computes(out) == [("w2", "f")]


def test_busy_holder_loses_a_task_whose_input_is_cheap_to_move(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=BIG)  # moves in ~3 ms at 100 MB/s
    sim.submit([row(f"busy-{i}", workers=["w1"]) for i in range(3)])  # ~1.5 s of work
    out = sim.submit([row("y", ["x"])])
    assert computes(out) == [("w2", "y")]


def test_busy_holder_keeps_a_task_whose_input_costs_more_to_move(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=10**9)  # 10 s at 100 MB/s
    sim.submit([row(f"busy-{i}", workers=["w1"]) for i in range(3)])
    out = sim.submit([row("y", ["x"])])
    assert computes(out) == [("w1", "y")]


def test_tasks_sharing_one_big_input_spread_over_all_workers(sim: Sim) -> None:
    """model = submit(train) (8 MB), then map(predict, chunks, model=model)."""
    for w in ("w1", "w2", "w3", "w4"):
        sim.join(w)
    sim.submit([row("train", workers=["w1"])])
    sim.finish("train", nbytes=8 * 2**20)
    out = sim.submit([row(f"predict-{i}", ["train"], prefix="predict", priority=(i,))
                      for i in range(1000)])
    per_worker: dict[str, int] = {}
    for w, _ in computes(out):
        per_worker[w] = per_worker.get(w, 0) + 1
    assert sum(per_worker.values()) == 1000
    assert sorted(per_worker) == ["w1", "w2", "w3", "w4"]
    assert min(per_worker.values()) >= 200, per_worker


def test_new_tasks_each_reading_its_own_big_input_run_where_the_input_is(sim: Sim) -> None:
    """``x.persist()`` of 20 MB chunks, then ``x.sum()``: each chunk's sum runs on the
    worker holding the chunk. Their duration is unknown yet, and the guesses (0.5 s each)
    of their siblings queued on the holder are no reason to move 20 MB per task."""
    sim.join("w1")
    sim.join("w2")
    for i in range(20):
        sim.submit([row(f"x-{i}", workers=["w1" if i < 10 else "w2"])])
        sim.finish(f"x-{i}", nbytes=20_000_000)
    out = sim.submit([row(f"sum-{i}", [f"x-{i}"], prefix="sum", priority=(i,))
                      for i in range(20)])
    assert sorted(computes(out)) == sorted(
        ("w1" if i < 10 else "w2", f"sum-{i}") for i in range(20))


def test_new_tasks_whose_inputs_are_split_over_workers_spread_over_them(sim: Sim) -> None:
    """The joins of a shuffle: each reads pieces from every worker, so its inputs move
    wherever it runs, and the guesses of its siblings spread the joins over the workers."""
    sim.join("w1")
    sim.join("w2")
    for i in range(10):
        for w in ("w1", "w2"):
            sim.submit([row(f"piece-{w}-{i}", workers=[w])])
            sim.finish(f"piece-{w}-{i}", nbytes=4_000_000 + (i if w == "w1" else 0))
    out = sim.submit([row(f"join-{i}", [f"piece-w1-{i}", f"piece-w2-{i}"], prefix="join",
                          priority=(i,)) for i in range(10)])
    per_worker = [w for w, _ in computes(out)]
    assert per_worker.count("w1") == per_worker.count("w2") == 5, per_worker


def test_a_measured_backlog_of_siblings_still_sends_work_to_an_idle_worker(sim: Sim) -> None:
    """Once tasks of the prefix are known to be long (2 s here), a holder's queue of them
    makes moving a 20 MB input (0.2 s at 100 MB/s) the faster start."""
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("slow-0")])
    sim.finish("slow-0", duration=2.0)
    for i in range(6):
        sim.submit([row(f"x-{i}", workers=["w1"])])
        sim.finish(f"x-{i}", nbytes=20_000_000)
    out = sim.submit([row(f"slow-{i + 1}", [f"x-{i}"], prefix="slow", priority=(i,))
                      for i in range(6)])
    assert {w for w, _ in computes(out)} == {"w1", "w2"}


def test_low_bandwidth_keeps_work_with_the_holder() -> None:
    state = SchedulerState(bandwidth=1_000.0)  # 1 kB/s: moving 8 MB never pays
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("train", workers=["w1"])])
    sim.finish("train", nbytes=8 * 2**20)
    out = sim.submit([row(f"predict-{i}", ["train"], prefix="predict") for i in range(20)])
    assert {w for w, _ in computes(out)} == {"w1"}
    state.validate()


def test_tiny_inputs_spread_over_workers(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=8)
    out = sim.submit([row(f"y-{i}", ["x"]) for i in range(2)])
    assert sorted(w for w, _ in computes(out)) == ["w1", "w2"]


def test_dependency_inputs_listed_with_their_holders(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", workers=["w2"])])
    sim.finish("a", nbytes=3)
    sim.finish("b", nbytes=4)
    (cmd,) = of(sim.submit([row("c", ["a", "b"])]), SendCompute)
    assert sorted(cmd.deps) == [("a", ["w1"], 3), ("b", ["w2"], 4)]


# --- queueing ---------------------------------------------------------------------------------


def test_unknown_durations_send_only_nthreads_tasks(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    out = sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(100)])
    assert computes(out) == [("w1", "t-0")]
    assert sim.state.prefix_counts["t"]["queued"] == 99


def test_two_threads_get_two_tasks(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    out = sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(10)])
    assert computes(out) == [("w1", "t-0"), ("w1", "t-1")]


def test_short_known_durations_send_deep_batches(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(100)])
    out = sim.finish("t-0", duration=0.001)
    sent = computes(out)
    assert 10 < len(sent) < 99
    assert sent == [("w1", f"t-{i}") for i in range(1, len(sent) + 1)]  # in priority order


def test_long_known_durations_send_one_per_thread(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(10)])
    assert computes(sim.finish("t-0", duration=2.0)) == [("w1", "t-1")]
    assert computes(sim.finish("t-1", duration=2.0)) == [("w1", "t-2")]


def test_durations_are_per_prefix(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("fast-0", prefix="fast")])
    sim.finish("fast-0", duration=0.001)
    out = sim.submit([row(f"slow-{i}", prefix="slow", priority=(i,)) for i in range(5)])
    assert computes(out) == [("w1", "slow-0")]


def test_priorities_order_the_queue(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("first", priority=(0,))])
    sim.submit([row("low", priority=(9,)), row("high", priority=(1,)), row("mid", priority=(5,))])
    assert computes(sim.finish("first", duration=5.0)) == [("w1", "high")]
    assert computes(sim.finish("high", duration=5.0)) == [("w1", "mid")]
    assert computes(sim.finish("mid", duration=5.0)) == [("w1", "low")]


def test_priorities_that_do_not_pack_still_order_the_queue_with_the_rest(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row("first", priority=(0,))])
    sim.submit([row("low", priority=(9, 0, 0)), row("high", priority=(1, 3))])
    sim.submit([row("odd", priority=(5, -1)), row("float", priority=(2.5,))])  # unpackable
    order = []
    key = "first"
    for _ in range(4):
        ((_, key),) = computes(sim.finish(key, duration=5.0))
        order.append(key)
    assert order == ["high", "float", "odd", "low"]
    sim.state.validate()


def test_queue_goes_to_least_busy_worker(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.join("w2", nthreads=2)
    out = sim.submit([row(f"t-{i}", priority=(i,)) for i in range(5)])
    assert sorted(w for w, _ in computes(out)) == ["w1", "w2", "w2"]


# --- releasing ----------------------------------------------------------------------------


def test_release_frees_memory_and_forgets(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert sim.release("a") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}
    assert sim.state.workers["w1"].has_what == set()
    assert sim.state.workers["w1"].nbytes == 0


def test_release_of_processing_task_tells_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    assert sim.release("a") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}
    # a late result for the forgotten task is dropped on the worker
    assert sim.finish("a", worker="w1") == [SendFree("w1", ["a"])]


def test_release_of_queued_task_sends_nothing(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", priority=(0,)), row("b", priority=(1,))])
    assert sim.release("b") == []
    assert sim.states("b") == ["forgotten"]


def test_release_of_waiting_dependent_releases_its_inputs(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    assert sim.release("b") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


def test_input_kept_while_another_client_holds_it(state: SchedulerState) -> None:
    one, two = Sim(state, "one"), Sim(state, "two")
    one.join("w1")
    one.submit([row("a")])
    two.submit([row("a")])
    one.finish("a")
    assert one.release("a") == []
    assert two.release("a") == [SendFree("w1", ["a"])]


def test_client_leaving_releases_what_it_held(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert sim.state.handle(ClientLeft("c")) == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


def test_inputs_kept_while_failed_dependent_is_held(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a")
    out = sim.fail("b")
    assert [type(c) for c in out] == [ReportErred]
    assert sim.states("a", "b") == ["memory", "erred"]
    assert sim.release("b") == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


# --- errors --------------------------------------------------------------------------------


def test_failure_reports_error_with_exception(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    (cmd,) = sim.fail("a", exc=ValueError("bad input"))
    assert isinstance(cmd, ReportErred) and cmd.client == "c" and cmd.key == "a"
    assert cmd.error["key"] == "a"
    ts = sim.state.tasks["a"]
    assert isinstance(ts.exception, ValueError) and str(ts.exception) == "bad input"
    assert ts.exception_blame == "a"
    assert "ValueError" in ts.traceback_text
    assert ts.exception_text == "bad input"


def test_error_propagates_to_dependents(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"]), row("c", ["b"]), row("d", ["a"])], wanted=["c", "d"])
    out = sim.fail("a")
    reports = of(out, ReportErred)
    assert sorted(r.key for r in reports) == ["c", "d"]
    assert all(r.client == "c" for r in reports)
    assert sim.states("a", "b", "c", "d") == ["erred"] * 4
    origin = sim.state.tasks["a"].error
    for key in "bcd":
        ts = sim.state.tasks[key]
        assert ts.error is origin
        assert ts.exception is None  # only the task that raised has an exception
        assert ts.exception_blame == "a"
    assert isinstance(sim.state.tasks["a"].exception, ZeroDivisionError)
    assert sim.state.first_failure("c") is sim.state.tasks["a"]


def test_submitting_on_top_of_erred_task_errs_at_once(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.fail("a")
    out = sim.submit([row("b", ["a"])])
    (cmd,) = out
    assert isinstance(cmd, ReportErred) and cmd.key == "b" and cmd.error["key"] == "a"


def test_resubmitting_erred_key_reports_the_error(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.fail("a")
    (cmd,) = sim.submit([row("a")])
    assert isinstance(cmd, ReportErred) and cmd.key == "a"


def test_retries_send_the_task_again(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", retries=2)])
    assert computes(sim.fail("a")) == [("w1", "a")]
    assert computes(sim.fail("a")) == [("w1", "a")]
    out = sim.fail("a")
    assert [type(c) for c in out] == [ReportErred]
    assert sim.states("a") == ["erred"]


def test_retry_then_success(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", retries=1)])
    sim.fail("a")
    assert sim.finish("a") == [ReportDone("c", "a", 8, "int", None)]


def test_keys_retried_reruns_the_failed_chain(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.fail("a")
    assert sim.states("a", "b") == ["erred", "erred"]
    out = sim.retry("b")
    assert computes(out) == [("w1", "a")]
    assert sim.states("a", "b") == ["processing", "waiting"]
    assert sim.state.tasks["b"].error is None
    assert computes(sim.finish("a")) == [("w1", "b")]
    assert sim.finish("b") == [ReportDone("c", "b", 8, "int", None), SendFree("w1", ["a"])]


def test_keys_retried_ignores_tasks_not_erred(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    assert sim.retry("a", "unknown") == []
    assert sim.states("a") == ["processing"]


def test_missing_dependency_at_submit_errs_naming_it(sim: Sim) -> None:
    sim.join("w1")
    (cmd,) = sim.submit([row("b", ["gone"])])
    assert isinstance(cmd, ReportErred) and cmd.key == "b"
    assert "lost dependencies" in cmd.error["message"]
    assert "'gone'" in cmd.error["message"]
    assert isinstance(error_to_exception(cmd.error), LostDataError)


def test_missing_dependency_fails_dependents_in_same_graph(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("b", ["gone"]), row("c", ["b"])], wanted=["c"])
    (cmd,) = out
    assert isinstance(cmd, ReportErred) and cmd.key == "c"
    assert "'gone'" in cmd.error["message"]
    assert sim.states("b", "c") == ["erred", "erred"]


# --- cancel --------------------------------------------------------------------------------


def test_cancel_processing_task(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    out = sim.cancel("a")
    # the cancelling client settled its futures itself: a report could reach a resubmission
    assert out == [SendFree("w1", ["a"])]
    assert sim.state.tasks == {}


def test_cancel_waiting_task_releases_its_input(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    sim.finish("a", duration=5.0)
    sim.submit([row("z", prefix="a")])  # w1 busy: b's successor queue is irrelevant
    out = sim.cancel("b")
    assert SendFree("w1", ["a"]) in out
    assert "a" not in sim.state.tasks and "b" not in sim.state.tasks


def test_cancel_finished_task_releases_its_result(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert sim.cancel("a") == [SendFree("w1", ["a"])]
    assert sim.states("a") == ["forgotten"]


def test_cancel_drops_only_the_callers_interest_in_a_shared_task(sim: Sim) -> None:
    other = Sim(sim.state, client="d")
    sim.join("w1")
    sim.submit([row("a")])
    other.submit([row("a")])
    assert sim.cancel("a") == []
    assert sim.states("a") == ["processing"]
    assert sim.state.tasks["a"].who_wants == {"d"}
    assert of(sim.finish("a"), ReportDone) == [ReportDone("d", "a", 8, "int", None)]


def test_forced_cancel_cancels_the_task_for_every_client(sim: Sim) -> None:
    other = Sim(sim.state, client="d")
    sim.join("w1")
    sim.submit([row("a")])
    other.submit([row("a")])
    out = sim.cancel("a", force=True)
    assert out == [ReportCancelled("d", "a", "cancelled by the client"), SendFree("w1", ["a"])]
    assert sim.states("a") == ["forgotten"]


def test_cancel_cancels_the_dependents_nobody_else_wants(sim: Sim) -> None:
    other = Sim(sim.state, client="d")
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"]), row("c", ["a"])], wanted=["a", "b"])
    other.submit([row("c", ["a"])])
    out = sim.cancel("a")
    assert of(out, ReportCancelled) == [ReportCancelled("c", "b", "cancelled by the client")]
    assert sim.states("a", "b", "c") == ["processing", "forgotten", "waiting"]
    assert sim.state.tasks["a"].who_wants == set()


def test_cancelled_task_submitted_again_runs_afresh(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.cancel("a")
    assert computes(sim.submit([row("a")])) == [("w1", "a")]
    assert of(sim.finish("a"), ReportDone) == [ReportDone("c", "a", 8, "int", None)]


# --- worker loss ----------------------------------------------------------------------------


def test_processing_tasks_move_to_another_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=None)])
    first = sim.state.tasks["a"].processing_on.address
    other = "w2" if first == "w1" else "w1"
    assert computes(sim.leave(first)) == [(other, "a")]
    assert sim.state.tasks["a"].suspicious == 1
    assert sim.finish("a", worker=other) == [ReportDone("c", "a", 8, "int", None)]


def test_late_result_from_departed_worker_is_ignored(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"])])
    sim.leave("w1")
    assert sim.finish("a", worker="w1") == []
    assert sim.states("a") == ["no-worker"]


def test_lost_result_recomputed_from_lineage(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w1"])], wanted=["b"])
    sim.finish("a")
    sim.finish("b")
    assert sim.states("a", "b") == ["released", "memory"]
    sim.submit([row("c", ["b"], workers=["w2"])])
    # b is lost with w1: a is recomputed first (on the surviving worker), then b
    out = sim.leave("w1")
    assert sim.states("a", "b", "c") == ["no-worker", "waiting", "waiting"]
    assert computes(out) == []
    assert computes(sim.join("w1")) == [("w1", "a")]
    assert computes(sim.finish("a")) == [("w1", "b")]
    out = sim.finish("b")
    assert computes(out) == [("w2", "c")]
    assert SendFree("w1", ["a"]) in out


def test_lost_input_recomputed_for_waiting_dependent(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit(
        [row("a", workers=["w1"]), row("s", workers=["w2"]), row("c", ["a", "s"])],
        wanted=["c"],
    )
    sim.finish("a")
    assert sim.states("a", "s", "c") == ["memory", "processing", "waiting"]
    out = sim.leave("w1")
    # a has to be recomputed; it may only run on w1, which is gone
    assert computes(out) == []
    assert sim.states("a", "c") == ["no-worker", "waiting"]
    out = sim.join("w1")
    assert computes(out) == [("w1", "a")]
    sim.finish("s")
    out = sim.finish("a")
    assert [k for _, k in computes(out)] == ["c"]


def test_dependent_sent_elsewhere_reruns_when_its_input_is_lost(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w2"])], wanted=["b"])
    sim.finish("a")
    assert sim.states("b") == ["processing"]
    out = sim.leave("w1")
    assert SendFree("w2", ["b"]) in out
    assert sim.states("a", "b") == ["no-worker", "waiting"]


def test_scattered_data_lost_with_its_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)])
    out = sim.leave("w1")
    (cmd,) = out
    assert isinstance(cmd, ReportErred) and cmd.key == "x"
    assert cmd.error["kind"] == "lost-data"
    assert "'x'" in cmd.error["message"]
    assert isinstance(error_to_exception(cmd.error), LostDataError)
    assert sim.states("x") == ["erred"]


def test_scattered_data_lost_fails_dependents(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 100)], workers=["w1"])
    sim.submit([row("s", workers=["w2"]), row("y", ["x", "s"])], wanted=["y"])
    out = sim.leave("w1")
    reports = of(out, ReportErred)
    assert sorted(r.key for r in reports) == ["x", "y"]
    assert all(r.error["key"] == "x" for r in reports)


def test_killed_worker_after_allowed_failures() -> None:
    state = SchedulerState(allowed_failures=1)
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    sim.join("w3")
    sim.submit([row("crash", workers=["w1", "w2"])])
    first = state.tasks["crash"].processing_on.address
    second = "w2" if first == "w1" else "w1"
    assert computes(sim.leave(first)) == [(second, "crash")]
    (cmd,) = sim.leave(second)
    assert isinstance(cmd, ReportErred) and cmd.key == "crash"
    assert cmd.error["kind"] == "killed"
    assert cmd.error["workers"] == [first, second]
    exc = error_to_exception(cmd.error)
    assert isinstance(exc, KilledWorker)
    assert exc.workers == [first, second]
    assert first in str(exc) and second in str(exc)
    assert state.tasks["crash"].exception_blame == "crash"
    state.validate()


def test_killed_worker_fails_dependents_with_same_error() -> None:
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("crash"), row("after", ["crash"])], wanted=["after"])
    (cmd,) = sim.leave("w1")
    assert isinstance(cmd, ReportErred) and cmd.key == "after"
    assert cmd.error["kind"] == "killed" and cmd.error["key"] == "crash"
    state.validate()


def test_keys_retried_clears_killed_history() -> None:
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("crash")])
    sim.leave("w1")
    sim.join("w2")
    assert computes(sim.retry("crash")) == [("w2", "crash")]
    assert state.tasks["crash"].killed_on == ()
    state.validate()


def _four_queued_on_one_worker(allowed_failures: int = 0) -> tuple[SchedulerState, Sim]:
    """w1 (one thread) holds t-1..t-4, short tasks sent ahead of its thread."""
    state = SchedulerState(allowed_failures=allowed_failures)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("t-0", prefix="t")])
    sim.finish("t-0", duration=0.001)
    sim.submit([row(f"t-{i}", prefix="t", priority=(0, i)) for i in range(1, 5)])
    assert [ts.key for ts in sorted(state.workers["w1"].processing, key=lambda t: t.priority)] == [
        "t-1", "t-2", "t-3", "t-4"]
    return state, sim


def test_worker_death_counts_only_the_tasks_it_was_executing() -> None:
    state, sim = _four_queued_on_one_worker()
    sim.started("w1", "t-3")
    out = sim.leave("w1")
    assert [r.key for r in of(out, ReportErred)] == ["t-3"]
    assert sim.states("t-1", "t-2", "t-3", "t-4") == ["queued", "queued", "erred", "queued"]
    assert [state.tasks[k].suspicious for k in ("t-1", "t-2", "t-4")] == [0, 0, 0]
    # t-0's result was lost with w1: it runs again too
    assert sorted(k for _, k in computes(sim.join("w2"))) == ["t-0", "t-1", "t-2", "t-4"]
    state.validate()


def test_worker_death_before_any_start_report_blames_what_its_threads_ran_first() -> None:
    state, sim = _four_queued_on_one_worker()
    out = sim.leave("w1")  # e.g. the first task killed the process at once
    assert [r.key for r in of(out, ReportErred)] == ["t-1"]
    assert sim.states("t-2", "t-3", "t-4") == ["queued", "queued", "queued"]
    state.validate()


def test_retiring_worker_counts_nothing_and_its_tasks_move() -> None:
    state, sim = _four_queued_on_one_worker()
    sim.join("w2")
    sim.started("w1", "t-1")
    out = sim.retire("w1")
    assert of(out, ReportErred) == []
    assert sorted(k for _, k in computes(out)) == ["t-0", "t-1", "t-2", "t-3", "t-4"]
    assert all(w == "w2" for w, _ in computes(out))
    assert all(state.tasks[k].suspicious == 0 for k in ("t-1", "t-2", "t-3", "t-4"))
    assert "w1" not in state.workers
    assert sim.leave("w1") == []  # its connection closing afterwards changes nothing
    state.validate()


def test_start_report_about_a_task_elsewhere_is_ignored() -> None:
    state, sim = _four_queued_on_one_worker()
    sim.join("w2")
    assert sim.started("w2", "t-1", "nope") == []
    assert not state.tasks["t-1"].started
    sim.started("w1", "t-1")
    assert state.tasks["t-1"].started
    sim.finish("t-1")
    assert not state.tasks["t-1"].started
    state.validate()


def test_worker_death_erring_a_task_and_its_dependent_running_there_too() -> None:
    """c still runs on w1 with an input that w1 lost and is recomputing there: when w1 dies
    and the input's task fails with KilledWorker, c fails with it (not moved as well)."""
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1", nthreads=3)
    sim.submit([row("a"), row("b", ["a"]), row("c", ["a"])], wanted=["b", "c"])
    sim.finish("a", nbytes=BIG)
    assert sim.states("b", "c") == ["processing", "processing"]
    sim.missing("w1", "a", "", "b")
    assert sim.states("a", "b", "c") == ["processing", "waiting", "processing"]
    sim.started("w1", "a")
    out = sim.leave("w1")
    assert sorted(r.key for r in of(out, ReportErred)) == ["b", "c"]
    assert sim.states("a", "b", "c") == ["erred", "erred", "erred"]
    state.validate()


def test_unknown_worker_leaving_is_ignored(sim: Sim) -> None:
    assert sim.leave("nobody") == []


def test_worker_joining_twice_is_ignored(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    assert sim.join("w1") == []
    assert sim.state.tasks["a"].processing_on is sim.state.workers["w1"]


# --- data missing --------------------------------------------------------------------------


def test_data_missing_recomputes_the_input(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", ["a"], workers=["w2"])], wanted=["b"])
    sim.finish("a")
    out = sim.missing("w2", "a", "w1", "b")
    assert computes(out) == [("w1", "a")]
    assert sim.states("a", "b") == ["processing", "waiting"]
    assert sim.state.workers["w1"].has_what == set()
    assert computes(sim.finish("a")) == [("w2", "b")]


def test_data_missing_from_one_of_two_holders_keeps_the_other(sim: Sim) -> None:
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    sim.scatter([("x", 10)], workers=["w1", "w2"], broadcast=True)
    sim.submit([row("b", ["x"], workers=["w3"])])
    out = sim.missing("w3", "x", "w1", "b")
    assert sim.states("x") == ["memory"]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w2"}
    assert sim.state.workers["w1"].nbytes == 0
    # w3 keeps b and fetches x from the next holder: b is not run a second time
    assert out == []
    assert sim.state.tasks["b"].processing_on is sim.state.workers["w3"]
    # when w3 runs out of holders it drops b and says so (no holder named): b is sent again
    (cmd,) = sim.missing("w3", "x", "", "b")
    assert isinstance(cmd, SendCompute) and (cmd.worker, cmd.deps) == ("w3", [("x", ["w2"], 10)])


def test_data_missing_for_scattered_key_errs(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 10)], workers=["w1"])
    sim.submit([row("b", ["x"], workers=["w2"])])
    out = sim.missing("w2", "x", "w1", "b")
    assert sorted(r.key for r in of(out, ReportErred)) == ["b", "x"]
    assert sim.states("x", "b") == ["erred", "erred"]


def test_missing_input_on_its_only_holder_is_recomputed_not_resent(sim: Sim) -> None:
    """One worker: it is asked to run b but lacks its input a, which the scheduler thinks it
    holds. Naming itself (or no one) must drop that replica and recompute a, never send b
    back to the same stale holder."""
    for holder in ("w1", ""):
        sim.join("w1")
        sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
        sim.finish("a", nbytes=BIG)
        assert sim.states("b") == ["processing"]
        out = sim.missing("w1", "a", holder, "b")
        assert computes(out) == [("w1", "a")], holder
        assert sim.states("a", "b") == ["processing", "waiting"]
        assert sim.state.workers["w1"].has_what == set()
        assert computes(sim.finish("a", nbytes=BIG)) == [("w1", "b")]
        sim.finish("b")
        sim.release("b")
        sim.leave("w1")
        sim.state.validate()


def test_missing_input_named_by_the_reporter_is_fetched_from_another_holder(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    for holder in ("self", ""):
        x, b = f"x-{holder}", f"b-{holder}"
        sim.scatter([(x, BIG)], workers=["w1", "w2"], broadcast=True)
        sim.submit([row(b, [x])])
        w = sim.state.tasks[b].processing_on.address
        other = "w2" if w == "w1" else "w1"
        out = sim.missing(w, x, w if holder else "", b)
        assert {ws.address for ws in sim.state.tasks[x].who_has} == {other}
        assert sim.states(x) == ["memory"]
        (cmd,) = of(out, SendCompute)
        assert (cmd.key, cmd.deps) == (b, [(x, [other], BIG)])


def test_data_missing_about_unknown_keys_is_harmless(sim: Sim) -> None:
    sim.join("w1")
    assert sim.missing("w1", "nope", "w2", "nada") == []


# --- heartbeats ---------------------------------------------------------------------------


def test_silent_worker_is_closed_after_ttl() -> None:
    state = SchedulerState(worker_ttl=10.0)
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"])])
    state.handle(HeartbeatReceived("w1", 100, 50, 0.5, 1, now=8.0))
    assert state.handle(Tick(now=15.0)) == [CloseWorker("w2", "no heartbeat for 10.0 s")]
    assert set(state.workers) == {"w1"}
    out = state.handle(Tick(now=19.0))
    assert out == [CloseWorker("w1", "no heartbeat for 10.0 s")]
    assert state.workers == {}
    assert sim.states("a") == ["no-worker"]
    state.validate()


def test_heartbeat_updates_worker_metrics(sim: Sim) -> None:
    sim.join("w1")
    assert sim.state.handle(HeartbeatReceived("w1", 1000, 600, 42.0, 2, now=3.0)) == []
    ws = sim.state.workers["w1"]
    assert (ws.memory_process, ws.memory_managed, ws.cpu, ws.executing, ws.last_seen) == (
        1000, 600, 42.0, 2, 3.0,
    )
    assert sim.state.handle(HeartbeatReceived("ghost", 1, 1, 1.0, 0, now=3.0)) == []


# --- restrictions ---------------------------------------------------------------------------


def test_restricted_task_waits_for_matching_worker(sim: Sim) -> None:
    sim.join("w1")
    assert sim.submit([row("a", workers=["w2"])]) == []
    assert sim.states("a") == ["no-worker"]
    assert computes(sim.join("w3")) == []
    assert computes(sim.join("w2")) == [("w2", "a")]


def test_restriction_matches_worker_name(sim: Sim) -> None:
    sim.join("tcp://10.0.0.1:1234", name="alice")
    sim.join("tcp://10.0.0.2:1234", name="bob")
    out = sim.submit([row("a", workers=["bob"])])
    assert computes(out) == [("tcp://10.0.0.2:1234", "a")]


def test_restricted_tasks_wait_on_the_scheduler_for_their_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row(f"t-{i}", workers=["w1"]) for i in range(3)])
    # Unknown durations: one per thread is sent; the rest wait for w1, never go to w2.
    assert len(sim.state.workers["w1"].processing) == 1
    assert not sim.state.workers["w2"].processing
    (done,) = sim.state.workers["w1"].processing
    # Measured short (1 ms), the other two fit in w1's batch at once.
    assert sorted(w for w, _ in computes(sim.finish(done.key))) == ["w1", "w1"]


def test_restriction_beats_locality(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=BIG)
    assert computes(sim.submit([row("y", ["x"], workers=["w2"])])) == [("w2", "y")]


# --- scatter ------------------------------------------------------------------------------


def test_scatter_stores_on_one_worker_and_reports(sim: Sim) -> None:
    sim.join("w1")
    out = sim.scatter([("x", 100)])
    assert out == [
        SendStore("w1", "x"), ReportDone("c", "x", 100, "ndarray", None), DropScattered(["x"])
    ]
    assert sim.states("x") == ["memory"]


def test_scatter_spreads_items_over_workers(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 1), ("y", 1)])
    assert sorted(c.worker for c in of(out, SendStore)) == ["w1", "w2"]


def test_scatter_to_named_workers(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 1), ("y", 1), ("z", 1)], workers=["w2"])
    assert {c.worker for c in of(out, SendStore)} == {"w2"}


def test_scatter_broadcast_stores_everywhere(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 100)], broadcast=True)
    assert sorted(c.worker for c in of(out, SendStore)) == ["w1", "w2"]
    assert of(out, ReportDone) == [ReportDone("c", "x", 100, "ndarray", None)]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w1", "w2"}
    assert sim.state.workers["w2"].nbytes == 100
    assert sorted(c.worker for c in sim.release("x")) == ["w1", "w2"]


def test_broadcast_data_survives_losing_one_holder(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 100)], broadcast=True)
    assert sim.leave("w1") == []
    assert sim.states("x") == ["memory"]


def test_scatter_existing_key_reports_it_again(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)])
    assert sim.scatter([("x", 100)]) == [ReportDone("c", "x", 100, "ndarray", None)]


def test_scatter_without_workers_errs_instead_of_hanging(sim: Sim) -> None:
    (erred,) = sim.scatter([("x", 1)])
    assert isinstance(erred, ReportErred) and erred.error["kind"] == "lost-data"


def test_scattered_input_used_by_task(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)])
    (cmd,) = of(sim.submit([row("y", ["x"])]), SendCompute)
    assert cmd.deps == [("x", ["w1"], 100)]


# --- bookkeeping views ---------------------------------------------------------------------


def test_prefix_counts_follow_every_state(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row(f"inc-{i}", prefix="inc", priority=(i,)) for i in range(4)])
    counts = sim.state.prefix_counts["inc"]
    assert (counts["processing"], counts["queued"]) == (1, 3)
    sim.finish("inc-0", duration=5.0)
    sim.fail("inc-1")
    assert (counts["memory"], counts["erred"], counts["processing"], counts["queued"]) == (
        1, 1, 1, 1,
    )
    sim.release("inc-0", "inc-1", "inc-2", "inc-3")
    assert set(counts.values()) == {0}
    sim.state.validate()


def test_key_prefix_examples() -> None:
    assert key_prefix(("sum-abc123def456", 0)) == "sum"
    assert key_prefix("inc-9f2e4b1c0a0a0a0a") == "inc"
    assert key_prefix("load_file-3") == "load_file"
    assert key_prefix("x") == "x"
    assert key_prefix(42) == "42"


@pytest.mark.parametrize("key", [
    "inc-100b0c08-6649-4968-921d-0a1b2c3d4e5f",  # dask.delayed: the function name + a uuid4
    "inc-270f4f78-3002-4886-9fe5-e2fad4852574",
    ("add-8bbd6980-11b9-4199-b63a-9a8b7c6d5e4f", 3),
])
def test_delayed_keys_share_their_function_name_as_prefix(key: object) -> None:
    """Every dask.delayed call has a uuid in its key; the prefix must drop all of it, or each
    task is a prefix never seen before, estimated at half a second, and sent one at a time."""
    name = key[0] if isinstance(key, tuple) else key
    assert key_prefix(key) == str(name).split("-")[0]


def test_key_prefix_keeps_words_of_a_dashed_name() -> None:
    assert key_prefix("read-parquet-0a1b2c3d4e5f6a7b") == "read-parquet"
    assert key_prefix("my-task-name-1") == "my-task-name"


def test_task_stream_since_cursor() -> None:
    state = SchedulerState(task_stream_size=3)
    sim = Sim(state)
    sim.join("w1")
    assert state.task_stream_since(0) == (0, [])
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(5)])
    sim.finish("t-0")
    total, items = state.task_stream_since(0)
    assert total == 1 and [i["key"] for i in items] == ["t-0"]
    assert items[0]["kind"] == "compute" and items[0]["worker"] == "w1"
    assert items[0]["prefix"] == "t"
    for i in range(1, 5):
        sim.finish(f"t-{i}")
    total, items = state.task_stream_since(1)  # only the last 3 are kept
    assert total == 5 and [i["key"] for i in items] == ["t-2", "t-3", "t-4"]
    total, items = state.task_stream_since(3)
    assert total == 5 and [i["key"] for i in items] == ["t-3", "t-4"]
    assert state.task_stream_since(5) == (5, [])
    assert state.task_stream_since(9) == (5, [])
    assert state.task_stream_since(-1) == (5, [])  # "from now on"
    state.validate()


def test_task_stream_pages_are_bounded_and_follow_the_cursor() -> None:
    state = SchedulerState(task_stream_size=8)
    sim = Sim(state)
    sim.join("w1", nthreads=20)
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(10)])
    for i in range(10):
        sim.finish(f"t-{i}")
    # records 0 and 1 are gone (8 kept); pages of 3 walk the rest in order
    cursor, page = state.task_stream_since(0, limit=3)
    assert cursor == 5 and [r["key"] for r in page] == ["t-2", "t-3", "t-4"]
    cursor, page = state.task_stream_since(cursor, limit=3)
    assert cursor == 8 and [r["key"] for r in page] == ["t-5", "t-6", "t-7"]
    cursor, page = state.task_stream_since(cursor, limit=3)
    assert cursor == 10 and [r["key"] for r in page] == ["t-8", "t-9"]
    assert state.task_stream_since(cursor, limit=3) == (10, [])


def test_task_stream_records_errors_and_transfers(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.fail("a")
    sim.state.handle(TransferDone("w1", ["a", "b"], "w2", 100, 1.0, 2.0))
    _, items = sim.state.task_stream_since(0)
    assert [(i["key"], i["kind"]) for i in items] == [("a", "error"), ("a", "transfer")]


def test_completed_total_counts_finished_tasks(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.submit([row("a"), row("b")])
    sim.finish("a")
    sim.finish("b")
    assert sim.state.completed_total == 2


def test_story_lists_every_transition(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    sim.release("a")
    assert sim.state.story("a") == [
        ("a", "released", "waiting", "GraphSubmitted"),
        ("a", "waiting", "queued", "GraphSubmitted"),
        ("a", "queued", "processing", "GraphSubmitted"),
        ("a", "processing", "memory", "TaskFinished"),
        ("a", "memory", "released", "KeysReleased"),
        ("a", "released", "forgotten", "KeysReleased"),
    ]


def test_story_is_bounded() -> None:
    state = SchedulerState(story_size=3)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    assert [r[2] for r in state.story("a")] == ["queued", "processing", "memory"]
    state.validate()


# --- invalid transitions -------------------------------------------------------------------


def test_impossible_transition_raises_with_key_states_and_story(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    ts = sim.state.tasks["b"]
    with pytest.raises(InvalidTransition) as info:
        sim.state._go(ts, "memory")
    err = info.value
    assert (err.key, err.start, err.finish) == ("b", "waiting", "memory")
    text = str(err)
    assert "'b'" in text and "'waiting'" in text and "'memory'" in text
    assert "('b', 'released', 'waiting', 'GraphSubmitted')" in text
    assert ts.state == "waiting"  # nothing changed


def test_validate_catches_a_broken_invariant(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    ts = sim.state.tasks["a"]
    saved = ts.who_has
    ts.who_has = frozenset()  # empty, of the declared type (the compiled build checks it)
    with pytest.raises(AssertionError):
        sim.state.validate()
    ts.who_has = saved


def test_first_measured_duration_replaces_the_guess_of_running_tasks(sim: Sim) -> None:
    """Both workers keep getting work once the prefix turns out to be short (before, the
    worker still running its first task looked busy for the guessed half second)."""
    sim.join("w1")
    sim.join("w2")
    sim.submit([row(f"t{i}", prefix="t") for i in range(20)])
    first = {ws.address: {t.key for t in ws.processing} for ws in sim.state.workers.values()}
    assert all(len(keys) == 1 for keys in first.values())
    sim.finish(next(iter(first["w1"])), duration=0.001)
    w2 = sim.state.workers["w2"]
    assert w2.occupancy < 0.01
    assert len(w2.processing) > 1, "w2 should be sent more work, not left with its guess"


# --- bounded tables ------------------------------------------------------------------------


def test_prefix_tables_stay_bounded_over_many_distinct_prefixes(sim: Sim) -> None:
    from shoal.scheduler._state import DURATIONS_KEPT

    sim.join("w1")
    n = DURATIONS_KEPT + 500
    for i in range(n):
        sim.submit([row(f"p{i}", prefix=f"fn{i}x")])
        sim.finish(f"p{i}")
        sim.release(f"p{i}")
    assert sim.state.tasks == {}
    assert sim.state.prefix_counts == {}
    assert len(sim.state._durations) == DURATIONS_KEPT
    # the most recently measured prefixes are the ones kept
    assert f"fn{n - 1}x" in sim.state._durations and "fn0x" not in sim.state._durations


def test_recently_used_duration_survives_eviction(sim: Sim) -> None:
    from shoal.scheduler._state import DURATIONS_KEPT

    sim.join("w1")
    for i in range(DURATIONS_KEPT + 10):
        for key, prefix in ((f"p{i}", f"fn{i}x"), (f"hot{i}", "hot")):
            sim.submit([row(key, prefix=prefix)])
            sim.finish(key)
            sim.release(key)
    assert "hot" in sim.state._durations


# --- work stealing -----------------------------------------------------------------------


def _backlog_on_w1(sim: Sim, n: int = 10) -> list[str]:
    """w1 alone holds a big input and n tasks that need it (placed there by locality)."""
    sim.join("w1")
    sim.submit([row("model", workers=["w1"])])
    sim.finish("model", nbytes=BIG)
    keys = [f"predict-{i}" for i in range(n)]
    sim.submit([row(k, ["model"], prefix="predict", priority=(i,)) for i, k in enumerate(keys)])
    assert len(sim.state.workers["w1"].processing) == n
    return keys


def test_new_idle_worker_steals_tasks_queued_on_a_busy_one(sim: Sim) -> None:
    keys = _backlog_on_w1(sim)
    out = sim.join("w2")
    stolen = [k for w, k in computes(out) if w == "w2"]
    assert 3 <= len(stolen) <= 6
    # the victim is told first, and loses the tasks it would have run last
    assert of(out, SendFree) == [SendFree("w1", [k]) for k in stolen]
    assert set(stolen) == set(keys[-len(stolen):])
    for k in stolen:
        assert sim.state.tasks[k].processing_on is sim.state.workers["w2"]
    assert [r[3] for r in sim.state.story(stolen[0])][-1] == "WorkerJoined"


def test_started_tasks_are_never_stolen(sim: Sim) -> None:
    keys = _backlog_on_w1(sim)
    sim.started("w1", *keys[5:])
    out = sim.join("w2")
    stolen = {k for _, k in computes(out)}
    assert stolen and stolen <= set(keys[:5])


def test_restricted_tasks_are_not_stolen(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w3")
    sim.submit([row("model", workers=["w1"])])
    sim.finish("model", nbytes=BIG)
    sim.submit([row(f"pinned-{i}", ["model"], workers=["w1"]) for i in range(10)])
    assert computes(sim.join("w2")) == []


def test_tasks_sent_ahead_for_throughput_are_not_stolen(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(100)])
    sim.finish("t-0", duration=0.001)  # w1 now holds a deep batch of short tasks
    assert len(sim.state.workers["w1"].processing) > 10
    out = sim.join("w2")
    assert of(out, SendFree) == []


def test_a_backlog_that_a_measured_duration_reveals_is_stolen_at_the_next_tick() -> None:
    sim = Sim(SchedulerState(unknown_duration=0.01))
    sim.join("w1")
    sim.submit([row("model", workers=["w1"])])
    sim.finish("model", nbytes=BIG)
    keys = [f"predict-{i}" for i in range(10)]
    sim.submit([row(k, ["model"], prefix="predict", priority=(i,)) for i, k in enumerate(keys)])
    # 0.1 s guessed: short tasks sent ahead, nothing to steal when w2 joins
    assert len(sim.state.workers["w1"].processing) == 10
    assert computes(sim.join("w2")) == []
    sim.finish(keys[0], duration=1.0)  # the other nine now look like 9 s of work
    out = sim.state.handle(Tick(sim.now))
    assert any(w == "w2" for w, _ in computes(out))


def test_result_from_the_victim_after_a_steal_is_discarded(sim: Sim) -> None:
    keys = _backlog_on_w1(sim)
    out = sim.join("w2")
    k = next(k for w, k in computes(out) if w == "w2")
    # the victim had finished it already (its report crossed the steal)
    out = sim.finish(k, worker="w1")
    assert out == [SendFree("w1", [k])]
    assert sim.states(k) == ["processing"]
    assert of(sim.finish(k), ReportDone) == [ReportDone("c", k, 8, "int", None)]
    assert {w.address for w in sim.state.tasks[k].who_has} == {"w2"}
    assert keys


def test_worker_idle_after_finishing_steals_again(sim: Sim) -> None:
    keys = _backlog_on_w1(sim, n=40)
    out = sim.join("w2")
    on_w2 = [k for w, k in computes(out) if w == "w2"]
    for k in on_w2:
        out = sim.finish(k, duration=0.5)
    # w2 ran dry while w1 still has a backlog: it takes more
    assert any(w == "w2" for w, _ in computes(out)), keys
