"""What a restart drops and where retiring workers' data goes: pure decisions on the
scheduler's state, no sockets."""

from __future__ import annotations

from shoal.scheduler._events import (
    ClusterReset,
    DataCopied,
    GraphSubmitted,
    LogEvent,
    ReportRestarted,
    SendFree,
)
from shoal.scheduler._retire import Move, plan_retirement
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row


def test_reset_forgets_every_task_and_worker_and_tells_every_client_once(sim: Sim):
    state = sim.state
    sim.state.handle(GraphSubmitted("other", [], []))
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a"), row("b", ["a"]), row("c")])
    sim.finish("a")
    out = state.handle(ClusterReset("client.restart()"))
    assert state.tasks == {} and state.workers == {}
    assert sorted(c.client for c in of(out, ReportRestarted)) == ["c", "other"]
    assert computes(out) == []
    assert state.story("a")[-1][2] == "forgotten"
    assert all(not held for held in state.clients.values())


def test_reset_logs_each_worker_removed_as_dask_does(sim: Sim):
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")])
    out = sim.state.handle(ClusterReset("client.restart()"))
    removed = [(e.topics, e.msg) for e in of(out, LogEvent)
               if e.msg["action"] == "remove-worker"]
    assert sorted(t for t, _ in removed) == [["all"], ["all"], ["w1"], ["w2"]]
    assert sorted(m["worker"] for t, m in removed if t == ["all"]) == ["w1", "w2"]
    # As dask's restart: the tasks are forgotten first, so none is reported lost.
    assert all(m["processing-tasks"] == [] and m["lost-computed-tasks"] == []
               and m["expected"] is True for _, m in removed)


def test_after_a_reset_the_same_keys_run_again_on_new_workers(sim: Sim):
    sim.join("w1")
    sim.submit([row("a")])
    sim.finish("a")
    sim.state.handle(ClusterReset("restart"))
    sim.join("w9")
    assert computes(sim.submit([row("a")])) == [("w9", "a")]
    sim.finish("a")
    assert sim.state.tasks["a"].state == "memory"


def test_reset_drops_queued_and_no_worker_tasks(sim: Sim):
    sim.submit([row("x", workers=["nowhere"])])  # no-worker
    sim.join("w1")
    sim.submit([row(f"q{i}") for i in range(5)])  # one runs, the rest queue
    sim.state.handle(ClusterReset("restart"))
    sim.join("w2")
    assert computes(sim.submit([])) == []  # nothing left to hand out


def _held_on(sim: Sim, key: str, worker: str, nbytes: int = 8) -> None:
    sim.submit([row(key, workers=[worker])])
    sim.finish(key, nbytes=nbytes)


def test_plan_moves_wanted_results_held_only_by_retiring_workers(sim: Sim):
    sim.join("w1")
    sim.join("w2")
    _held_on(sim, "a", "w1", nbytes=100)
    _held_on(sim, "b", "w2")
    plan = plan_retirement(sim.state, ["w1"])
    assert plan.moves == [Move("a", "w1", "w2", 100)]
    assert plan.stranded == frozenset()


def test_plan_skips_results_held_elsewhere_too_or_no_longer_needed(sim: Sim):
    sim.join("w1")
    sim.join("w2")
    _held_on(sim, "a", "w1")
    sim.state.handle(DataCopied("w2", [("a", 8)]))  # a copy exists on w2
    _held_on(sim, "b", "w1")
    sim.release("b")
    assert plan_retirement(sim.state, ["w1"]).moves == []


def test_plan_spreads_moves_to_the_least_loaded_staying_worker(sim: Sim):
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    _held_on(sim, "big", "w1", nbytes=1000)
    _held_on(sim, "small", "w1", nbytes=10)
    _held_on(sim, "held", "w2", nbytes=500)
    moves = plan_retirement(sim.state, ["w1"]).moves
    assert moves == [Move("big", "w1", "w3", 1000), Move("small", "w1", "w2", 10)]


def test_plan_strands_a_worker_when_no_other_worker_stays(sim: Sim):
    sim.join("w1")
    _held_on(sim, "a", "w1")
    plan = plan_retirement(sim.state, ["w1"])
    assert plan.moves == [] and plan.stranded == frozenset({"w1"})


def test_copied_data_keeps_a_result_when_its_first_holder_leaves(sim: Sim):
    sim.join("w1")
    sim.join("w2")
    _held_on(sim, "a", "w1")
    sim.state.handle(DataCopied("w2", [("a", 8)]))
    sim.leave("w1")
    ts = sim.state.tasks["a"]
    assert ts.state == "memory" and [w.address for w in ts.who_has] == ["w2"]


def test_a_copy_of_a_key_no_longer_in_memory_is_freed_on_arrival(state: SchedulerState):
    sim = Sim(state)
    sim.join("w1")
    out = state.handle(DataCopied("w1", [("gone", 8)]))
    assert [(c.worker, c.keys) for c in of(out, SendFree)] == [("w1", ["gone"])]


def test_reset_lets_go_of_the_functions_of_the_tasks_it_forgets(sim: Sim):
    sim.join("w1")
    sim.submit([row("a", fids=["f1"])])
    sim.state.handle(ClusterReset("restart"))
    assert "f1" not in sim.state.functions.refs and "f1" in sim.state.functions.idle
