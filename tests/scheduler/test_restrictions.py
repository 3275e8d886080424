"""Placement under restrictions: ``resources=``, ``workers=`` (by address, name or host),
``allow_other_workers`` and the scheduler-side queue of restricted tasks."""

from __future__ import annotations

from shoal.scheduler._events import SendCompute, SendFree, Tick
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, row

GPU = {"GPU": 1.0}


def _gpu(*keys: str) -> dict[str, tuple[dict[str, float] | None, bool]]:
    return {k: (GPU, False) for k in keys}


def test_task_needing_a_resource_goes_only_to_a_worker_offering_it(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2", resources={"GPU": 1})
    out = sim.submit([row("a")], restrictions=_gpu("a"))
    assert computes(out) == [("w2", "a")]


def test_resource_no_worker_has_leaves_the_task_in_no_worker(sim: Sim) -> None:
    sim.join("w1", resources={"MEM": 10e9})
    out = sim.submit([row("a")], restrictions=_gpu("a"))
    assert computes(out) == []
    assert sim.states("a") == ["no-worker"]
    out = sim.join("w2", resources={"GPU": 2})
    assert computes(out) == [("w2", "a")]


def test_tasks_holding_a_resource_never_share_it(sim: Sim) -> None:
    sim.join("w1", nthreads=4, resources={"GPU": 1})
    keys = [f"g-{i}" for i in range(5)]
    out = sim.submit([row(k, priority=(i,)) for i, k in enumerate(keys)], restrictions=_gpu(*keys))
    assert computes(out) == [("w1", "g-0")]  # four threads, but one GPU
    for i in range(4):
        out = sim.finish(f"g-{i}")
        assert computes(out) == [("w1", f"g-{i + 1}")]
    assert sim.state.workers["w1"].free == {"GPU": 0.0}
    sim.finish("g-4")
    assert sim.state.workers["w1"].free == {"GPU": 1.0}


def test_resources_come_back_when_the_task_fails_or_is_released(sim: Sim) -> None:
    sim.join("w1", resources={"GPU": 1})
    sim.submit([row("a"), row("b")], restrictions=_gpu("a", "b"))
    (first,) = sim.state.workers["w1"].processing
    other = "b" if first.key == "a" else "a"
    out = sim.fail(first.key)
    assert computes(out) == [("w1", other)]
    out = sim.release(other)
    assert SendFree("w1", [other]) in out
    assert sim.state.workers["w1"].free == {"GPU": 1.0}


def test_resource_tasks_fill_several_workers(sim: Sim) -> None:
    sim.join("w1", nthreads=2, resources={"GPU": 1})
    sim.join("w2", nthreads=2, resources={"GPU": 1})
    sim.join("w3", nthreads=2)
    keys = [f"g-{i}" for i in range(6)]
    out = sim.submit([row(k) for k in keys], restrictions=_gpu(*keys))
    assert sorted(w for w, _ in computes(out)) == ["w1", "w2"]


def test_unrestricted_tasks_still_use_the_threads_a_resource_task_leaves(sim: Sim) -> None:
    sim.join("w1", nthreads=2, resources={"GPU": 1})
    sim.submit([row("g-0"), row("g-1")], restrictions=_gpu("g-0", "g-1"))
    out = sim.submit([row("plain")])
    assert computes(out) == [("w1", "plain")]


def test_quantities_add_up(sim: Sim) -> None:
    sim.join("w1", nthreads=4, resources={"MEM": 10e9})
    need = {"MEM": 4e9}
    out = sim.submit([row(f"m-{i}") for i in range(3)],
                     restrictions={f"m-{i}": (need, False) for i in range(3)})
    assert len(computes(out)) == 2


def test_workers_restriction_matches_host(sim: Sim) -> None:
    sim.join("tcp://10.0.0.1:1234", host="10.0.0.1")
    sim.join("tcp://10.0.0.2:1234", host="10.0.0.2")
    out = sim.submit([row("a", workers=["10.0.0.2"])])
    assert computes(out) == [("tcp://10.0.0.2:1234", "a")]


def test_allow_other_workers_prefers_the_named_worker_when_it_has_room(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    out = sim.submit([row("a", workers=["w2"])], restrictions={"a": (None, True)})
    assert computes(out) == [("w2", "a")]


def test_allow_other_workers_runs_elsewhere_when_the_named_worker_is_full(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("busy", workers=["w2"])])
    out = sim.submit([row("a", workers=["w2"])], restrictions={"a": (None, True)})
    assert computes(out) == [("w1", "a")]


def test_allow_other_workers_with_unknown_worker_runs_anywhere(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("a", workers=["nowhere"])], restrictions={"a": (None, True)})
    assert computes(out) == [("w1", "a")]


def test_strict_unknown_worker_is_no_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", workers=["nowhere"])])
    assert sim.states("a") == ["no-worker"]


