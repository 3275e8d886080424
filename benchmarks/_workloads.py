"""The workload bodies, written once against the futures API shoal shares with dask.distributed.

Each function takes an ``Api`` (``Client``, ``as_completed``, ``wait`` from either package) and
its parameters from ``_spec.py``, runs in a fresh subprocess, and returns metric name -> figure.
Results are checked, so a wrong answer is an error, never a fast figure.
"""

from __future__ import annotations

import importlib
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import _tasks
from benchmarks._million import million
from benchmarks._spec import rosenbrock_ideal_seconds
from benchmarks._watched import dashboard


@dataclass(frozen=True, slots=True)
class Api:
    name: str
    Client: Any
    as_completed: Any
    wait: Any


def load_api(system: str) -> Api:
    """The common API from ``shoal`` or ``distributed``."""
    packages = {"shoal": "shoal", "dask": "distributed"}
    if system not in packages:
        raise ValueError(f"unknown system {system!r}: expected 'shoal' or 'dask'")
    mod = importlib.import_module(packages[system])
    return Api(system, mod.Client, mod.as_completed, mod.wait)


def _client(api: Api, **kwargs: Any) -> Any:
    """A client on a new local cluster: 2 worker processes x 1 thread, no dashboard, by default."""
    kwargs.setdefault("n_workers", 2)
    kwargs.setdefault("threads_per_worker", 1)
    kwargs.setdefault("processes", True)
    kwargs.setdefault("dashboard_address", None)
    return api.Client(**kwargs)


def _worker_addresses(client: Any) -> list[str]:
    """Worker addresses, sorted; via ``scheduler_info()`` or, failing that, ``nthreads()``."""
    try:
        return sorted(client.scheduler_info()["workers"])
    except (AttributeError, KeyError, TypeError):
        return sorted(client.nthreads())


def throughput(api: Api, n_tasks: int) -> dict[str, float]:
    """``client.map(noop, range(n))`` + gather, after a 200-task warm-up."""
    with _client(api) as client:
        warm = client.map(_tasks.noop, range(-200, 0))
        client.gather(warm)
        del warm
        start = time.perf_counter()
        results = client.gather(client.map(_tasks.noop, range(n_tasks)))
        seconds = time.perf_counter() - start
        if len(results) != n_tasks or any(r is not None for r in results):
            raise AssertionError(f"gather returned {len(results)} results, not Nones")
    return {"tasks_per_s": n_tasks / seconds, "seconds": seconds}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(api: Api, n: int, warmup: int) -> dict[str, float]:
    """Sequential ``submit(inc, i, pure=False).result()`` round trips."""
    times = []
    with _client(api) as client:
        for i in range(warmup):
            client.submit(_tasks.inc, i, pure=False).result()
        for i in range(n):
            start = time.perf_counter()
            value = client.submit(_tasks.inc, i, pure=False).result()
            times.append(time.perf_counter() - start)
            if value != i + 1:
                raise AssertionError(f"inc({i}) returned {value!r}")
    return {
        "median_ms": statistics.median(times) * 1e3,
        "p99_ms": _percentile(times, 0.99) * 1e3,
    }


def tree(api: Api, leaves: int) -> dict[str, float]:
    """A pairwise ``add`` reduction over ``map(inc)`` leaves, built from futures."""
    with _client(api) as client:
        client.gather(client.map(_tasks.inc, range(-50, 0)))
        start = time.perf_counter()
        level = client.map(_tasks.inc, range(leaves))
        tasks = len(level)
        while len(level) > 1:
            pairs = [
                client.submit(_tasks.add, a, b)
                for a, b in zip(level[::2], level[1::2], strict=False)
            ]
            tasks += len(pairs)
            level = pairs + level[len(pairs) * 2 :]
        total = level[0].result()
        seconds = time.perf_counter() - start
    expected = sum(range(1, leaves + 1))
    if total != expected:
        raise AssertionError(f"tree sum is {total!r}, expected {expected}")
    return {"tasks_per_s": tasks / seconds, "seconds": seconds, "tasks": float(tasks)}


