"""Scatter (issue 9, items 1 and 11): a scattered key is in memory only once a worker has
acknowledged holding it; a worker that cannot load it errs the key; scattering a key that
is being computed answers (the scattered data wins, as in dask.distributed)."""

from __future__ import annotations

import pickle

from shoal.protocol._errors import KilledWorker, error_to_exception
from shoal.scheduler._events import (
    DropScattered,
    ReportDone,
    ReportErred,
    SendFree,
    SendStore,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, error_for, of, row


def test_scatter_is_done_only_after_the_worker_acknowledges(sim: Sim) -> None:
    sim.join("w1")
    out = sim.scatter([("x", 100)], ack=False)
    assert out == [SendStore("w1", "x")]
    assert sim.states("x") == ["scattering"]
    assert not sim.state.tasks["x"].who_has
    out = sim.ack("w1", "x")
    assert out == [ReportDone("c", "x", 100, "ndarray", None), DropScattered(["x"])]
    assert sim.states("x") == ["memory"]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w1"}


def test_scatter_a_worker_cannot_load_errs_the_key(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 100)], ack=False)
    error = error_for("x", ImportError("no module named 'mine'"), "w1")
    out = sim.ack("w1", "x", error)
    (erred,) = of(out, ReportErred)
    assert erred.key == "x" and "mine" in erred.error["message"]
    assert DropScattered(["x"]) in out
    assert sim.states("x") == ["erred"]
    assert not sim.state.workers["w1"].has_what


def test_broadcast_is_done_once_every_target_acknowledged(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.scatter([("x", 10)], broadcast=True, ack=False)
    assert sorted(c.worker for c in of(out, SendStore)) == ["w1", "w2"]
    assert of(sim.ack("w1", "x"), ReportDone) == []
    assert sim.states("x") == ["memory"]  # usable as soon as one worker holds it
    assert of(sim.ack("w2", "x"), ReportDone) == [ReportDone("c", "x", 10, "ndarray", None)]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w1", "w2"}


def test_broadcast_one_worker_failing_to_load_keeps_the_others(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 10)], broadcast=True, ack=False)
    sim.ack("w1", "x", error_for("x", ImportError("nope"), "w1"))
    out = sim.ack("w2", "x")
    assert of(out, ReportDone) == [ReportDone("c", "x", 10, "ndarray", None)]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w2"}


def test_tasks_on_a_key_being_scattered_wait_for_it(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 10)], ack=False)
    out = sim.submit([row("y", ["x"])], wanted=["y"])
    assert computes(out) == [] and of(out, ReportErred) == []
    assert sim.states("y") == ["waiting"]
    assert computes(sim.ack("w1", "x")) == [("w1", "y")]


def test_worker_dying_before_its_ack_sends_the_data_elsewhere(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 10)], workers=["w1"], ack=False)
    out = sim.leave("w1")
    assert out == [SendStore("w2", "x")]
    assert of(sim.ack("w2", "x"), ReportDone) == [ReportDone("c", "x", 10, "ndarray", None)]


def test_last_worker_dying_before_its_ack_errs_the_scatter(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 10)], ack=False)
    out = sim.leave("w1")
    (erred,) = of(out, ReportErred)
    assert erred.error["kind"] == "lost-data"
    # Says what killed it may be: not "scatter it again", which would kill again.
    assert "storing it died (w1)" in erred.error["message"]
    assert "memory_limit" in erred.error["message"]
    assert DropScattered(["x"]) in out
    assert sim.states("x") == ["erred"]


