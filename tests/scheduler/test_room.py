"""The worker index picks exactly the worker the linear scan over all workers picked: the
least busy with room for the task, the first joined among equals."""

from __future__ import annotations

import random

import pytest

from shoal.scheduler import _placement as placement
from shoal.scheduler._events import SendCompute
from shoal.scheduler._room import RoomIndex
from shoal.scheduler._state import SchedulerState
from shoal.scheduler._tasks import WorkerState

from ._sim import Sim, row


def linear_choice(workers: list[WorkerState], est: float, cap: int) -> WorkerState | None:
    return placement.least_busy(w for w in workers if placement.has_room(w, est, cap))


@pytest.mark.parametrize("seed", range(20))
def test_index_picks_the_linear_scans_worker_under_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    index = RoomIndex()
    workers: list[WorkerState] = []
    n = 0
    for _ in range(600):
        op = rng.random()
        if op < 0.05 or not workers:
            n += 1
            ws = WorkerState(f"w{n}", f"w{n}", rng.choice([1, 1, 2, 4]), 2**30, 1, "h", 0.0)
            workers.append(ws)
            index.add(ws)
        elif op < 0.08 and len(workers) > 1:
            ws = workers.pop(rng.randrange(len(workers)))
            index.remove(ws)
        elif op < 0.55:
            # a task is assigned to, finishes on, or secedes on some worker
            ws = rng.choice(workers)
            change = rng.random()
            if change < 0.5:
                ws.processing.add(object())  # type: ignore[arg-type]
                ws.occupancy += rng.choice([0.0, 0.001, 0.01, 0.5])
            elif ws.processing:
                t = next(iter(ws.processing))
                ws.processing.discard(t)
                ws.long_running.discard(t)
                ws.occupancy = max(0.0, ws.occupancy - rng.choice([0.001, 0.01, 0.5]))
            if change > 0.9 and ws.processing:
                ws.long_running.add(next(iter(ws.processing)))
            index.touch(ws)
        else:
            est = rng.choice([0.0, 0.001, 0.01, 0.05, 0.5])
            assert index.pick(est) is linear_choice(workers, est, index.cap)
        index.validate({w.address: w for w in workers})


@pytest.mark.parametrize("seed", range(5))
def test_scheduler_places_queued_tasks_where_the_linear_scan_would(seed: int) -> None:
    rng = random.Random(seed)
    state = SchedulerState()
    sim = Sim(state)
    for i in range(12):
        sim.join(f"w{i}", nthreads=rng.choice([1, 2, 3]))
    rows = [row(("t", i), prefix=rng.choice(["a", "b", "c"])) for i in range(400)]
    running: list[tuple[str, object]] = []
    pick = state._room.pick
    picks = 0

    def checked_pick(est: float) -> WorkerState | None:
        nonlocal picks
        picks += 1
        got = pick(est)
        assert got is linear_choice(list(state.workers.values()), est, state._room.cap)
        return got

    state._room.pick = checked_pick  # type: ignore[method-assign]
    cmds = sim.submit(rows)
    while True:
        running += [(c.worker, c.key) for c in cmds if isinstance(c, SendCompute)]
        if not running:
            break
        worker, key = running.pop(rng.randrange(len(running)))
        sim.now += rng.choice([0.0, 0.001, 0.2])
        cmds = sim.finish(key, worker, duration=rng.choice([0.001, 0.01, 0.3]))
        state.validate()
    assert picks > 400
    assert all(state.tasks[r[0]].state == "memory" for r in rows)


def _processing(state: SchedulerState) -> dict[str, int]:
    return {w.address: len(w.processing) for w in state.workers.values()}


def _short_tasks_queued(sim: Sim, n: int) -> None:
    """``n`` tasks of a prefix measured at 1 ms: 50 of them fill a thread's 0.05 s."""
    sim.submit([row("probe", prefix="t")])
    sim.finish("probe", duration=0.001)
    sim.submit([row(("t", i), prefix="t", priority=(0, i)) for i in range(n)])


def test_a_large_cluster_shares_a_bounded_reserve_of_tasks_sent_ahead() -> None:
    state = SchedulerState()
    sim = Sim(state)
    for i in range(128):
        sim.join(f"w{i}")
    _short_tasks_queued(sim, 20_000)
    held = _processing(state)
    # Not 50 each (0.05 s of 1 ms tasks): the cluster's reserve, shared out.
    assert set(held.values()) == {placement.CLUSTER_AHEAD // 128}
    assert sum(held.values()) == placement.CLUSTER_AHEAD
    state.validate()


def test_each_thread_keeps_one_task_ahead_however_large_the_cluster() -> None:
    state = SchedulerState()
    sim = Sim(state)
    for i in range(1000):
        sim.join(f"w{i}")
    _short_tasks_queued(sim, 5_000)
    assert set(_processing(state).values()) == {placement.MIN_PER_THREAD}
    state.validate()


def test_a_small_cluster_is_sent_its_full_saturation_of_short_tasks() -> None:
    state = SchedulerState()
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    _short_tasks_queued(sim, 1_000)
    held = _processing(state).values()
    assert all(45 <= n <= 50 for n in held), held  # 0.05 s of 1 ms tasks each
    state.validate()


def test_workers_leaving_give_the_others_a_deeper_share_of_the_reserve() -> None:
    state = SchedulerState()
    sim = Sim(state)
    for i in range(128):
        sim.join(f"w{i}")
    _short_tasks_queued(sim, 20_000)
    for i in range(64, 128):
        sim.retire(f"w{i}")
    held = _processing(state)
    assert len(held) == 64
    assert set(held.values()) == {placement.CLUSTER_AHEAD // 64}
    state.validate()
