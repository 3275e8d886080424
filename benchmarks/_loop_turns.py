"""What the scheduler's loop ran in its longest intervals during the ``million`` workload.

``python -m benchmarks._loop_turns [n_array] [--map N]`` runs ``_million.million(api, N, n_array)``
with the loop's main callbacks wrapped: each call on the loop thread of the scheduler's
worker-report steps (``_on_worker_batch``, ``_worker_steps``), its client intake
(``_on_client_message``), the client's ``Outbox._drain``, every ``Connection._flush``, every
TCP read (``TCPConnection.buffer_updated``: decoding and what it delivers), the client's
``_on_message``, the collector policy's ``GcKeeper._tick`` and ``step``, and (nested) the
state's steps (``ServerCommands._handle``, ``_carry_out_all``) are timed (wall and the
thread's CPU), and so is every collection on the loop thread (``gc.callbacks``). Then, for
the ``--top`` probe intervals (the probe sleeps 10 ms at a time) with the most loop CPU, it
prints which callbacks ran in them: calls and CPU per callback at the top level (nested
calls apart), and the collections. CPU not covered by any top-level call is the loop's own
work or callbacks not wrapped. Last, the collections of 15 ms or more on the *other* threads
(the client's calling thread holds the GIL through one: the loop waits, wall clock).

The wrappers cost a few µs per call and keep a record per call (memory grows with the run:
the RSS figures of such a run are not the workload's).
"""

from __future__ import annotations

import collections
import gc
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Call(NamedTuple):
    start: float
    end: float
    cpu: float
    name: str
    depth: int  # 0: called by the loop itself


class Interval(NamedTuple):
    start: float
    end: float
    cpu: float


class Collection(NamedTuple):
    start: float
    end: float
    cpu: float
    generation: int


def report(intervals: Sequence[Interval], calls: Sequence[Call],
           collections_: Sequence[Collection], top: int = 8) -> list[str]:
    """Lines describing the ``top`` intervals with the most CPU (see the module docstring)."""
    lines: list[str] = []
    for iv in sorted(intervals, key=lambda x: -x.cpu)[:top]:
        inside = [c for c in calls if c.start >= iv.start - 1e-3 and c.end <= iv.end + 1e-3]
        own: collections.Counter[str] = collections.Counter()
        count: collections.Counter[str] = collections.Counter()
        nested: collections.Counter[str] = collections.Counter()
        longest: dict[str, float] = {}
        for c in inside:
            longest[c.name] = max(longest.get(c.name, 0.0), c.cpu)
            if c.depth == 0:
                own[c.name] += c.cpu
                count[c.name] += 1
            else:
                nested[c.name] += c.cpu
        gcs = [g for g in collections_ if g.start >= iv.start and g.end <= iv.end]
        covered = sum(own.values())
        lines.append(
            f"interval: {iv.cpu * 1e3:.1f} ms CPU over {(iv.end - iv.start) * 1e3:.1f} ms; "
            f"top-level calls {covered * 1e3:.1f} ms, not covered {(iv.cpu - covered) * 1e3:.1f}"
            f" ms; collections {sum(g.cpu for g in gcs) * 1e3:.1f} ms"
            + "".join(f" (gen {g.generation}: {g.cpu * 1e3:.1f} ms)" for g in gcs
                      if g.cpu >= 2e-3))
        for name, cpu in own.most_common():
            lines.append(f"  {name:36s} {count[name]:4d} calls {cpu * 1e3:7.1f} ms, "
                         f"longest {longest[name] * 1e3:.1f} ms")
        for name, cpu in nested.most_common():
            lines.append(f"  (inside) {name:27s}            {cpu * 1e3:7.1f} ms, "
                         f"longest {longest[name] * 1e3:.1f} ms")
    return lines


