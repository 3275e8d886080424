"""Scenario tests of how deep the pure scheduler fills each worker: measured durations, priorities, bounded prefix tables.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from typing import Any

from shoal.scheduler._dispatch import FILL_STEP
from shoal.scheduler._events import Command, ContinueWork, TaskFinished, WorkResumed
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


# --- robust estimates ----------------------------------------------------------------------


def _resumed(sim: Sim, out: list[Command]) -> list[tuple[str, Any]]:
    """The computes of ``out`` and of the steps it asked to go on in (bounded fills)."""
    sent = computes(out)
    while of(out, ContinueWork):  # ends: each step places at most FILL_STEP queued tasks
        out = sim.state.handle(WorkResumed())
        sent += computes(out)
    return sent


def _report(sim: Sim, durations: list[float]) -> list[tuple[str, Any]]:
    """w1 reports its oldest running tasks done, one batch (as a worker's ``TasksDone``),
    the i-th lasting ``durations[i]``: the tasks the scheduler sent in answer."""
    ws = sim.state.workers["w1"]
    keys = sorted((ts.key for ts in ws.processing), key=lambda k: int(k.split("-")[1]))
    events = []
    for key, duration in zip(keys[:len(durations)], durations, strict=True):
        start = sim.now
        sim.now += duration
        events.append(TaskFinished("w1", key, 8, "NoneType", start, sim.now, 0, None,
                                   sim.run_of(key)))
    return _resumed(sim, sim.state.handle(*events))


def test_one_slow_run_of_a_short_task_keeps_its_worker_filled(sim: Sim) -> None:
    # A no-op's call lasts a few µs; once in a while its thread is descheduled and a run
    # measures milliseconds. Folded into a moving average, that one run raised the estimate
    # ~50-fold: the worker was sent a handful of tasks (each booked at the inflated
    # estimate) in place of the batch it had just run, while thousands waited queued.
    sim.join("w1", nthreads=1)
    sim.submit([row(f"f-{i}", prefix="f", priority=(i,)) for i in range(20_000)])
    typical = 20e-6
    _report(sim, [typical])  # the first measurement: room for a deep batch
    for _ in range(5):
        assert len(_report(sim, [typical] * 100)) == 100  # steady: each batch replaced
    ahead = len(sim.state.workers["w1"].processing)
    sent = _report(sim, [typical] * 99 + [5e-3])
    assert sim.state._estimate("f") <= 3 * typical
    assert len(sent) >= 40  # of the 100 it ran (1 when the estimate followed the outlier)
    for _ in range(3):  # and the next batches top it up again
        _report(sim, [typical] * 100)
    assert len(sim.state.workers["w1"].processing) >= 0.95 * ahead


def test_a_prefix_that_really_slows_down_is_followed_within_two_runs(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row(f"s-{i}", prefix="s", priority=(i,)) for i in range(1_000)])
    _report(sim, [1e-3])  # the first measurement: 50 sent ahead
    for _ in range(10):
        _report(sim, [1e-3] * 10)
    assert abs(sim.state._estimate("s") - 1e-3) < 1e-9
    _report(sim, [0.1])
    _report(sim, [0.1])
    assert abs(sim.state._estimate("s") - 0.1) < 1e-9
    # One per thread from then on: a 100 ms task takes the whole 50 ms of room.
    assert len(_report(sim, [0.1])) <= 1


def test_a_prefix_that_really_speeds_up_is_followed_within_two_runs(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row(f"s-{i}", prefix="s", priority=(i,)) for i in range(100)])
    for _ in range(5):
        _report(sim, [0.1])
    _report(sim, [1e-4])
    _report(sim, [1e-4])
    assert abs(sim.state._estimate("s") - 1e-4) < 1e-12


def test_durations_that_spread_widely_keep_their_mean(sim: Sim) -> None:
    # Not every long run is an outlier: half the runs 1 ms, half 19 ms is a prefix whose
    # tasks last 10 ms on average, and the estimate stays near that.
    sim.join("w1", nthreads=1)
    sim.submit([row(f"s-{i}", prefix="s", priority=(i,)) for i in range(200)])
    for _ in range(40):
        _report(sim, [1e-3])
        _report(sim, [19e-3])
    assert 5e-3 < sim.state._estimate("s") < 20e-3


def test_the_first_measurement_sets_the_estimate(sim: Sim) -> None:
    sim.join("w1", nthreads=1)
    sim.submit([row(f"s-{i}", prefix="s", priority=(i,)) for i in range(100)])
    assert sim.state.workers["w1"].occupancy == sim.state.unknown_duration
    _report(sim, [3e-6])
    assert sim.state._estimate("s") == 3e-6
    ws = sim.state.workers["w1"]
    assert abs(ws.occupancy - len(ws.processing) * 3e-6) < 1e-9
