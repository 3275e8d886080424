"""Scenario tests of losing workers in the pure scheduler: tasks move, lost data is recomputed, KilledWorker, heartbeats.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.protocol._errors import KilledWorker, LostDataError, error_to_exception
from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    CloseWorker,
    HeartbeatReceived,
    LogEvent,
    ReportDone,
    ReportErred,
    SendFree,
    Tick,
    WorkerMemoryKilled,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row

BIG = placement.LOCALITY_BYTES + 1

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


def test_killed_worker_message_starts_as_dasks_and_names_every_worker() -> None:
    state = SchedulerState(allowed_failures=1)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("crash", workers=["w1"])])
    sim.leave("w1")
    sim.join("w1")
    (cmd,) = sim.leave("w1")
    text = str(error_to_exception(cmd.error))
    assert text.startswith(
        "Attempted to run task 'crash' on 2 different workers, but all those workers died "
        "while running it. The last worker that attempt to run the task was w1.")
    assert "distributed.scheduler.allowed-failures" in text
    state.validate()


def test_killed_worker_says_its_nanny_killed_it_for_memory_and_what_to_do() -> None:
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("grow", workers=["w1"])])
    sim.started("w1", "grow")
    state.handle(WorkerMemoryKilled("w1", 580 * 2**20, 600 * 2**20, 0.95))
    (cmd,) = sim.leave("w1")
    exc = error_to_exception(cmd.error)
    assert isinstance(exc, KilledWorker) and exc.workers == ["w1"] and exc.task == "grow"
    text = str(exc)
    assert text.startswith("Attempted to run task 'grow' on 1 different workers, but all "
                           "those workers died while running it.")
    for said in ("killed by its nanny for exceeding its memory limit", "580 MiB",
                 "95% (distributed.worker.memory.terminate) of its 600 MiB memory_limit",
                 "while running 'grow'", "memory_limit", "smaller chunks",
                 "distributed.worker.memory.terminate"):
        assert said in text, said
    state.validate()


def test_a_memory_kill_note_is_forgotten_with_its_worker() -> None:
    # The note belongs to that worker's life only: a worker rejoining on the same address
    # and crashing otherwise gets the generic message.
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1")
    state.handle(WorkerMemoryKilled("w1", 580 * 2**20, 600 * 2**20, 0.95))
    sim.leave("w1")
    sim.join("w1")
    sim.submit([row("crash", workers=["w1"])])
    (cmd,) = sim.leave("w1")
    assert "memory limit" not in str(error_to_exception(cmd.error))


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


def test_worker_death_before_it_said_it_was_ready_blames_nothing() -> None:
    # A worker process registers, then imports dask and the collections in the background
    # (seconds under load); its tasks wait for that import without running. Killed meanwhile
    # (chaos test: 4 kills of fresh workers failed one innocent task with KilledWorker), it
    # was running nothing: only a worker that said it was ready has its first tasks blamed.
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1", ready=False)
    sim.submit([row(f"t-{i}", prefix="t", priority=(0, i)) for i in range(1, 3)])
    out = sim.leave("w1")
    assert of(out, ReportErred) == []
    assert [state.tasks[k].suspicious for k in ("t-1", "t-2")] == [0, 0]
    sim.join("w2", ready=False)
    sim.started("w2")  # ready: its first task is the one running now
    out = sim.leave("w2")
    assert [r.key for r in of(out, ReportErred)] == ["t-1"]
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


# --- heartbeats ---------------------------------------------------------------------------


def test_silent_worker_is_closed_after_ttl() -> None:
    state = SchedulerState(worker_ttl=10.0)
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"])])
    state.handle(HeartbeatReceived("w1", 100, 50, 0.5, 1, now=8.0))
    out = state.handle(Tick(now=15.0))
    assert [c for c in out if not isinstance(c, LogEvent)] == [
        CloseWorker("w2", "no heartbeat for 10.0 s")]
    assert set(state.workers) == {"w1"}
    out = state.handle(Tick(now=19.0))
    assert [c for c in out if not isinstance(c, LogEvent)] == [
        CloseWorker("w1", "no heartbeat for 10.0 s")]
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