class _Recorder:
    def __init__(self) -> None:
        self.loop_thread: int | None = None
        self.calls: list[Call] = []
        self.intervals: list[Interval] = []
        self.collections: list[Collection] = []
        self._depth = 0
        self._gc_start = (0.0, 0.0)
        self.other: list[tuple[str, Collection]] = []  # other threads' collections
        self._other_start: dict[int, tuple[float, float]] = {}

    def wrap(self, cls: type, name: str) -> None:
        fn: Callable[..., Any] = getattr(cls, name)
        label = f"{cls.__name__}.{name}"
        rec = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != rec.loop_thread:
                return fn(*args, **kwargs)
            rec._depth += 1
            c0, t0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                rec._depth -= 1
                rec.calls.append(Call(t0, time.perf_counter(), time.thread_time() - c0, label,
                                      rec._depth))

        setattr(cls, name, timed)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self.loop_thread:
            self._on_other_gc(phase, info)
            return
        if phase == "start":
            self._gc_start = (time.perf_counter(), time.thread_time())
        else:
            t0, c0 = self._gc_start
            self.collections.append(Collection(t0, time.perf_counter(), time.thread_time() - c0,
                                               info["generation"]))


    def _on_other_gc(self, phase: str, info: dict[str, Any]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._other_start[ident] = (time.perf_counter(), time.thread_time())
            return
        started = self._other_start.pop(ident, None)
        end = time.perf_counter()
        if started is not None and end - started[0] >= 0.015:
            self.other.append((threading.current_thread().name, Collection(
                started[0], end, time.thread_time() - started[1], info["generation"])))


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import asyncio
    import json

    from benchmarks import _million
    from benchmarks._workloads import load_api
    from shoal import _gc
    from shoal.client._client import Client
    from shoal.client._outbox import Outbox
    from shoal.comm._connection import Connection
    from shoal.comm._tcp import TCPConnection
    from shoal.scheduler._server_commands import ServerCommands
    from shoal.scheduler._server_messages import ServerMessages

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n_array", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--map", type=int, default=1000, help="the map's size (default 1000)")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    rec = _Recorder()
    for cls, name in [(ServerMessages, "_on_worker_batch"), (ServerMessages, "_worker_steps"),
                      (ServerMessages, "_on_client_message"), (Outbox, "_drain"),
                      (Connection, "_flush"), (TCPConnection, "buffer_updated"),
                      (Client, "_on_message"), (_gc.GcKeeper, "_tick"), (_gc.GcKeeper, "step"),
                      (ServerCommands, "_handle"), (ServerCommands, "_carry_out_all")]:
        rec.wrap(cls, name)

    class Probe(_million._LoopProbe):
        async def _run(self) -> None:
            rec.loop_thread = threading.get_ident()
            while not self._stop:  # ends: stop() sets _stop
                t, c = time.perf_counter(), time.thread_time()
                await asyncio.sleep(self.tick)
                end, cpu = time.perf_counter(), time.thread_time() - c
                rec.intervals.append(Interval(t, end, cpu))
                late = end - t - self.tick
                self.worst, self.worst_cpu = max(self.worst, late), max(self.worst_cpu, cpu)
                self.stalls += late > 0.1
                if self.first_done is None and self.scheduler.state.completed_total > self._base:
                    self.first_done = time.perf_counter()
                    self.first_done_cpu = time.process_time()

    _million._LoopProbe = Probe  # type: ignore[misc]
    gc.callbacks.append(rec.on_gc)
    out = _million.million(load_api("shoal"), args.map, args.n_array)
    print(json.dumps({k: round(v, 1) for k, v in out.items()}))
    print("\n".join(report(rec.intervals, rec.calls, rec.collections, args.top)))
    start = rec.intervals[0].start if rec.intervals else 0.0
    for thread, g in rec.other:
        print(f"{thread}: gen {g.generation} collection of {g.cpu * 1e3:.1f} ms CPU over "
              f"{(g.end - g.start) * 1e3:.1f} ms, {g.start - start:.1f} s into the run")


if __name__ == "__main__":
    main()
