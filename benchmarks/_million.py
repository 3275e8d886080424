"""The ``million`` workload (issue 14): very large graphs, and how long the scheduler's
loop is held while one runs.

Two runs on one cluster (2 workers x 1 thread, dashboard on): ``client.map(noop,
range(n_map))`` + ``wait``, then ``da.ones(n_array, chunks=1).sum().compute()``. Throughout,
a probe on the loop that runs the scheduler (shoal's loop, in this process) sleeps 10 ms at
a time and records how late it wakes (the longest stall of the loop), and a thread asks the
dashboard's ``/health`` every 50 ms and records its slowest answer.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import threading
import time
import urllib.request
from typing import Any

from benchmarks import _tasks


class _LoopProbe:
    """Sleeps ``tick`` seconds at a time on ``loop``; ``worst`` is the longest overshoot
    (wall clock: on a loaded machine it includes time the thread waited for a core), and
    ``worst_cpu`` the most CPU the loop's thread used between two wake-ups (load-independent,
    and an upper bound of its longest single callback). Also notes when the scheduler first
    reports a finished task (``first_done``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, scheduler: Any, tick: float = 0.01):
        self.loop = loop
        self.scheduler = scheduler
        self.tick = tick
        self.worst = 0.0
        self.worst_cpu = 0.0
        self.stalls = 0  # wake-ups later than 100 ms
        self.first_done: float | None = None
        self.first_done_cpu: float | None = None  # this process's CPU time then
        self._base = 0
        self._stop = False
        self._future = asyncio.run_coroutine_threadsafe(self._run(), loop)

    def reset(self) -> None:
        self.worst, self.worst_cpu, self.stalls, self.first_done = 0.0, 0.0, 0, None
        self.first_done_cpu = None
        self._base = self.scheduler.state.completed_total

    async def _run(self) -> None:
        while not self._stop:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.tick)
            late = time.perf_counter() - t - self.tick
            self.worst = max(self.worst, late)
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - c)
            self.stalls += late > 0.1
            if self.first_done is None and self.scheduler.state.completed_total > self._base:
                self.first_done = time.perf_counter()
                self.first_done_cpu = time.process_time()

    def stop(self) -> None:
        self._stop = True
        self._future.result(timeout=10)


class _HealthPoller(threading.Thread):
    """GET ``url`` every ``every`` seconds; ``worst`` is the slowest answer."""

    def __init__(self, url: str, every: float = 0.05) -> None:
        super().__init__(daemon=True, name="health-poller")
        self.url = url
        self.every = every
        self.worst = 0.0
        self.failures = 0
        self.done = threading.Event()

    def reset(self) -> None:
        self.worst = 0.0

    def run(self) -> None:
        while not self.done.wait(self.every):
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as r:
                    r.read()
            except OSError:
                self.failures += 1
            self.worst = max(self.worst, time.perf_counter() - t)


def _rss() -> float:
    import psutil

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
    return float(psutil.Process().memory_info().rss)


def million(api: Any, n_map: int, n_array: int) -> dict[str, float]:
    """See the module docstring; shoal only (the probe sits on shoal's loop)."""
    import dask
    import dask.array as da

    from shoal import _loop

    out: dict[str, float] = {}
    with api.Client(n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        scheduler = client.cluster.scheduler
        probe = _LoopProbe(_loop.get_loop(), scheduler)
        link = client.dashboard_link
        poller = _HealthPoller(link.rsplit("/", 1)[0] + "/health")
        poller.start()
        try:
            api.wait(client.map(_tasks.noop, range(-100, 0)))  # warm: imports, pools
            while len(scheduler.state.tasks):
                time.sleep(0.05)
            idle = _rss()
            probe.reset()
            poller.reset()
            t0 = time.perf_counter()
            futures = client.map(_tasks.noop, range(n_map))
            submitted = time.perf_counter()
            api.wait(futures)
            out["map_seconds"] = time.perf_counter() - t0
            out["map_submit_seconds"] = submitted - t0
            out["map_first_done_seconds"] = (probe.first_done or float("nan")) - t0
            out["map_tasks_per_s"] = n_map / out["map_seconds"]
            out["map_held_bytes_per_task"] = (_rss() - idle) / n_map
            out["map_worst_loop_stall_ms"] = probe.worst * 1e3
            out["map_worst_loop_cpu_ms"] = probe.worst_cpu * 1e3
            out["map_loop_stalls_over_100ms"] = probe.stalls
            out["map_worst_health_ms"] = poller.worst * 1e3
            probe.reset()
            poller.reset()
            del futures
            while len(scheduler.state.tasks):
                time.sleep(0.05)
            # the release of the map's futures and tasks (and the GC policy's end of bulk mode)
            out["map_release_worst_loop_cpu_ms"] = probe.worst_cpu * 1e3
            out["map_release_worst_health_ms"] = poller.worst * 1e3
            probe.reset()
            poller.reset()
            t0, c0 = time.perf_counter(), time.process_time()
            total = da.ones(n_array, chunks=1).sum()
            with dask.config.set(scheduler=client):
                value = total.compute()
            out["array_seconds"] = time.perf_counter() - t0
            if value != n_array:
                raise AssertionError(f"da.ones({n_array}).sum() gave {value}")
            out["array_first_done_seconds"] = (probe.first_done or float("nan")) - t0
            # the CPU this process (client and scheduler, one GIL) used until then: the
            # load-independent part of the wait (dask's graph build, shoal's order and rows)
            out["array_first_done_process_cpu_s"] = (probe.first_done_cpu or float("nan")) - c0
            while len(scheduler.state.tasks):  # the figures cover the release, too
                time.sleep(0.05)
            out["array_worst_loop_stall_ms"] = probe.worst * 1e3
            out["array_worst_loop_cpu_ms"] = probe.worst_cpu * 1e3
            out["array_loop_stalls_over_100ms"] = probe.stalls
            out["array_worst_health_ms"] = poller.worst * 1e3
            out["health_failures"] = poller.failures
            out["rss_after_array_mb"] = _rss() / 2**20  # the user still holds the collection
            del total, value
            out["rss_after_del_mb"] = _rss() / 2**20
        finally:
            poller.done.set()
            probe.stop()
    return out


if __name__ == "__main__":  # python -m benchmarks._million [n_map] [n_array]
    import json
    import sys

    import shoal
    from benchmarks._workloads import load_api

    n_map = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    n_array = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    from benchmarks._machine import scheduler_build

    print(shoal.__file__, f"(scheduler: {scheduler_build()})", file=sys.stderr)
    print(json.dumps(million(load_api("shoal"), n_map, n_array), indent=1))
