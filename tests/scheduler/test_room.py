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


def linear_choice(workers: list[WorkerState], est: float) -> WorkerState | None:
    return placement.least_busy(w for w in workers if placement.has_room(w, est))


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
            assert index.pick(est) is linear_choice(workers, est)
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
        assert got is linear_choice(list(state.workers.values()), est)
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