def delayed_tree(api: Api, leaves: int) -> dict[str, float]:
    """The ``tree`` workload's reduction built with ``dask.delayed``, through ``compute``:
    the path every dask-collections user takes."""
    from dask import delayed

    with _client(api) as client:
        client.gather(client.map(_tasks.inc, range(-50, 0)))
        level = [delayed(_tasks.inc)(i) for i in range(leaves)]
        tasks = len(level)
        while len(level) > 1:
            pairs = [delayed(_tasks.add)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
            tasks += len(pairs)
            level = pairs + level[len(pairs) * 2 :]
        start = time.perf_counter()
        future = client.compute(level[0])
        handover = time.perf_counter() - start
        total = future.result()
        seconds = time.perf_counter() - start
    expected = sum(range(1, leaves + 1))
    if total != expected:
        raise AssertionError(f"delayed tree sum is {total!r}, expected {expected}")
    return {"tasks_per_s": tasks / seconds, "handover_s": handover, "seconds": seconds,
            "tasks": float(tasks)}


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def persist(api: Api, n: int, chunk: int, path: str) -> dict[str, float]:
    """The seed's persist section on the HDF5 file at ``path``."""
    import dask.array as da
    import h5py

    nbytes = 4 * n
    with h5py.File(path, mode="r") as f, _client(api) as client:
        x = da.from_array(f["/x"], chunks=(chunk,))
        reference = float(x.sum().compute())
        before_s, before = _best_of(2, lambda: x.sum().compute())
        start = time.perf_counter()
        xp = client.persist(x)
        api.wait(xp)
        persist_s = time.perf_counter() - start
        after_s, after = _best_of(3, lambda: xp.sum().compute())
    for label, value in (("before persist", before), ("after persist", after)):
        if abs(float(value) - reference) > 1e-3 * abs(reference):
            raise AssertionError(f"sum {label} is {value!r}, the first sum was {reference!r}")
    return {
        "before_s": before_s,
        "before_gbps": nbytes / before_s / 1e9,
        "persist_s": persist_s,
        "after_s": after_s,
        "after_gbps": nbytes / after_s / 1e9,
    }


def numpy_sum(n: int, chunk: int, path: str) -> dict[str, float]:
    """Reference: numpy's ``a.sum()`` on the same array held in memory, one core, best of 3."""
    import h5py

    with h5py.File(path, mode="r") as f:
        array = f["/x"][:]
    seconds, _ = _best_of(3, array.sum)
    return {"numpy_gbps": array.nbytes / seconds / 1e9}


def rosenbrock(api: Api, stop: float, delay: float, in_flight: int, seed: int) -> dict[str, float]:
    """The seed's asynchronous search: ``as_completed`` with ``add`` of a new point per result."""
    uniform = random.Random(seed).uniform
    workers, threads = 4, 2
    slots = workers * threads
    with _client(api, n_workers=workers, threads_per_worker=threads) as client:
        client.gather(client.map(_tasks.inc, range(-4 * slots, 0)))
        scale = 5.0
        best_point, best_score = (0.0, 0.0), float("inf")
        startx = [uniform(-scale, scale) for _ in range(in_flight)]
        starty = [uniform(-scale, scale) for _ in range(in_flight)]
        evaluations = 0
        start = time.perf_counter()
        futures = [
            client.submit(_tasks.rosenbrock, (x, y), delay)
            for x, y in zip(startx, starty, strict=True)
        ]
        iterator = api.as_completed(futures)
        for res in iterator:
            point, score = res.result()
            evaluations += 1
            if score < best_score:
                best_score, best_point = score, point
            x, y = best_point
            new_point = (x + uniform(-scale, scale), y + uniform(-scale, scale))
            iterator.add(client.submit(_tasks.rosenbrock, new_point, delay))
            scale *= 0.99
            if scale < stop:
                break
        wall = time.perf_counter() - start
    ideal = rosenbrock_ideal_seconds(evaluations, in_flight, slots, delay)
    return {
        "wall_over_ideal": wall / ideal,
        "wall_s": wall,
        "ideal_s": ideal,
        "evaluations": float(evaluations),
    }


def transfer(api: Api, mb: int, reps: int) -> dict[str, float]:
    """Worker-to-worker fetch of an ``mb`` MB float64 array, best of ``reps``."""
    import numpy as np

    n = mb * 1_000_000 // 8
    times = []
    with _client(api) as client:
        addresses = _worker_addresses(client)
        if len(addresses) < 2:
            raise RuntimeError(f"need 2 workers to transfer between, found {addresses}")
        a, b = addresses[:2]
        small = client.submit(np.ones, 10, workers=[a], pure=False)
        client.submit(_tasks.nbytes, small, workers=[b], pure=False).result()
        del small
        for _ in range(reps):
            source = client.submit(np.ones, n, workers=[a], pure=False)
            api.wait([source])
            start = time.perf_counter()
            got = client.submit(_tasks.nbytes, source, workers=[b], pure=False).result()
            times.append(time.perf_counter() - start)
            if got != n * 8:
                raise AssertionError(f"worker {b} saw {got} bytes, expected {n * 8}")
            del source
    seconds = min(times)
    return {"gbps": n * 8 / seconds / 1e9, "seconds": seconds}


def startup(api: Api, reps: int) -> dict[str, float]:
    """``Client(n_workers=2)`` to ready (constructor + one task back), then ``close()``."""
    ready, close = [], []
    for _ in range(reps):
        start = time.perf_counter()
        client = api.Client(n_workers=2, dashboard_address=None)
        try:
            if client.submit(_tasks.inc, 1, pure=False).result() != 2:
                raise AssertionError("inc(1) did not return 2")
            ready.append(time.perf_counter() - start)
        finally:
            start = time.perf_counter()
            client.close()
            close.append(time.perf_counter() - start)
    totals = [r + c for r, c in zip(ready, close, strict=True)]
    return {
        "total_s": statistics.median(totals),
        "ready_s": statistics.median(ready),
        "close_s": statistics.median(close),
    }


def restart(api: Api, n_workers: int, reps: int, think_s: float) -> dict[str, float]:
    """``client.restart()`` of ``n_workers`` worker processes holding results: the time until
    it returns with as many fresh workers back (checked by their pids); median of ``reps``."""
    client = _client(api, n_workers=n_workers)
    try:
        times = []
        for i in range(reps):
            before = set(client.run(_tasks.pid).values())
            held = client.map(_tasks.inc, range(100 * i, 100 * (i + 1)), pure=False)
            api.wait(held)
            time.sleep(think_s)  # a user looks at results before restarting (both systems)
            start = time.perf_counter()
            client.restart()
            times.append(time.perf_counter() - start)
            after = set(client.run(_tasks.pid).values())
            if len(after) != n_workers or after & before:
                raise AssertionError(f"restart left workers {after} (before: {before})")
            if any(f.status != "cancelled" for f in held):
                raise AssertionError("restart left futures that are not cancelled")
            if client.submit(_tasks.inc, 1, pure=False).result() != 2:
                raise AssertionError("inc(1) did not return 2 after the restart")
    finally:
        client.close()
    return {"seconds": statistics.median(times), "first_s": times[0]}


MB = 1e6


def memory_figures(samples: dict[str, float], n_tasks: int) -> dict[str, float]:
    """Turn the RSS samples (bytes) taken by ``memory`` into its metrics.

    Per-task figures are the client process's RSS growth over its idle RSS, divided by the
    number of tasks; process totals are in MB. Pure, so the arithmetic is tested on its own.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
    idle = samples["client_idle"]
    return {
        "held_bytes_per_task": (samples["client_held"] - idle) / n_tasks,
        "retained_bytes_per_task": (samples["client_released"] - idle) / n_tasks,
        "second_map_bytes_per_task": (samples["client_second"] - samples["client_released"])
        / n_tasks,
        "client_idle_mb": idle / MB,
        "workers_idle_mb": samples["workers_idle"] / MB,
        "cluster_idle_mb": samples["cluster_idle"] / MB,
        "workers_after_mb": samples["workers_after"] / MB,
    }


def _settled_rss() -> float:
    """This process's RSS after ``gc.collect()`` and, on glibc, ``malloc_trim(0)``.

    Trimming hands free heap pages back to the kernel, so the figure is memory in use rather
    than what the allocator happens to keep cached; both systems get the same treatment.
    """
    import ctypes
    import gc

    import psutil

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
    return float(psutil.Process().memory_info().rss)


def _children_rss() -> float:
    """Summed RSS of every process this one started (workers, nannies, helpers)."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _workers_rss(client: Any) -> float:
    return float(sum(client.run(_tasks.rss).values()))


def _await_released(client: Any, timeout_s: float) -> None:
    """Wait until the in-process scheduler has forgotten every task, or raise after the deadline."""
    deadline = time.monotonic() + timeout_s
    while left := len(client.cluster.scheduler.tasks):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the scheduler still holds {left} tasks {timeout_s:.0f} s after the client "
                "dropped every future; the release path leaks or is stuck"
            )
        time.sleep(0.05)