def test_scatter_to_a_key_being_computed_answers_and_the_data_wins(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    assert sim.states("x") == ["processing"]
    out = sim.scatter([("x", 10)], workers=["w2"], ack=False)
    assert out == [SendStore("w2", "x")]
    out = sim.ack("w2", "x")
    assert SendFree("w1", ["x"]) in out  # the computation is no longer needed
    assert ReportDone("c", "x", 10, "ndarray", None) in out
    assert sim.states("x") == ["memory"]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w2"}
    assert not sim.state.workers["w1"].processing


def test_scatter_to_a_key_waiting_on_inputs_releases_them(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", workers=["w1"]), row("x", ["a"])], wanted=["x"])
    sim.scatter([("x", 10)], ack=False)
    out = sim.ack("w1", "x")
    assert ReportDone("c", "x", 10, "ndarray", None) in out
    assert SendFree("w1", ["a"]) in out  # nothing needs the input any more
    assert sim.states("a") == ["released"]


def test_second_scatter_of_a_key_in_flight_waits_for_the_same_ack(sim: Sim) -> None:
    sim.join("w1")
    assert sim.scatter([("x", 10)], ack=False) == [SendStore("w1", "x")]
    assert sim.scatter([("x", 10)], ack=False) == []
    out = sim.ack("w1", "x")
    assert of(out, ReportDone) == [ReportDone("c", "x", 10, "ndarray", None)]


def test_ack_nobody_waits_for_frees_the_copy(sim: Sim) -> None:
    sim.join("w1")
    assert sim.ack("w1", "ghost") == [SendFree("w1", ["ghost"])]


def test_scattered_key_released_before_its_ack_is_freed_on_arrival(sim: Sim) -> None:
    sim.join("w1")
    sim.scatter([("x", 10)], ack=False)
    sim.release("x")
    out = sim.ack("w1", "x")
    assert SendFree("w1", ["x"]) in out
    assert of(out, ReportDone) == []
    assert "x" not in sim.state.tasks


def test_scatter_over_a_computation_avoids_the_worker_computing_it(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    for _ in range(4):  # whatever the round-robin says
        sim.release("x")
        sim.submit([row("x", workers=["w1"])])
        assert sim.scatter([("x", 10)], ack=False) == [SendStore("w2", "x")]
        sim.ack("w2", "x")
        assert sim.states("x") == ["memory"]
        sim.release("x")


def test_scatter_over_a_computation_on_the_only_worker_keeps_its_copy(sim: Sim) -> None:
    """The worker holds the scattered value under the key its task is computing: freeing
    the task there would drop the value too, so the task is left to finish (its result
    then replaces the value, which for the same key is the same data)."""
    sim.join("w1")
    sim.submit([row("x")])
    assert sim.scatter([("x", 10)], ack=False) == [SendStore("w1", "x")]
    out = sim.ack("w1", "x")
    assert of(out, SendFree) == []
    assert ReportDone("c", "x", 10, "ndarray", None) in out
    assert sim.states("x") == ["memory"]
    assert of(sim.finish("x", "w1"), SendFree) == []
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w1"}


def test_acks_of_a_released_scatter_leave_a_task_of_the_same_key_alone(sim: Sim) -> None:
    """Found by the cluster fuzzer (seeds 12340, 124844, 155746): a broadcast scatter of
    ``x`` is in flight (w3 has acknowledged) when ``x`` is released, then submitted again as
    a task, on w1. The release frees the copies still on their way to w1 and w2 (each free
    follows its store), so their late acks belong to the released scatter: they must
    neither make the scattered data win over the new task (the free already sent would drop
    it: the scheduler would list a holder that holds nothing) nor free ``x`` on w1 again
    (that free would arrive after the new compute and drop it: the task never finishes)."""
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    assert len(of(sim.scatter([("x", 10)], broadcast=True, ack=False), SendStore)) == 3
    sim.ack("w3", "x")
    out = sim.release("x")
    assert sorted(c.worker for c in of(out, SendFree)) == ["w1", "w2", "w3"]
    assert DropScattered(["x"]) in out
    sim.submit([row("x", workers=["w1"])])
    assert sim.states("x") == ["processing"]
    assert sim.ack("w2", "x") == []
    assert sim.ack("w1", "x") == []
    assert sim.states("x") == ["processing"]
    assert sim.state.tasks["x"].processing_on is sim.state.workers["w1"]
    out = sim.finish("x", "w1")
    assert [r.key for r in of(out, ReportDone)] == ["x"]
    assert {w.address for w in sim.state.tasks["x"].who_has} == {"w1"}


def test_a_stale_ack_never_frees_a_key_on_the_worker_computing_it(sim: Sim) -> None:
    """An ack no scatter waits for frees the copy, unless that worker is computing the
    key: the free would drop the computation (its result replaces the copy anyway)."""
    sim.join("w1")
    sim.submit([row("x")])
    assert sim.states("x") == ["processing"]
    assert sim.ack("w1", "x") == []
    assert sim.states("x") == ["processing"]


def test_a_worker_dying_forgets_the_acks_it_owed(sim: Sim) -> None:
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    sim.scatter([("x", 10)], broadcast=True, ack=False)
    sim.ack("w3", "x")
    sim.release("x")
    assert sim.state._undone
    sim.leave("w1")
    sim.leave("w2")
    assert not sim.state._undone


def test_scatter_whose_workers_keep_dying_errs_killedworker_past_allowed_failures() -> None:
    # Data too big for a worker kills each one sent it: sent on after a death (a worker
    # may die of something else), but only up to allowed_failures deaths, as for a task,
    # not to every worker of the cluster in turn, each of them restarted by its nanny.
    state = SchedulerState(allowed_failures=1)
    sim = Sim(state)
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    sim.scatter([("x", 250_000_000)], workers=["w1"], ack=False)
    (store,) = of(sim.leave("w1"), SendStore)
    out = sim.leave(store.worker)
    assert of(out, SendStore) == []  # not sent to w3 too
    (erred,) = of(out, ReportErred)
    assert DropScattered(["x"]) in out
    assert sim.states("x") == ["erred"]
    exc = error_to_exception(erred.error)
    assert isinstance(exc, KilledWorker)
    assert exc.workers == ["w1", store.worker]
    message = str(exc)
    assert "'x' (ndarray, 250.00 MB)" in message and "memory_limit" in message
    assert str(pickle.loads(pickle.dumps(exc))) == message
    state.validate()


def test_a_worker_leaving_on_purpose_does_not_count_against_a_scatter() -> None:
    state = SchedulerState(allowed_failures=0)
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 10)], workers=["w1"], ack=False)
    assert sim.retire("w1") == [SendStore("w2", "x")]
    assert of(sim.ack("w2", "x"), ReportDone) == [ReportDone("c", "x", 10, "ndarray", None)]
