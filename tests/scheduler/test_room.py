"""The worker index picks exactly the worker the linear scan over all workers picked: the
least busy with room for the task, the first joined among equals."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shoal.scheduler import _placement as placement
from shoal.scheduler import _room
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
    picks = 0

    def check(est: float, got: WorkerState | None) -> None:
        nonlocal picks
        picks += 1
        assert got is linear_choice(list(state.workers.values()), est)

    # The index's hook, not a wrapper: the compiled build (mypyc) takes no stand-in.
    state._room.check = check
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


def _saturated(n: int, per_worker: int, est: float) -> tuple[RoomIndex, list[WorkerState]]:
    """``n`` one-thread workers, each holding ``per_worker`` tasks of ``est`` seconds."""
    index = RoomIndex()
    workers = []
    for i in range(n):
        ws = WorkerState(f"w{i}", f"w{i}", 1, 2**30, 1, "h", 0.0)
        for _ in range(per_worker):
            ws.processing.add(object())  # type: ignore[arg-type]
        ws.occupancy = per_worker * est
        workers.append(ws)
        index.add(ws)
    return index, workers


def _counting_has_room(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = placement.has_room

    def counted(ws: WorkerState, est: float) -> bool:
        calls[0] += 1
        return real(ws, est)

    monkeypatch.setattr(placement, "has_room", counted)
    return calls


def test_workers_without_room_are_not_looked_at_again_for_a_slightly_shorter_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A measured duration drifts with every report (a moving average): a full worker
    # refused 1 ms has no room for 0.99 ms either, and 200 of them are not re-examined.
    index, workers = _saturated(200, 50, 0.001)
    assert index.pick(0.001) is None
    calls = _counting_has_room(monkeypatch)
    for est in (0.00099, 0.00098, 0.00097):
        assert index.pick(est) is None
    assert calls[0] <= 3
    assert all(linear_choice(workers, est) is None for est in (0.00099, 0.00098, 0.00097))
    index.validate({w.address: w for w in workers})


def _steady_map(n: int, steps: list[int]) -> float:
    """Heap steps per event (``steps`` counts them) in the steady state of a long map on
    ``n`` one-thread workers: one worker finishes a task, the scheduler fills until no
    worker has room, while the expected duration (a moving average of measured ones)
    moves with every report."""
    rng = random.Random(3)
    index = RoomIndex()
    workers = [WorkerState(f"w{i}", f"w{i}", 1, 2**30, 1, "h", 0.0) for i in range(n)]
    held: dict[WorkerState, list[float]] = {ws: [] for ws in workers}
    for ws in workers:
        index.add(ws)

    def fill(est: float) -> None:
        while (got := index.pick(est)) is not None:
            held[got].append(est)
            got.processing.add(object())  # type: ignore[arg-type]
            got.occupancy += est
            index.touch(got)
        assert linear_choice(workers, est) is None

    est = 0.001
    fill(est)
    steps[0] = 0
    for i in range(2000):
        ws = workers[i % n]
        ws.occupancy = max(0.0, ws.occupancy - held[ws].pop(0))
        ws.processing.pop()
        index.touch(ws)
        est = 0.8 * est + 0.2 * 0.001 * rng.uniform(0.8, 1.2)
        assert index.pick(est) is linear_choice(workers, est)
        fill(est)
    index.validate({w.address: w for w in workers})
    return steps[0] / 2000


def test_a_saturated_cluster_costs_a_few_heap_steps_per_event_whatever_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = [0]

    def counted(fn: Any) -> Any:
        def step(*args: Any) -> Any:
            steps[0] += 1
            return fn(*args)
        return step

    monkeypatch.setattr(_room, "heappush", counted(_room.heappush))
    monkeypatch.setattr(_room, "heappop", counted(_room.heappop))
    small, large = _steady_map(4, steps), _steady_map(256, steps)
    assert large < 5 and large < small + 1, (small, large)  # before: 10.7 and 40