def _map_and_wait(api: Api, client: Any, start: int, n: int) -> list[Any]:
    futures = client.map(_tasks.inc, range(start, start + n))
    api.wait(futures)
    bad = [f for f in futures if f.status != "finished"]
    if bad:
        raise AssertionError(f"{len(bad)} of {n} tasks ended {bad[0].status!r}, not finished")
    last = futures[-1].result()
    if last != start + n:
        raise AssertionError(f"the last inc returned {last!r}, expected {start + n}")
    return futures


def memory(api: Api, n_tasks: int, release_timeout_s: float) -> dict[str, float]:
    """RSS of the client process (which hosts the scheduler) per held and per released task,
    and of the worker processes at idle and after the maps."""
    samples: dict[str, float] = {}
    with _client(api) as client:
        samples["workers_idle"] = _workers_rss(client)
        samples["cluster_idle"] = _children_rss()
        _map_and_wait(api, client, -200, 200)  # imports, pools and caches warm on both sides
        _await_released(client, release_timeout_s)
        samples["client_idle"] = _settled_rss()
        futures = _map_and_wait(api, client, 0, n_tasks)
        samples["client_held"] = _settled_rss()
        del futures
        _await_released(client, release_timeout_s)
        samples["client_released"] = _settled_rss()
        futures = _map_and_wait(api, client, n_tasks, n_tasks)
        del futures
        _await_released(client, release_timeout_s)
        samples["client_second"] = _settled_rss()
        samples["workers_after"] = _workers_rss(client)
    return memory_figures(samples, n_tasks)