def test_many_restricted_tasks_send_at_most_the_saturation_amount(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.join("w2", nthreads=2)
    # A measured, short duration: the worker may take a deep batch, but not all of them.
    sim.submit([row("warm", prefix="t", workers=["w1"])])
    sim.finish("warm", duration=0.001)
    out = sim.submit([row(f"t-{i}", prefix="t", priority=(i,), workers=["w1"])
                      for i in range(10_000)])
    sent = computes(out)
    ws = sim.state.workers["w1"]
    assert {w for w, _ in sent} == {"w1"}
    # has_room: nthreads slots plus SATURATION_SECONDS of queued work per thread (~100).
    assert 2 <= len(sent) <= 2 + 2 * 0.05 / 0.001 + 1, len(sent)
    assert len(ws.processing) == len(sent)
    # Finishing one sends about one more (its slot), never the whole backlog.
    key = sent[0][1]
    more = computes(sim.finish(key, duration=0.001))
    assert 1 <= len(more) <= 2
    # Every task runs in the end, never more than a batch at once.
    while ws.processing:
        assert len(ws.processing) <= 2 + 2 * 0.05 / 0.001 + 1
        ts = min(ws.processing, key=lambda t: t.priority)
        sim.finish(ts.key, duration=0.001)
    assert sim.states(*[f"t-{i}" for i in range(10_000)]) == ["memory"] * 10_000


def test_held_task_moves_when_its_worker_leaves(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1", "w2"]), row("b", workers=["w1", "w2"]),
                row("c", workers=["w1", "w2"])])
    held = [k for k in "abc" if sim.state.tasks[k].held_on is not None]
    assert len(held) == 1
    holder = sim.state.tasks[held[0]].held_on
    assert holder is not None
    other = "w2" if holder.address == "w1" else "w1"
    out = sim.leave(holder.address)
    assert set(computes(out)) <= {(other, k) for k in "abc"}
    assert sim.state.tasks[held[0]].state in ("queued", "processing")


def test_held_task_released_before_it_runs_is_never_sent(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", workers=["w1"]), row("b", workers=["w1"])])
    (running,) = sim.state.workers["w1"].processing
    other = "b" if running.key == "a" else "a"
    sim.release(other)
    out = sim.finish(running.key)
    assert computes(out) == []
    assert sim.states(other) == ["forgotten"]


def test_resource_tasks_are_not_stolen() -> None:
    state = SchedulerState()
    sim = Sim(state)
    sim.join("w1", nthreads=1, resources={"GPU": 1})
    sim.join("w2", nthreads=1, resources={"GPU": 1})
    keys = [f"g-{i}" for i in range(4)]
    sim.submit([row(k) for k in keys], restrictions=_gpu(*keys))
    out = state.handle(Tick(1.0))
    # Every move goes through a fit check: at most one GPU task on each worker at a time.
    for ws in state.workers.values():
        assert sum(1 for t in ws.processing if t.resources) <= 1
    assert all(isinstance(c, SendCompute) or not isinstance(c, SendFree) for c in out)
    state.validate()


def test_locality_placed_tasks_never_exceed_the_per_worker_cap() -> None:
    from shoal.scheduler import _placement as placement

    state = SchedulerState(bandwidth=1.0)  # moving the input never pays: all belong on w1
    sim = Sim(state)
    sim.join("w1")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=10**9)
    sim.join("w2")
    cap = placement.MAX_AHEAD_PER_THREAD
    n = cap + 500
    out = sim.submit([row(f"y-{i}", ["x"], prefix="y", priority=(i,)) for i in range(n)])
    sent = computes(out)
    assert {w for w, _ in sent} == {"w1"}
    assert len(sent) == cap
    assert len(state.workers["w1"].held) == 500
    # The held ones follow as the worker has room again; never more than the cap at once.
    ws = state.workers["w1"]
    while ws.processing:
        assert len(ws.processing) <= cap
        ts = min(ws.processing, key=lambda t: t.priority)
        sim.finish(ts.key, duration=0.001)
    assert sim.states(*[f"y-{i}" for i in range(n)]) == ["memory"] * n
    state.validate()


def test_a_seceded_task_lets_a_held_task_through(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("long", workers=["w1"], priority=(0,)),
                row("next", workers=["w1"], priority=(1,))])
    assert sim.states("long", "next") == ["processing", "queued"]
    out = sim.seceded("w1", "long", 0.01)
    assert computes(out) == [("w1", "next")]


def test_released_held_tasks_do_not_stay_referenced(sim: Sim) -> None:
    sim.join("w1")
    keys = [f"t-{i}" for i in range(500)]
    sim.submit([row(k, workers=["w1"], priority=(i,)) for i, k in enumerate(keys)])
    ws = sim.state.workers["w1"]
    assert len(ws.held) == 499
    sim.release(*keys[1:])
    sim.state.handle(Tick(1.0))
    assert len(ws.held) == 0
    assert ws.held_live == 0


def test_unknown_task_duration_decides_whether_a_pinned_task_queues_on_a_busy_worker() -> None:
    """dask's ``distributed.scheduler.unknown-task-duration``: prefixes never measured are
    assumed to last that long. Assumed short, a second pinned task is sent to its busy
    worker to queue there; at the default (half a second) it waits on the scheduler."""
    for unknown, sent in ((0.001, [("w1", "a"), ("w1", "b")]), (0.5, [("w1", "a")])):
        state = SchedulerState(unknown_duration=unknown)
        sim = Sim(state)
        sim.join("w1")
        out = sim.submit([row("a", workers=["w1"], prefix="a"),
                          row("b", workers=["w1"], prefix="b", priority=(1,))])
        assert computes(out) == sent
        state.validate()
