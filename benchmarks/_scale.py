"""Simulated scale: the scheduler's pure state machine alone, no processes, no sockets.

``python -m benchmarks._scale`` drives ``SchedulerState`` with synthetic workers that finish
their tasks in order, one ``TaskFinished`` per ``handle`` call (the scheduler's worst case:
no batching), and reports the scheduler's CPU time per task and the memory it holds per
task (tracemalloc over the graph's submission: what the state adds to rows built
beforehand, and the same with the rows built inside, so that the keys the state keeps
count). It measures how the state machine scales with the number of workers and tasks beyond
what this machine can run as processes.

The collector runs as in a scheduler process (``--gc shoal``, the default): shoal's
:class:`~shoal._gc.GcKeeper` owns it, with the state's tasks as its held count, and its
tick (a young collection, survivors frozen) runs every ``tick`` seconds of the scheduler's
CPU, counted in the run's time as the loop's timer would be. ``--gc cpython`` keeps
CPython's defaults instead: there a young collection starts on *net* allocations, so a run
that frees a task's old story rows as it makes new ones lets the youngest generation grow
to every row since the last one and walks them all at a point that moves with the number
of workers (a 200,000-object collection near the end of the 128-worker run, none at 4).

Default sizes run in well under a minute; ``--full`` is issue 14's 1,000 workers x 1M tasks.
``--profile`` prints a cProfile summary of the largest run instead of timing it.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from shoal import _gc
from shoal.protocol._serialize import Serialized
from shoal.scheduler._events import (
    ClientJoined,
    GraphSubmitted,
    SendCompute,
    TaskFinished,
    WorkerJoined,
)
from shoal.scheduler._state import SchedulerState

PAYLOAD = Serialized([b"x"])
DURATION = 0.001  # seconds each simulated task "runs"


def _held_bytes(
    make: Callable[[], tuple[list[tuple[Any, ...]], list[Any]]], addresses: list[str],
    nthreads: int, keys: bool,
) -> int:
    """Bytes a fresh state keeps after taking the graph ``make()`` builds (traced apart
    from the timed run: tracing slows every allocation down several times). With
    ``keys``, the rows are built inside the trace, so what the state keeps of them (the
    keys: once the client has released its futures the scheduler holds the only copy)
    counts; else only what the state adds to rows built before."""
    state = SchedulerState()
    state.handle(ClientJoined("c"))
    for a in addresses:
        state.handle(WorkerJoined(a, a, nthreads, 2**34, 1, "host", 0.0))
    graph = None if keys else make()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rows, wanted = graph or make()
    cmds = state.handle(GraphSubmitted("c", rows, wanted))
    del cmds, rows, wanted  # commands are sent and dropped by the server
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del graph
    return held


def map_rows(n: int) -> list[tuple[Any, ...]]:
    """``n`` independent tasks, as ``client.map`` submits them: priorities
    ``(-priority, generation, order)`` (a bare ``(i,)`` would not pack past i = 2047 and
    turn the scheduler's priorities into tuples, which no client's graph does)."""
    return [(("noop", i), PAYLOAD, [], (), (0, 1, i), 0, None, "noop") for i in range(n)]


def tree_rows(n: int) -> tuple[list[tuple[Any, ...]], Any]:
    """A binary reduction tree of about ``n`` tasks (leaves ``inc``, inner nodes ``add``),
    as ``dask.delayed`` builds it (priorities as ``client.compute`` makes them); returns the
    rows and the root key."""
    leaves = max(n // 2, 1)
    rows: list[tuple[Any, ...]] = []
    layer: list[Any] = []
    for i in range(leaves):
        key: Any = ("inc", i)
        rows.append((key, PAYLOAD, [], (), (0, 1, len(rows)), 0, None, "inc"))
        layer.append(key)
    level = 0
    while len(layer) > 1:
        level += 1
        nxt: list[Any] = []
        for j in range(0, len(layer) - 1, 2):
            key = ("add", level, j)
            rows.append((key, PAYLOAD, [layer[j], layer[j + 1]], (), (0, 1, len(rows)), 0, None,
                         "add"))
            nxt.append(key)
        if len(layer) % 2:
            nxt.append(layer[-1])
        layer = nxt
    return rows, layer[0]


class _Shell:
    """What the keeper watches, as it watches a scheduler server: the owner of the state."""

    def __init__(self, state: SchedulerState) -> None:
        self.state = state


def run(
    n_workers: int, n_tasks: int, shape: str = "map", nthreads: int = 1, memory: bool = True,
    jitter: float = 0.0, gc_policy: str = "shoal",
) -> dict[str, float]:
    """Run one simulated computation; returns CPU µs per task and bytes held per task.
    ``jitter`` spreads each task's duration uniformly over ``DURATION * (1 ± jitter)``
    (seeded), as measured durations vary: the scheduler's estimate, a moving average of
    them, then moves with every report. ``gc_policy``: ``"shoal"`` (the collector as the
    scheduler process runs it, see the module's docstring) or ``"cpython"`` (its
    defaults)."""
    if gc_policy not in ("shoal", "cpython"):
        raise ValueError(f"gc_policy must be 'shoal' or 'cpython', not {gc_policy!r}")
    durations = random.Random(14)
    state = SchedulerState()
    keeper = _gc.GcKeeper(clock=time.process_time) if gc_policy == "shoal" else None
    state.handle(ClientJoined("c"))
    addresses = [f"sim://w{i}" for i in range(n_workers)]
    for a in addresses:
        state.handle(WorkerJoined(a, a, nthreads, 2**34, 1, "host", 0.0))
    def make() -> tuple[list[tuple[Any, ...]], list[Any]]:
        if shape == "map":
            rows = map_rows(n_tasks)
            return rows, [r[0] for r in rows]
        rows, root = tree_rows(n_tasks)
        return rows, [root]

    held = _held_bytes(make, addresses, nthreads, False) if memory else 0
    held_keys = _held_bytes(make, addresses, nthreads, True) if memory else 0
    rows, wanted = make()
    total = len(rows)
    # Each simulated worker's tasks in order: keys and run numbers in two deques, not a
    # tuple per task, which the scheduler process never holds but its collector would walk
    # (one per task in flight: 50,000 at 1,000 workers).
    queues: dict[str, tuple[deque[Any], deque[int]]] = {
        a: (deque(), deque()) for a in addresses}
    gc.collect()
    shell = _Shell(state)
    if keeper is not None:  # as the scheduler's server does when it starts
        keeper.acquire()
        keeper.watch(shell, "state.tasks")  # (a compiled state takes no weak reference)
    tick = keeper.settings.tick if keeper is not None else float("inf")
    next_tick = tick
    try:  # the process's collector is put back however the run ends
        t0 = time.process_time()
        cmds = state.handle(GraphSubmitted("c", rows, wanted))
        submit_s = time.process_time() - t0
        del rows
        clock = time.process_time
        run_s = 0.0  # in ``handle`` only: the simulated workers' own bookkeeping is not counted
        now = 0.0
        done = 0
        while True:
            for c in cmds:
                if type(c) is SendCompute:
                    keys, runs = queues[c.worker]
                    keys.append(c.key)
                    runs.append(c.run)
            progressed = False
            for a, (keys, runs) in queues.items():
                if keys:
                    key, run = keys.popleft(), runs.popleft()
                    start = now
                    now += DURATION * durations.uniform(1 - jitter, 1 + jitter) if jitter else DURATION
                    ev = TaskFinished(a, key, 8, "int", start, now, 0, None, run)
                    t0 = clock()
                    cmds = state.handle(ev)
                    if run_s >= next_tick:  # the loop's timer, between two steps
                        keeper.step()  # type: ignore[union-attr]  # (next_tick is inf without one)
                        next_tick = run_s + tick
                    run_s += clock() - t0
                    done += 1
                    progressed = True
                    for c in cmds:
                        if type(c) is SendCompute:
                            ks, rs = queues[c.worker]
                            ks.append(c.key)
                            rs.append(c.run)
                    cmds = []
            if not progressed:
                break
    finally:
        if keeper is not None:
            keeper.release()
    assert done == total, f"simulation stalled: {done} of {total} tasks finished"
    return {
        "workers": n_workers,
        "tasks": total,
        "submit_us_per_task": submit_s / total * 1e6,
        "run_us_per_task": run_s / total * 1e6,
        "us_per_task": (submit_s + run_s) / total * 1e6,
        "bytes_per_task": held / total,
        "bytes_per_task_with_keys": held_keys / total,
        "gc_bulk": keeper.stats["entered"] if keeper is not None else 0,
        "gc_ticks": keeper.stats["young"] if keeper is not None else 0,
    }


def _line(r: dict[str, float], shape: str) -> str:
    return (
        f"{shape:4} {int(r['workers']):>5} workers {int(r['tasks']):>9,} tasks: "
        f"{r['us_per_task']:6.1f} µs/task (submit {r['submit_us_per_task']:.1f}, "
        f"run {r['run_us_per_task']:.1f}), {r['bytes_per_task']:,.0f} B/task held "
        f"({r['bytes_per_task_with_keys']:,.0f} with its key)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._scale", description=__doc__)
    parser.add_argument("--full", action="store_true", help="1,000 workers x 1M tasks")
    parser.add_argument("--tasks", type=int, help="tasks per run (default 100k, --full 1M)")
    parser.add_argument("--profile", action="store_true", help="cProfile the runs instead")
    parser.add_argument("--gc", choices=("shoal", "cpython"), default="shoal",
                        help="the collector as a scheduler process runs it (default), or "
                             "CPython's defaults")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="spread task durations by ± this fraction (seeded; default 0)")
    args = parser.parse_args(argv)
    n = args.tasks or (1_000_000 if args.full else 100_000)
    big = 1000 if args.full else 512
    from benchmarks._machine import scheduler_build

    print(f"scheduler state machine: {scheduler_build()}", flush=True)
    if args.profile:
        import cProfile
        import pstats

        for shape, size, workers in (("tree", 40_000, 4), ("map", 20_000, 128)):
            prof = cProfile.Profile()
            prof.runcall(run, workers, size, shape, 1, False, args.jitter, args.gc)
            print(f"--- {shape} {size:,} tasks, {workers} workers ---")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return 0
    per_task: dict[int, float] = {}
    for workers in (4, 128, big):
        r = run(workers, n, "map", jitter=args.jitter, gc_policy=args.gc)
        per_task[workers] = r["run_us_per_task"]
        print(_line(r, "map"), flush=True)
    r = run(4, n, "tree", jitter=args.jitter, gc_policy=args.gc)
    print(_line(r, "tree"), flush=True)
    print(f"per-task run cost, 128 vs 4 workers: {per_task[128] / per_task[4]:.2f}x; "
          f"{big} vs 4: {per_task[big] / per_task[4]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