def lock_task(api: Api, n: int, warmup: int, processes: bool) -> dict[str, float]:
    """Lock acquire + release round trips timed inside one task (the worker's client)."""
    with _client(api, processes=processes) as client:
        times = client.submit(_tasks.lock_round_trips, n, warmup, api.name, pure=False).result()
    if len(times) != n:
        raise AssertionError(f"the task timed {len(times)} round trips, not {n}")
    # Both figures come from the n timed round trips only (cluster start, connecting, creating
    # the Lock and the warm-up are not in them): the median round trip, and the sequential
    # rate n / (sum of the round trips) = 1 / mean round trip, one round trip at a time.
    return {
        "median_us": statistics.median(times) * 1e6,
        "round_trips_per_s": len(times) / sum(times),
    }


def queue_put_get(api: Api, n: int, warmup: int) -> dict[str, float]:
    """``Queue.put(i)`` then ``Queue.get()`` from the client, one pair after another."""
    queue_class = importlib.import_module(
        {"shoal": "shoal", "dask": "distributed"}[api.name]).Queue
    times = []
    with _client(api) as client:
        queue = queue_class("bench-queue", client=client)
        for i in range(warmup + n):
            start = time.perf_counter()
            queue.put(i)
            value = queue.get()
            if i >= warmup:
                times.append(time.perf_counter() - start)
            if value != i:
                raise AssertionError(f"queue.get() returned {value!r}, expected {i}")
    # As lock_task's: from the n timed pairs only (start-up, the Queue's creation and the
    # warm-up excluded); the rate is n / (sum of the pairs) = 1 / mean pair, one at a time.
    return {
        "median_us": statistics.median(times) * 1e6,
        "pairs_per_s": len(times) / sum(times),
    }


def fib_calls(n: int) -> int:
    """How many calls (tasks) ``fib(n)`` makes: 1,973 for n = 15."""
    a, b = 1, 1  # calls of fib(0), fib(1)
    for _ in range(n - 1):
        a, b = b, a + b + 1
    return b if n >= 1 else a


def fib(api: Api, n: int, reps: int) -> dict[str, float]:
    """``fib(n)`` where every call is a task submitting its two halves from the worker
    (``get_client`` / ``secede`` / ``rejoin``); best of ``reps`` after a small warm-up."""
    expected = [0, 1]
    for _ in range(n - 1):
        expected.append(expected[-1] + expected[-2])
    tasks = fib_calls(n)
    best = float("inf")
    with _client(api) as client:
        if client.submit(_tasks.fib, 5, api.name, pure=False).result() != 5:
            raise AssertionError("fib(5) is not 5")
        for _ in range(reps):
            start = time.perf_counter()
            value = client.submit(_tasks.fib, n, api.name, pure=False).result()
            best = min(best, time.perf_counter() - start)
            if value != expected[n]:
                raise AssertionError(f"fib({n}) returned {value!r}, expected {expected[n]}")
    return {"seconds": best, "tasks_per_s": tasks / best, "tasks": float(tasks)}


