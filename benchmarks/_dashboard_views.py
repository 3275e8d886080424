"""What one poll of ``/api/groups`` and ``/api/exceptions`` costs the scheduler's loop:
the pure view plus ``json.dumps`` (what the handler does), over a pure scheduler state
holding many tasks. ``python -m benchmarks._dashboard_views [tasks]``."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from shoal.protocol._errors import exception_to_error
from shoal.protocol._serialize import Serialized
from shoal.scheduler._events import ClientJoined, GraphSubmitted, TaskFailed, WorkerJoined
from shoal.scheduler._state import SchedulerState
from shoal.scheduler._views import erred_tasks, task_groups


def _state(tasks: int, groups: int) -> SchedulerState:
    """``tasks`` released-and-queued tasks with tuple keys spread over ``groups`` layers."""
    state = SchedulerState(story_size=100, task_stream_size=100)
    state.handle(ClientJoined("c"), WorkerJoined("w", "w", 4, 2**34, 0, "h", 0.0))
    rows = [((f"layer{i % groups}-abcdef12", i), Serialized((b"x",)), [], (), (0,), 0, None, f"layer{i % groups}")
            for i in range(tasks)]
    state.handle(GraphSubmitted("c", rows, [r[0] for r in rows]))
    return state


def _fail_many(state: SchedulerState, n: int) -> None:
    """``n`` of the running tasks fail with a real exception and traceback."""
    for ts in [t for t in state.tasks.values() if t.state == "processing"][:n]:
        try:
            raise ValueError(f"bad input for {ts.key!r}: " + "x" * 200)
        except ValueError as exc:
            error = exception_to_error(exc, exc.__traceback__, ts.key, "w", 1.0)
        state.handle(TaskFailed("w", ts.key, error, 0.0, 1.0, 0, ts.run))


def _median(fn: Callable[[], Any], repeat: int = 20) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        size = len(json.dumps(fn(), separators=(",", ":")))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def main(tasks: int = 200_000) -> None:
    for groups in (200, tasks):
        state = _state(tasks, groups)
        for limit in (100, 1000):
            t, size = _median(lambda s=state, n=limit: task_groups(s, n))
            print(f"/api/groups?limit={limit}: {tasks:,} tasks in {groups:,} groups: "
                  f"{t * 1e3:.2f} ms, {size / 1024:.0f} KiB")
    state = _state(10_000, 10)
    _fail_many(state, 4)  # one worker of 4 threads: 4 running at a time
    while len(state.erred_tasks) < 100:  # ends: each round fails the next 4 queued tasks
        _fail_many(state, 4)
    t, size = _median(lambda: erred_tasks(state, 100))
    print(f"/api/exceptions?limit=100 (100 kept, real tracebacks): {t * 1e3:.2f} ms, "
          f"{size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
