"""Scenario tests of work stealing in the pure scheduler.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ReportDone,
    SendFree,
    Tick,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row

BIG = placement.LOCALITY_BYTES + 1

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


def test_no_task_is_stolen_with_work_stealing_off() -> None:
    # dask's distributed.scheduler.work-stealing: False
    sim = Sim(SchedulerState(work_stealing=False))
    keys = _backlog_on_w1(sim)
    out = sim.join("w2")
    assert computes(out) == [] and of(out, SendFree) == []
    assert all(sim.state.tasks[k].processing_on is sim.state.workers["w1"] for k in keys)
    sim.now += 1.0
    assert computes(sim.state.handle(Tick(sim.now))) == []
    assert len(sim.state.workers["w1"].processing) == len(keys)


def test_a_lone_task_on_an_idle_worker_arms_no_steal_scan(sim: Sim) -> None:
    # Sequential submit(...).result(): each task goes to a worker that ran dry and makes no
    # backlog, so the scan over every worker for victims (found none once) is not run again.
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")])
    sim.finish("a")
    assert sim.state._no_victims
    for key in ("b", "c"):
        sim.submit([row(key)])
        assert sim.state._no_victims
        sim.finish(key)
        assert sim.state._no_victims