def _dd_gbps(directory: str, mb: int) -> tuple[float, float]:
    """The disk's own write and read throughput in ``directory``: ``dd`` of ``mb`` MB
    (written with fsync, read back after dropping the file from the page cache where
    allowed, else from the cache as the spilled data would be)."""
    import subprocess

    path = os.path.join(directory, "dd-probe")
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mb}", "conv=fsync"],
                   check=True, capture_output=True)
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True)
    read_s = time.perf_counter() - start
    os.unlink(path)
    return mb * 1e6 / write_s / 1e9, mb * 1e6 / read_s / 1e9


def _spill_counters(*_: Any) -> dict[str, float]:
    """In a task on a shoal worker: its spill store's bytes and seconds written and read."""
    from shoal.worker._context import get_worker
    from shoal.worker._spill import SpillBuffer

    data = get_worker().data
    if not isinstance(data, SpillBuffer):
        return {"written": 0, "write_s": 0.0, "read": 0, "read_s": 0.0}
    return {"written": data.written, "write_s": data.write_seconds, "read": data.read,
            "read_s": data.read_seconds}


def spill(api: Api, limit_mb: int, chunk_mb: int) -> dict[str, float]:
    """Persist an array of twice the cluster's memory limit (2 workers x ``limit_mb``), then
    sum it; peak RSS of each worker sampled every 20 ms."""
    import tempfile
    import threading

    import dask.array as da
    import psutil

    total_mb = 2 * 2 * limit_mb
    rows = chunk_mb * 1_000_000 // 8 // 1000
    n_chunks = total_mb // chunk_mb
    peaks: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-spill-") as directory, _client(
        api, memory_limit=f"{limit_mb}MB", local_directory=directory
    ) as client:
        pids = sorted(client.run(os.getpid).values())
        procs = [psutil.Process(p) for p in pids]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for proc in procs:
                    try:
                        rss = proc.memory_info().rss
                    except psutil.Error:
                        continue
                    peaks[proc.pid] = max(peaks.get(proc.pid, 0), rss)
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        x = da.ones((rows * n_chunks, 1000), chunks=(rows, 1000)) * 2
        start = time.perf_counter()
        xp = client.persist(x)
        api.wait(xp)
        persist_s = time.perf_counter() - start
        total = float(xp.sum().compute())
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        restarted = sorted(client.run(os.getpid).values()) != pids
        counters = {}
        if api.name == "shoal":
            for address in _worker_addresses(client):
                counters[address] = client.submit(_spill_counters, workers=[address],
                                                  pure=False).result()
        dd_write, dd_read = _dd_gbps(directory, 500)
    if total != 2.0 * rows * n_chunks * 1000:
        raise AssertionError(f"sum is {total!r}, expected {2.0 * rows * n_chunks * 1000!r}")
    if restarted:
        raise AssertionError("a worker was restarted during the run")
    out = {
        "seconds": seconds,
        "persist_s": persist_s,
        "peak_rss_fraction": max(peaks.values()) / (limit_mb * 1e6),
        "disk_write_gbps": dd_write,
        "disk_read_gbps": dd_read,
    }
    if counters:
        c = list(counters.values())
        write_s = sum(v["write_s"] for v in c)
        read_s = sum(v["read_s"] for v in c)
        out["spill_write_gbps"] = sum(v["written"] for v in c) / write_s / 1e9 if write_s else 0.0
        out["spill_read_gbps"] = sum(v["read"] for v in c) / read_s / 1e9 if read_s else 0.0
    return out


