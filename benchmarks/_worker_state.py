"""The worker's pure state machine alone: ``WorkerState``'s CPU time per task, no processes.

``python -m benchmarks._worker_state`` feeds a fresh ``WorkerState`` what a worker process
feeds it, in the batches its shell builds, and reports µs of CPU per task (best of
``--repeats``):

- ``map``: ``Computes`` of ``--batch`` rows with no inputs, the matching ``ExecuteDone``
  batches (each task's ``TaskDone`` report), then one ``KeysFreed`` of them all;
- ``tree``: a binary reduction whose leaves run here, each inner task's two inputs held
  here (``Compute.drop`` names them), one ``Compute`` per task;
- ``fetch``: tasks each needing one input held by a peer: the ``Fetch``, its ``FetchDone``
  (the ``Transfer`` report), the run and its end.

It measures the state machine's share of a worker's CPU per task, and what compiling it
(mypyc) changes; the processes' share is ``python -m benchmarks._profile``'s. The events
are built before the clock starts, and the collector is set as in a worker process.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from shoal.protocol._messages import Compute, Computes
from shoal.protocol._serialize import Serialized
from shoal.worker._events import (
    ComputeAssigned,
    ComputesAssigned,
    Event,
    ExecuteDone,
    FetchDone,
    KeysFreed,
)
from shoal.worker._state import WorkerState

PAYLOAD = Serialized([b"x"])
ME, PEER = "tcp://10.0.0.1:1", "tcp://10.0.0.2:1"


def _done(key: object) -> ExecuteDone:
    return ExecuteDone(key, 28, "int", 1.0, 1.001, 0, None, None)


Batches = list[list[Event]]


def _chunks(events: list[Event], batch: int) -> Batches:
    return [events[lo:lo + batch] for lo in range(0, len(events), batch)]


def map_events(n: int, batch: int) -> tuple[Batches, int]:
    out: Batches = []
    keys = [("noop", i) for i in range(n)]
    for lo in range(0, n, batch):
        rows = keys[lo:lo + batch]
        m = len(rows)
        out.append([ComputesAssigned(Computes(
            rows, [PAYLOAD] * m, [[] for _ in rows], {}, [(0, i) for i in range(m)],
            [False] * m, [1] * m, [() for _ in rows]))])
        out.append([_done(k) for k in rows])
    out.append([KeysFreed(keys)])
    return out, n


def tree_events(n: int, batch: int) -> tuple[Batches, int]:
    """A binary reduction of ``n`` leaves, all here: leaves first, then each level."""
    level = [("leaf", i) for i in range(n)]
    out = _chunks([ComputeAssigned(Compute(k, PAYLOAD, [], {}, 0, False, "leaf", 1, ()))
                   for k in level], batch)
    out += _chunks([_done(k) for k in level], batch)
    count, depth = n, 0
    while len(level) > 1:
        depth += 1
        pairs = [(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = [(f"sum-{depth}", i) for i in range(len(pairs))]
        out += _chunks([
            ComputeAssigned(Compute(k, PAYLOAD, [(a, [ME], 28), (b, [ME], 28)], {}, 0, False,
                                    "sum", 1, (a, b)))
            for k, (a, b) in zip(level, pairs, strict=True)], batch)
        out += _chunks([_done(k) for k in level], batch)
        count += len(level)
    out.append([KeysFreed(level)])
    return out, count


def fetch_events(n: int, batch: int) -> tuple[Batches, int]:
    """Tasks each needing one input a peer holds: the fetch, its answer, the run's end."""
    out: Batches = []
    for lo in range(0, n, batch):
        ids = range(lo, min(n, lo + batch))
        out.append([ComputeAssigned(Compute(("t", i), PAYLOAD, [(("in", i), [PEER], 28)], {},
                                            0, False, "t", 1, (("in", i),))) for i in ids])
        out.append([FetchDone(PEER, {("in", i): 28 for i in ids}, [], 1.0, 1.001)])
        out.append([_done(("t", i)) for i in ids])
        out.append([KeysFreed([("t", i) for i in ids])])
    return out, n


WORKLOADS: dict[str, Callable[[int, int], tuple[Batches, int]]] = {
    "map": map_events, "tree": tree_events, "fetch": fetch_events}


def run(batches: Batches) -> float:
    """Seconds of CPU a fresh state takes to handle ``batches``; checks it ran them all."""
    state = WorkerState(ME)
    handle = state.handle
    t0 = time.process_time()
    for events in batches:
        handle(*events)
    elapsed = time.process_time() - t0
    assert not state.tasks and not state.in_flight, (len(state.tasks), len(state.in_flight))
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100, help="tasks per event batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    args = parser.parse_args(argv)
    import shoal.worker._state as mod

    gc.set_threshold(20_000, 20, 100)  # as a worker process sets it (shoal/worker/__main__.py)

    print(f"WorkerState from {mod.__file__}")
    for name in args.only:
        batches, count = WORKLOADS[name](args.tasks, args.batch)
        gc.collect()
        gc.freeze()  # the prebuilt events are as old as a worker's imports: not walked
        best = min(run(batches) for _ in range(args.repeats)) / count * 1e6
        print(f"{name:6} {best:6.2f} µs CPU per task (best of {args.repeats}, {count} tasks)")


if __name__ == "__main__":
    main()
