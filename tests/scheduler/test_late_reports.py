"""Reports that arrive after the scheduler changed its mind (found by the cluster fuzzer,
tests/scheduler/test_fuzz.py): they must not make it believe a worker holds data it drops."""

from __future__ import annotations

from typing import Any

from shoal.scheduler._events import (
    GraphSubmitted,
    KeysReleased,
    ReportDone,
    ReportErred,
    SendFree,
)
from shoal.worker._state import ExecuteDone

from ._cluster_sim import ERROR, PAYLOAD, ClusterSim, SimWorker
from ._sim import Sim, row


def test_result_of_a_run_freed_on_that_worker_adds_no_replica(sim: Sim) -> None:
    # "a" runs on w1; the client releases it (w1 is told to free it) and submits it again;
    # it lands on w2 and finishes there. Then w1's result of the freed run arrives: w1
    # drops that value when the free reaches it, so it must not count as a holder.
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"])])
    assert SendFree("w1", ["a"]) in sim.release("a")
    sim.submit([row("a", workers=["w2"])])
    sim.finish("a", worker="w2")
    out = sim.finish("a", worker="w1")
    ts = sim.state.tasks["a"]
    assert [ws.address for ws in ts.who_has] == ["w2"]
    assert sim.state.workers["w1"].has_what == set()
    assert out == [SendFree("w1", ["a"])]