class _PeakRss:
    """Samples the RSS of ``pids`` every ``interval`` s in a thread; ``peaks`` per pid."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        import threading

        import psutil

        self._procs = [psutil.Process(pid) for pid in pids]
        self.peaks = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for proc in self._procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks[proc.pid], rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def shuffle(api: Api, nbytes: int, partition_bytes: int, memory_limit: Any = None) -> dict[str, float]:
    """Issue 12: a task-based ``df.shuffle("k")`` of a ``nbytes`` dataframe built on the
    workers; wall time and the peak RSS of each worker process while it runs."""
    import os

    import dask
    import dask.dataframe as dd

    rows = partition_bytes // 16  # two int64 columns
    nparts = max(nbytes // partition_bytes, 1)
    kwargs = {} if memory_limit is None else {"memory_limit": memory_limit}
    with _client(api, **kwargs) as client, dask.config.set({"dataframe.shuffle.method": "tasks"}):
        pids = sorted(client.run(os.getpid).values())
        df = dd.from_map(_tasks.shuffle_partition, range(nparts), rows=rows,
                         enforce_metadata=False)
        checks = df.shuffle("k").map_partitions(_tasks.shuffle_partition_check)
        with _PeakRss(pids) as sampler:
            start = time.perf_counter()
            out = checks.compute()
            seconds = time.perf_counter() - start
    expected_v = rows * sum(range(nparts))
    if int(out["rows"].sum()) != rows * nparts or int(out["v"].sum()) != expected_v:
        raise AssertionError(f"the shuffle lost or duplicated rows: {out.sum().to_dict()}")
    peaks = sorted(sampler.peaks.values())
    return {
        "seconds": seconds,
        "gb_per_s": nbytes / seconds / 1e9,
        "peak_rss_max_mb": peaks[-1] / MB,
        "peak_rss_min_mb": peaks[0] / MB,
        "partitions": float(nparts),
    }


def _tls_cluster(api: Api, secure: bool) -> tuple[Any, Any]:
    """A (cluster, client) of 2 workers x 1 thread; with ``secure``, TLS between every party
    with a fresh self-signed certificate from the system's own ``Security.temporary()``
    (dask's Client does not pass ``security`` on to the cluster it starts, so both systems
    get the cluster built first)."""
    module = importlib.import_module({"shoal": "shoal", "dask": "distributed"}[api.name])
    kwargs: dict[str, Any] = {}
    if secure:
        kwargs = {"security": module.Security.temporary(), "protocol": "tls://"}
    cluster = module.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, **kwargs)
    return cluster, api.Client(cluster, security=kwargs.get("security"))


def tls(
    api: Api, secure: bool, n_tasks: int, n: int, warmup: int, mb: int, reps: int
) -> dict[str, float]:
    """Throughput, latency and a worker-to-worker transfer on one cluster, over plain TCP or
    over TLS (``secure``); the same measurements as the throughput, latency and transfer
    workloads."""
    import numpy as np

    cluster, client = _tls_cluster(api, secure)
    with cluster, client:
        addresses = _worker_addresses(client)
        scheme = "tls://" if secure else "tcp://"
        if not all(a.startswith(scheme) for a in addresses):
            raise AssertionError(f"expected {scheme} workers, got {addresses}")
        client.gather(client.map(_tasks.noop, range(-200, 0)))
        start = time.perf_counter()
        results = client.gather(client.map(_tasks.noop, range(n_tasks)))
        seconds = time.perf_counter() - start
        if len(results) != n_tasks:
            raise AssertionError(f"gather returned {len(results)} results")
        times = []
        for i in range(warmup + n):
            began = time.perf_counter()
            if client.submit(_tasks.inc, i, pure=False).result() != i + 1:
                raise AssertionError(f"inc({i}) is wrong")
            if i >= warmup:
                times.append(time.perf_counter() - began)
        a, b = addresses[:2]
        size = mb * 1_000_000 // 8
        moves = []
        for _ in range(reps):
            source = client.submit(np.ones, size, workers=[a], pure=False)
            api.wait([source])
            began = time.perf_counter()
            got = client.submit(_tasks.nbytes, source, workers=[b], pure=False).result()
            moves.append(time.perf_counter() - began)
            if got != size * 8:
                raise AssertionError(f"worker {b} saw {got} bytes, expected {size * 8}")
            del source
    return {
        "tasks_per_s": n_tasks / seconds,
        "median_ms": statistics.median(times) * 1e3,
        "transfer_gbps": size * 8 / min(moves) / 1e9,
        "transfer_s": min(moves),
    }


CLUSTER_WORKLOADS: dict[str, Callable[..., dict[str, float]]] = {
    "throughput": throughput,
    "latency": latency,
    "tree": tree,
    "delayed_tree": delayed_tree,
    "persist": persist,
    "rosenbrock": rosenbrock,
    "transfer": transfer,
    "startup": startup,
    "restart": restart,
    "dashboard": dashboard,
    "memory": memory,
    "lock": lock_task,
    "queue": queue_put_get,
    "fib": fib,
    "spill": spill,
    "shuffle": shuffle,
    "tls": tls,
    "million": million,
}
REFERENCE_WORKLOADS: dict[str, Callable[..., dict[str, float]]] = {"persist": numpy_sum}

