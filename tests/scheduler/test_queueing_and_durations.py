"""Scenario tests of how deep the pure scheduler fills each worker: measured durations, priorities, bounded prefix tables.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler._dispatch import FILL_STEP
from shoal.scheduler._events import ContinueWork, WorkResumed
from shoal.scheduler._state_base import prefix_counts

from ._sim import Sim, computes, of, row

# --- queueing ---------------------------------------------------------------------------------


def test_unknown_durations_send_only_nthreads_tasks(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    out = sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(100)])
    assert computes(out) == [("w1", "t-0")]
    assert prefix_counts(sim.state)["t"]["queued"] == 99


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


def test_room_opening_for_thousands_sends_them_in_bounded_steps(sim: Sim) -> None:
    # A report that opened room for thousands of queued tasks (a short prefix measured for
    # the first time, or its estimate falling back after a slow run) placed them all in one
    # step: 5,000 computes held the scheduler's loop for 40-60 ms in the 100k-task map.
    sim.join("w1", nthreads=1)
    n = 3 * FILL_STEP + 10
    sim.submit([row(f"t-{i}", prefix="t", priority=(i,)) for i in range(n)])
    out = sim.finish("t-0", duration=1e-6)
    sent = computes(out)
    assert len(sent) == FILL_STEP and len(of(out, ContinueWork)) == 1
    steps = 1
    while of(out, ContinueWork):  # ends: each step sends FILL_STEP of the n queued tasks
        sim.state.validate()
        out = sim.state.handle(WorkResumed())
        assert len(computes(out)) <= FILL_STEP
        sent += computes(out)
        steps += 1
    assert steps == 4  # 3 full steps, the last one's 9 tasks, no step asking for nothing more
    assert sent == [("w1", f"t-{i}") for i in range(1, n)]  # all of them, in priority order
    assert prefix_counts(sim.state)["t"].get("queued", 0) == 0


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
    assert prefix_counts(sim.state) == {}
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