def test_duplicate_result_from_the_holder_changes_nothing(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a", worker="w1", nbytes=100)
    assert sim.finish("a", worker="w1", nbytes=100) == []
    assert sim.state.workers["w1"].nbytes == 100


# --- reports of an earlier run of a key, on the worker that runs it again ------------------
# Scripted lives of the cluster simulation (a real SchedulerState and a real WorkerState,
# FIFO wires between them): the interleavings the fuzzer found (seed 12935, HOSTILE),
# replayed step by step.


def _cluster() -> tuple[ClusterSim, SimWorker]:
    cluster = ClusterSim(0, frozenset())
    cluster.join()
    (sw,) = cluster.workers.values()
    return cluster, sw


def _submit(cluster: ClusterSim, key: str, *, release_first: bool = False) -> None:
    task = (key, PAYLOAD, [], (), (0,), 0, None, key)
    events: list[Any] = [KeysReleased("alice", [key])] if release_first else []
    cluster.handle(*events, GraphSubmitted("alice", [task], [key]))


def _execute(cluster: ClusterSim, sw: SimWorker, *, fail: bool = False) -> None:
    """The executor runs the oldest Execute order and the loop hears of it at once."""
    cmd = sw.executor.pop(0)
    if fail:
        cluster._worker_handle(sw, ExecuteDone(cmd.key, 0, "", 0.0, 0.1, 0, None,
                                               {**ERROR, "key": cmd.key}))
    else:
        sw.store[cmd.key] = 8
        cluster._worker_handle(sw, ExecuteDone(cmd.key, 8, "int", 0.0, 0.1, 0, None, None))


def _client_hears(cluster: ClusterSim, *events: Any) -> list[Any]:
    out = cluster.state.handle(*events)
    cluster.state.validate()
    cluster._route(out)
    return [c for c in out if isinstance(c, (ReportDone, ReportErred))]


def test_result_of_an_earlier_run_is_not_taken_for_the_run_after_a_resubmit() -> None:
    # "a" runs on w1 and finishes; its report is still on the wire when the client
    # releases "a" and submits it again: w1 is told to free "a", then to compute it again.
    # The late report is of the freed run: w1 drops that value on the free. Taking it for
    # the new run told the client "a" was done while the value was being dropped, and
    # the new run's own outcome (here: it raises) was then ignored.
    cluster, sw = _cluster()
    _submit(cluster, "a")
    cluster.deliver_to_worker(sw)
    _execute(cluster, sw)
    assert len(sw.outbox) == 1  # the first run's TaskDone, not delivered yet
    _submit(cluster, "a", release_first=True)
    told = _client_hears(cluster, cluster._to_scheduler(sw.address, sw.outbox.popleft()))
    assert told == []
    assert cluster.state.tasks["a"].state == "processing"
    cluster.deliver_to_worker(sw)  # the free: w1 drops its value
    cluster.deliver_to_worker(sw)  # compute "a" again
    assert "a" not in sw.store
    _execute(cluster, sw, fail=True)
    told = _client_hears(cluster, cluster._to_scheduler(sw.address, sw.outbox.popleft()))
    assert [type(c).__name__ for c in told] == ["ReportErred"]
    assert cluster.state.tasks["a"].state == "erred"
    cluster.check_live()


def test_failure_of_an_earlier_run_is_not_taken_for_the_run_after_a_resubmit() -> None:
    cluster, sw = _cluster()
    _submit(cluster, "a")
    cluster.deliver_to_worker(sw)
    _execute(cluster, sw, fail=True)
    _submit(cluster, "a", release_first=True)
    told = _client_hears(cluster, cluster._to_scheduler(sw.address, sw.outbox.popleft()))
    assert told == []
    assert cluster.state.tasks["a"].state == "processing"
    cluster.deliver_to_worker(sw)
    cluster.deliver_to_worker(sw)
    _execute(cluster, sw)
    told = _client_hears(cluster, cluster._to_scheduler(sw.address, sw.outbox.popleft()))
    assert [type(c).__name__ for c in told] == ["ReportDone"]
    cluster.check_live()


def test_run_freed_while_executing_and_assigned_again_reports_for_the_new_run() -> None:
    # Freed while its thread runs it, then assigned again to the same worker: the worker
    # keeps the run going (dask's cancelled -> resumed) and its result is the new run's.
    cluster, sw = _cluster()
    _submit(cluster, "a")
    cluster.deliver_to_worker(sw)
    _submit(cluster, "a", release_first=True)
    cluster.deliver_to_worker(sw)  # the free: the running task is cancelled
    cluster.deliver_to_worker(sw)  # compute again: it resumes
    assert sw.executor and not sw.executor[1:]  # no second execution
    _execute(cluster, sw)
    told = _client_hears(cluster, cluster._to_scheduler(sw.address, sw.outbox.popleft()))
    assert [type(c).__name__ for c in told] == ["ReportDone"]
    assert [w.address for w in cluster.state.tasks["a"].who_has] == [sw.address]
    cluster.check_live()


# --- the scheduler's side: which run a report answers ------------------------------------


def _reassigned(sim: Sim) -> tuple[int, int]:
    """"a" runs on w1 (its only worker), is released and submitted again: it runs on w1
    again. Returns the old and the new run id."""
    sim.join("w1")
    sim.submit([row("a")])
    old = sim.run_of("a")
    out = sim.release("a") + sim.submit([row("a")])
    assert [type(c).__name__ for c in out] == ["SendFree", "SendCompute"]
    new = sim.run_of("a")
    assert new != old
    return old, new


def test_result_of_the_old_run_is_ignored_without_a_free(sim: Sim) -> None:
    # A free now would reach w1 after the new Compute and cancel the new run: a hang.
    old, new = _reassigned(sim)
    assert sim.finish("a", run=old) == []
    assert sim.states("a") == ["processing"]
    assert sim.finish("a", run=new) == [ReportDone("c", "a", 8, "int", None)]


def test_failure_of_the_old_run_is_ignored(sim: Sim) -> None:
    old, new = _reassigned(sim)
    assert sim.fail("a", run=old) == []
    assert sim.states("a") == ["processing"]
    assert [type(c).__name__ for c in sim.fail("a", run=new)] == ["ReportErred"]


def test_old_run_seceding_does_not_free_the_new_runs_slot(sim: Sim) -> None:
    old, _ = _reassigned(sim)
    sim.seceded("w1", "a", 0.5, run=old)
    assert sim.state.workers["w1"].long_running == set()


def test_old_run_reported_started_does_not_make_the_new_run_a_suspect(sim: Sim) -> None:
    # Only tasks that ran on a worker are blamed for its death (KilledWorker).
    old, new = _reassigned(sim)
    sim.started("w1", "a", runs=[old])
    assert not sim.state.tasks["a"].started
    sim.started("w1", "a", runs=[new])
    assert sim.state.tasks["a"].started

