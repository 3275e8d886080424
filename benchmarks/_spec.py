"""The workloads as data: parameters per size, the metrics they report, and the targets.

Pure: no I/O, no clock. ``_cli.py`` turns a selection into runs; ``_workloads.py`` holds the
code each run executes; ``_report.py`` formats what came back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmarks._repeat import alternate

Size = Literal["quick", "default", "full"]
SYSTEMS = ("dask", "shoal")
SYSTEM_TITLES = {"dask": "dask.distributed", "shoal": "shoal", "numpy": "numpy alone"}


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for shoal's figure: ``value op bound``."""

    op: Literal[">=", "<="]
    bound: float

    def met_by(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure a workload reports.

    ``compare`` is False for figures that describe the run rather than measure a speed (such as
    the number of evaluations); they get no ratio. ``exact`` marks a figure the parameters
    determine (a count of tasks): repeated runs must agree on it, and a disagreement is
    reported rather than averaged away.
    """

    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: Target | None = None
    compare: bool = True
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Variant:
    """One run of a workload on one system; its metrics are stored under ``prefix + key``."""

    prefix: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Run:
    """One subprocess: ``workload`` on ``system`` with ``params``, in repetition ``rep`` (from 0)."""

    workload: str
    system: str
    params: Mapping[str, Any]
    prefix: str = ""
    rep: int = 0


@dataclass(frozen=True, slots=True)
class Workload:
    """One benchmark. ``repeat`` is how many fresh subprocesses the run gives it on each system
    unless ``--repeat`` says otherwise (a system it does not name: 1); the runs alternate the
    systems and the table shows each figure's median (``_repeat.py``)."""

    name: str
    title: str
    issue: int
    metrics: tuple[Metric, ...]
    sizes: Mapping[str, Mapping[str, Any]]
    timeout_s: float
    method: str
    systems: tuple[str, ...] = SYSTEMS
    variants: tuple[Variant, ...] = (Variant(),)
    references: tuple[Metric, ...] = ()
    derive: Callable[[dict[str, float]], dict[str, float]] | None = None
    repeat: Mapping[str, int] = field(default_factory=dict)

    def params(self, size: Size) -> dict[str, Any]:
        """Parameters for ``size``; a size the workload does not define falls back to default."""
        return dict(self.sizes.get(size, self.sizes["default"]))

    def runs(self, system: str, repeat: int | None = None) -> int:
        """How many subprocesses ``system`` gets: ``repeat`` if given, else the default."""
        return repeat if repeat is not None else self.repeat.get(system, 1)


def rosenbrock_evaluations(scale: float = 5.0, factor: float = 0.99, stop: float = 0.001) -> int:
    """How many results the seed's loop consumes before ``scale < stop`` breaks it.

    Replays the loop's own float arithmetic (``scale *= factor`` once per result), so the count
    is exact rather than a logarithm rounded one way or the other.
    """
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1) for the loop to stop, got {factor}")
    count = 0
    while True:
        count += 1
        scale *= factor
        if scale < stop:
            return count


def rosenbrock_ideal_seconds(
    evaluations: int, in_flight: int, slots: int, task_seconds: float
) -> float:
    """The slot-bound ideal wall time of the seed's loop.

    At most ``min(in_flight, slots)`` evaluations run at once and each takes ``task_seconds``,
    so with zero overhead they complete in waves of that many: the last of ``evaluations``
    results cannot arrive before ``ceil(evaluations / min(in_flight, slots)) * task_seconds``.
    With 10 in flight over 8 slots, 2 tasks always wait in the queue, so all 8 slots stay busy
    and this bound is reachable.
    """
    parallel = min(in_flight, slots)
    if evaluations < 0 or parallel < 1:
        raise ValueError(f"need evaluations >= 0 and a slot, got {evaluations=} {parallel=}")
    return math.ceil(evaluations / parallel) * task_seconds


def _tls_ratios(metrics: dict[str, float]) -> dict[str, float]:
    """How much slower TLS is than plain TCP, per measurement (1.0 = no cost)."""
    out = {}
    pairs = {"transfer_slowdown": ("transfer_s", False), "latency_slowdown": ("median_ms", False),
             "throughput_slowdown": ("tasks_per_s", True)}
    for name, (key, higher_is_better) in pairs.items():
        tcp, tls = metrics.get("tcp_" + key), metrics.get("tls_" + key)
        if tcp and tls:
            out[name] = tcp / tls if higher_is_better else tls / tcp
    return out


_PERSIST_MB_PER_S_FROM_HDF5 = 2e8 * 4 / 0.5 / 1e9  # issue 3: 0.5 s for N = 2e8 float32

# Runs per system in the default run (``--repeat N`` makes it N each). A short run of shoal
# moves by 1.5x on a shared VM, so the short workloads run three times on shoal. dask runs
# three times too where its run is short; where one dask run lasts 10 s or more it runs
# fewer times: a long run already averages the machine's noise within itself, and repeating
# it would add minutes (the default run's repetitions add about 3 minutes in all). The long
# workloads (persist, spill, memory, shuffle, ...) run once.
_THREE_EACH = {"dask": 3, "shoal": 3}
_DASK_TWICE = {"dask": 2, "shoal": 3}  # tree, delayed_tree: one dask run takes 10-15 s
_DASK_ONCE = {"dask": 1, "shoal": 3}  # throughput 40 s, fib 30 s, restart 20 s per dask run

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            name="throughput",
            title="map + gather of no-op tasks",
            issue=2,
            repeat=_DASK_ONCE,
            metrics=(
                # issue 14's target (issue 2 asked for 20,000)
                Metric("tasks_per_s", "tasks/s", "tasks/s", True, Target(">=", 40_000)),
                Metric("seconds", "wall time", "s", False),
            ),
            sizes={"quick": {"n_tasks": 2_000}, "default": {"n_tasks": 20_000}},
            timeout_s=600,
            method="`client.map(noop, range(n))` then `client.gather`, after a 200-task warm-up; "
            "2 workers x 1 thread.",
        ),
        Workload(
            name="latency",
            title="sequential submit().result() round trips",
            issue=2,
            repeat=_THREE_EACH,
            metrics=(
                # issue 14's target (issue 2 asked for 0.5 ms)
                Metric("median_ms", "median round trip", "ms", False, Target("<=", 0.25)),
                Metric("p99_ms", "p99 round trip", "ms", False),
            ),
            sizes={"quick": {"n": 100, "warmup": 20}, "default": {"n": 300, "warmup": 30}},
            timeout_s=300,
            method="`client.submit(inc, i, pure=False).result()` one after another, after a "
            "warm-up; 2 workers x 1 thread.",
        ),
        Workload(
            name="lock",
            title="Lock acquire + release round trip from a task",
            issue=10,
            repeat=_THREE_EACH,
            metrics=(
                # 10x dask.distributed's median measured here (1.05 ms).
                Metric("median_us", "median round trip", "us", False, Target("<=", 105)),
                Metric("round_trips_per_s", "round trips/s", "1/s", True),
            ),
            sizes={"quick": {"n": 200, "warmup": 20, "processes": True},
                   "default": {"n": 2000, "warmup": 100, "processes": True}},
            timeout_s=300,
            method="One task runs `lock = Lock('bench-lock')` then `lock.acquire(); "
            "lock.release()` n times after a warm-up, timing each pair; 2 workers x 1 thread. "
            "The lock talks through the worker process's own client (`get_client()`), "
            "connected to the scheduler over TCP. dask's release waits for the scheduler's "
            "answer; shoal's "
            "does not (ordered with the client's later messages). The target is 10x "
            "dask.distributed's median measured here. Round trips/s is n over the summed time "
            "of the n timed round trips (1 / the mean, one at a time; start-up and warm-up "
            "not counted).",
        ),
        Workload(
            name="queue",
            title="Queue put + get from the client",
            issue=10,
            repeat=_THREE_EACH,
            metrics=(
                # 10x dask.distributed's median measured here (0.55 ms).
                Metric("median_us", "median put + get", "us", False, Target("<=", 55)),
                Metric("pairs_per_s", "put + get pairs/s", "1/s", True),
            ),
            sizes={"quick": {"n": 200, "warmup": 20}, "default": {"n": 2000, "warmup": 100}},
            timeout_s=300,
            method="`q = Queue('bench-queue')`, then `q.put(i)` and `q.get()` (checked to be "
            "i) one pair after another, after a warm-up; 2 workers x 1 thread. shoal's put on "
            "a queue without maxsize does not wait for the scheduler's answer (see the "
            "README); dask's does. The client shares its process with the LocalCluster's "
            "scheduler: shoal applies both requests from the calling thread, without a hand-off "
            "to its event loop (shoal/client/_direct.py). The target is 10x dask.distributed's "
            "median measured here. Pairs/s is n over the summed time of the n timed pairs "
            "(1 / the mean, one at a time; start-up and warm-up not counted).",
        ),
        Workload(
            name="tree",
            title="pairwise reduction tree built from futures",
            issue=2,
            repeat=_DASK_TWICE,
            metrics=(
                Metric("tasks_per_s", "tasks/s", "tasks/s", True, Target(">=", 10_000)),
                Metric("seconds", "wall time", "s", False),
                Metric("tasks", "tasks", "", True, compare=False, exact=True),
            ),
            sizes={"quick": {"leaves": 512}, "default": {"leaves": 2048}},
            timeout_s=600,
            method="`client.map(inc, range(leaves))`, then `client.submit(add, a, b)` pairwise "
            "level by level down to one future; timed from the first submit to the root's "
            "`result()`; 2 workers x 1 thread.",
        ),
        Workload(
            name="delayed_tree",
            title="pairwise reduction tree built with dask.delayed, through client.compute",
            issue=14,
            repeat=_DASK_TWICE,
            metrics=(
                Metric("tasks_per_s", "tasks/s", "tasks/s", True, Target(">=", 15_000)),
                Metric("handover_s", "client.compute returns", "s", False),
                Metric("seconds", "wall time", "s", False),
                Metric("tasks", "tasks", "", True, compare=False, exact=True),
            ),
            sizes={"quick": {"leaves": 512}, "default": {"leaves": 2048},
                   "full": {"leaves": 20_000}},
            timeout_s=600,
            method="the `tree` workload's graph built with `dask.delayed(inc)` leaves and "
            "`dask.delayed(add)` pairs (built before timing), then `client.compute(root)` "
            "and `result()`; timed from the call to the result, with the time until "
            "`compute` returns shown apart; 2 workers x 1 thread.",
        ),
        Workload(
            name="persist",
            title="the seed's persist: sum of an HDF5 array before and after persist",
            issue=3,
            metrics=(
                Metric("before_s", "sum from HDF5", "s", False),
                Metric(
                    "before_gbps",
                    "sum from HDF5",
                    "GB/s",
                    True,
                    Target(">=", _PERSIST_MB_PER_S_FROM_HDF5),
                ),
                Metric("persist_s", "persist + wait", "s", False),
                Metric("after_s", "sum after persist", "s", False),
                Metric("after_gbps", "sum after persist", "GB/s", True, Target(">=", 6.0)),
            ),
            sizes={
                "quick": {"n": 20_000_000, "chunk": 1_000_000},
                "default": {"n": 200_000_000, "chunk": 1_000_000},
                "full": {"n": 1_000_000_000, "chunk": 1_000_000},
            },
            timeout_s=900,
            method="HDF5 file of N exponential float32 (written once per run, shared by both "
            "systems), `da.from_array(dset, chunks=(1_000_000,))`; `x.sum().compute()` once "
            "untimed (page cache, imports), then best of 2 timed; `client.persist(x)` + `wait`; "
            "then best of 3 sums after persist. GB/s = 4N bytes / seconds. The HDF5 target is "
            "issue 3's 0.5 s at N = 2e8, i.e. 1.6 GB/s. 2 workers x 1 thread.",
            references=(Metric("numpy_gbps", "numpy `a.sum()` in memory", "GB/s", True),),
        ),
        Workload(
            name="rosenbrock",
            title="the seed's as_completed search (0.1 s tasks, 10 in flight)",
            issue=6,
            metrics=(
                Metric(
                    "wall_over_ideal", "wall / slot-bound ideal", "x", False, Target("<=", 1.01)
                ),
                Metric("wall_s", "wall time", "s", False),
                Metric("ideal_s", "slot-bound ideal", "s", False, compare=False, exact=True),
                Metric("evaluations", "evaluations", "", True, compare=False, exact=True),
            ),
            sizes={
                "quick": {"stop": 1.8, "delay": 0.1, "in_flight": 10, "seed": 0},
                "default": {"stop": 0.001, "delay": 0.1, "in_flight": 10, "seed": 0},
            },
            timeout_s=300,
            method="The seed's loop as written (scale 5, `scale *= 0.99` per result, break when "
            "`scale < stop`; the default stop 0.001 gives exactly "
            f"{rosenbrock_evaluations()} evaluations), `random.Random(0)` for the points, "
            "timed from the first submit to the break; 4 workers x 2 threads = 8 slots. "
            "Ideal = ceil(evaluations / min(10 in flight, 8 slots)) x 0.1 s "
            f"(= {rosenbrock_ideal_seconds(rosenbrock_evaluations(), 10, 8, 0.1):.1f} s by default): "
            "with 2 tasks always queued the 8 slots never idle, so results arrive in waves of 8.",
        ),
        Workload(
            name="transfer",
            title="worker-to-worker transfer of a 200 MB array",
            issue=6,
            metrics=(
                Metric("gbps", "transfer", "GB/s", True, Target(">=", 4.0)),
                Metric("seconds", "transfer time", "s", False),
            ),
            sizes={"default": {"mb": 200, "reps": 3}},
            timeout_s=300,
            method="`client.submit(np.ones, n, workers=[a], pure=False)` and `wait`, then time "
            "`client.submit(nbytes, x, workers=[b]).result()`; a fresh array each repetition, "
            "best of 3; 2 workers x 1 thread.",
        ),
        Workload(
            name="spill",
            title="persist + sum of an array of twice the cluster's memory limit (spilling)",
            issue=12,
            metrics=(
                Metric("seconds", "persist + sum", "s", False),
                Metric("persist_s", "persist + wait", "s", False),
                Metric("peak_rss_fraction", "peak worker RSS / limit", "x", False,
                       Target("<=", 1.0), compare=False),
                Metric("spill_write_gbps", "spill writes", "GB/s", True, compare=False),
                Metric("spill_read_gbps", "spill read-backs", "GB/s", True, compare=False),
                Metric("disk_write_gbps", "dd write (fsync) to the same directory", "GB/s",
                       True, compare=False),
                Metric("disk_read_gbps", "dd read from the same directory", "GB/s", True,
                       compare=False),
            ),
            sizes={
                "quick": {"limit_mb": 300, "chunk_mb": 20},
                "default": {"limit_mb": 600, "chunk_mb": 20},
            },
            timeout_s=900,
            method="`Client(n_workers=2, threads_per_worker=1, memory_limit=L, "
            "local_directory=tmp)`; `(da.ones(...) * 2).persist()` of 2 x 2 x L in 20 MB chunks, "
            "`wait`, then `.sum().compute()`; the time covers both. Peak RSS: each worker "
            "sampled every 20 ms; the run fails if a worker restarted or the sum is wrong. "
            "Spill throughput (shoal): bytes / seconds inside the workers' spill writes and "
            "reads; the disk's own: `dd` of 500 MB to and from the same directory.",
        ),
        Workload(
            name="startup",
            title="Client(n_workers=2) to ready, and close",
            issue=6,
            repeat=_THREE_EACH,
            metrics=(
                Metric("total_s", "start + close", "s", False, Target("<=", 0.3)),
                Metric("ready_s", "start to ready", "s", False),
                Metric("close_s", "close", "s", False),
            ),
            sizes={"default": {"reps": 3}},
            timeout_s=300,
            method="`Client(n_workers=2, dashboard_address=None)`, ready = the constructor "
            "returned and one `submit(inc, 1).result()` came back; then `client.close()`; "
            "median of 3 in one process (imports done before timing).",
        ),
        Workload(
            name="restart",
            title="client.restart() of 4 worker processes",
            issue=11,
            repeat=_DASK_ONCE,
            metrics=(
                Metric("seconds", "restart", "s", False, Target("<=", 0.5)),
                Metric("first_s", "first restart", "s", False),
            ),
            sizes={"quick": {"n_workers": 4, "reps": 3, "think_s": 1.0},
                   "default": {"n_workers": 4, "reps": 5, "think_s": 1.0}},
            timeout_s=300,
            method="`Client(n_workers=4, threads_per_worker=1)`; each repetition maps 100 "
            "tasks, waits, pauses 1 s (a user looking at results), then times `client.restart()` until it returns with 4 fresh worker "
            "processes (new pids checked, old futures cancelled, a new task runs); median of 5, "
            "and the first one alone (shoal's nannies start a warm standby process after a "
            "restart, so the first restart pays for Python start-ups and later ones do not).",
        ),
        Workload(
            name="memory",
            title="memory: client + scheduler per task, and workers",
            issue=2,
            metrics=(
                Metric(
                    "held_bytes_per_task", "client+scheduler RSS per held task", "B/task", False
                ),
                Metric(
                    "retained_bytes_per_task", "RSS per task kept after release", "B/task", False
                ),
                Metric(
                    "second_map_bytes_per_task",
                    "RSS growth per task, second map",
                    "B/task",
                    False,
                    compare=False,
                ),
                Metric("client_idle_mb", "client+scheduler RSS, idle", "MB", False),
                Metric("workers_idle_mb", "worker RSS summed, idle", "MB", False),
                Metric("cluster_idle_mb", "all child processes RSS, idle", "MB", False),
                Metric("workers_after_mb", "worker RSS summed, after the maps", "MB", False),
            ),
            sizes={
                "quick": {"n_tasks": 20_000, "release_timeout_s": 60.0},
                "default": {"n_tasks": 100_000, "release_timeout_s": 120.0},
            },
            timeout_s=900,  # dask needed 370 s for its 2 x 100,000 tasks on 2 cores
            method="`Client(n_workers=2, threads_per_worker=1, dashboard_address=None)` as in "
            "every workload (for dask this leaves the Bokeh dashboard off, though its plain "
            "HTTP routes still listen). Both systems run the scheduler inside the client "
            "process, so the client's RSS is client + scheduler for both and the comparison "
            "is fair. Every client sample is RSS after `gc.collect()` and glibc "
            "`malloc_trim(0)`. Idle = after a 200-task warm-up, released. Held = "
            "`futs = client.map(inc, range(n)); wait(futs)` with the futures still held; "
            "retained = after `del futs` and `len(client.cluster.scheduler.tasks)` reached 0; "
            "per task = growth over idle / n. Retained is not all leak: it includes bounded "
            "histories that fill up at this scale (shoal: a 100,000-entry task stream and "
            "transition log; dask: its transition logs) and heap the allocator cannot return. "
            "Second map = a further map of n fresh keys, held, dropped and released: RSS "
            "growth over the first release / n, the leak check (near 0 when memory is reused). "
            "Worker RSS = sum of "
            "`client.run(psutil rss)` right after startup and again at the end; child "
            "processes = every process the client started (workers, nannies, helpers).",
        ),
        Workload(
            name="fib",
            title="fib(15): tasks submitting tasks with get_client / secede / rejoin",
            issue=10,
            repeat=_DASK_ONCE,
            metrics=(
                # 10x dask.distributed's 12.0 s for fib(15) on this 2-core VM.
                Metric("seconds", "wall time", "s", False, Target("<=", 1.2)),
                Metric("tasks_per_s", "tasks/s", "tasks/s", True),
                Metric("tasks", "tasks", "", True, compare=False, exact=True),
            ),
            sizes={"quick": {"n": 10, "reps": 1}, "default": {"n": 15, "reps": 3}},
            timeout_s=600,
            method="`client.submit(fib, 15, pure=False).result()` where each call with n >= 2 "
            "runs `c = get_client()`, submits fib(n-1) and fib(n-2) (`pure=False`, so each "
            "call is its own task: 1,973 tasks), `secede()`, sums the two results, "
            "`rejoin()`; best of 3 after a fib(5) warm-up; 2 workers x 1 thread. The target "
            "is 10x dask.distributed's wall time measured here (12.0 s).",
        ),
        Workload(
            name="shuffle",
            title="task-based df.shuffle(\"k\") of a dataframe built on the workers",
            issue=12,
            metrics=(
                Metric("seconds", "wall time", "s", False),
                Metric("gb_per_s", "shuffled", "GB/s", True),
                Metric("peak_rss_max_mb", "peak RSS, fuller worker", "MB", False),
                Metric("peak_rss_min_mb", "peak RSS, other worker", "MB", False),
                Metric("partitions", "partitions", "", True, compare=False, exact=True),
            ),
            sizes={
                "quick": {"nbytes": 64 * 2**20, "partition_bytes": 4 * 2**20},
                "default": {"nbytes": 256 * 2**20, "partition_bytes": 8 * 2**20},
                # The issue's case: 4 GiB in 32 MiB partitions, 1.5 GiB per worker.
                "full": {"nbytes": 4 * 2**30, "partition_bytes": 32 * 2**20,
                         "memory_limit": "1.5GiB"},
            },
            timeout_s=900,
            method="`dd.from_map` builds the partitions on the workers (an int64 key over "
            "2^30 values and an int64 value), then `df.shuffle(\"k\")` with "
            "`dataframe.shuffle.method = \"tasks\"` and one check per output partition "
            "(rows, sum of values) is computed; wall time of the compute, and the peak RSS "
            "of each worker process sampled every 50 ms by psutil; 2 workers x 1 thread, "
            "default memory limits (the full size: 1.5 GiB per worker).",
        ),
        Workload(
            name="dashboard",
            title="throughput with a browser on the dashboard (shoal only)",
            issue=5,
            metrics=(
                Metric("on_watched_tasks_per_s", "tasks/s, chromium on /status", "tasks/s",
                       True),
                Metric("on_unwatched_tasks_per_s", "tasks/s, chromium on about:blank",
                       "tasks/s", True),
                Metric("on_watched_over_unwatched", "watched / unwatched", "x", True,
                       Target(">=", 0.95)),
                Metric("on_pair_ratio_min", "watched / unwatched, lowest pair", "x", True,
                       compare=False),
                Metric("on_pair_ratio_max", "watched / unwatched, highest pair", "x", True,
                       compare=False),
                Metric("on_watched_browser_cpu_share", "chromium CPU / wall, watched", "cores",
                       False, compare=False),
                Metric("on_unwatched_browser_cpu_share", "chromium CPU / wall, unwatched",
                       "cores", False, compare=False),
                Metric("off_tasks_per_s", "tasks/s, dashboard_address=None (other process)",
                       "tasks/s", True, compare=False),
            ),
            sizes={
                "quick": {"n_tasks": 2_000, "block_s": 1.0, "pairs": 2},
                "default": {"n_tasks": 20_000, "block_s": 3.0, "pairs": 6},
            },
            timeout_s=600,
            method="One process, one cluster (`dashboard_address=':0'`, 2 workers x 1 thread) "
            "and one headless /usr/bin/chromium (Playwright) page. Blocks of maps "
            "(`client.map(noop, range)` + `gather`, n tasks on fresh keys each, repeated until "
            "the block lasted block_s, i.e. several of the page's 1 s polls) alternate "
            "between the page on `client.dashboard_link` (/status, watched; from 2 s after it "
            "loaded, so it is polling and drawing, not starting up) and the page on "
            "about:blank (unwatched; from 0.5 s after leaving /status), in the order U W W U "
            "U W ..., `pairs` blocks of each; tasks/s of a block = its tasks / its wall time "
            "(navigation and settling are not timed). Each side's figure is the median of its "
            "blocks, the ratio watched / unwatched of the two medians, so the ratio compares "
            "the same scheduler in the same phases of the shared machine; lowest and highest "
            "pair: each watched block over the unwatched block next to it (U W | W U | ...), "
            "how far the machine's phases move the ratio within the run. Chromium CPU / wall: "
            "CPU of chromium's processes over each side's blocks. For information only (not "
            "in the ratio): the median of `pairs` blocks in another process on a cluster with "
            "`dashboard_address=None`.",
            systems=("shoal",),
            variants=(
                Variant("off_", {"dashboard": False}),
                Variant("on_", {"dashboard": True}),
            ),
        ),
        Workload(
            name="tls",
            title="the cost of TLS: throughput, latency, 200 MB worker-to-worker transfer",
            issue=13,
            metrics=(
                Metric("tcp_tasks_per_s", "map tasks/s, tcp", "tasks/s", True),
                Metric("tls_tasks_per_s", "map tasks/s, tls", "tasks/s", True),
                Metric("tcp_median_ms", "median round trip, tcp", "ms", False),
                Metric("tls_median_ms", "median round trip, tls", "ms", False),
                Metric("tcp_transfer_gbps", "200 MB transfer, tcp", "GB/s", True),
                Metric("tls_transfer_gbps", "200 MB transfer, tls", "GB/s", True),
                Metric("throughput_slowdown", "map: tcp / tls speed", "x", False),
                Metric("latency_slowdown", "round trip: tls / tcp", "x", False),
                Metric("transfer_slowdown", "transfer: tls / tcp time", "x", False,
                       Target("<=", 1.3)),
            ),
            sizes={
                "quick": {"n_tasks": 2_000, "n": 100, "warmup": 20, "mb": 50, "reps": 2},
                "default": {"n_tasks": 20_000, "n": 300, "warmup": 30, "mb": 200, "reps": 3},
            },
            timeout_s=900,
            method="One cluster per transport (2 workers x 1 thread), plain `tcp://` and then "
            "`tls://` with `Security.temporary()` (mutual TLS between client, scheduler and "
            "workers): `client.map(noop, range(20_000))` + gather after a warm-up; 300 "
            "sequential `submit(inc).result()` round trips (median); `np.ones` of 200 MB on "
            "one worker fetched by a task on the other, best of 3. Slowdowns are TLS over "
            "TCP for the same system (1.0 = free); the target is issue 13's <= 1.3x for the "
            "transfer.",
            variants=(
                Variant("tcp_", {"secure": False}),
                Variant("tls_", {"secure": True}),
            ),
            derive=_tls_ratios,
        ),
        Workload(
            name="million",
            title="a million tasks: client.map and da.ones(chunks=1).sum(), loop stalls (shoal only)",
            issue=14,
            metrics=(
                Metric("map_seconds", "client.map(noop) + wait", "s", False, Target("<=", 25.0)),
                Metric("map_tasks_per_s", "map tasks/s", "tasks/s", True),
                Metric("map_first_done_seconds", "map: first task done after", "s", False),
                Metric("map_held_bytes_per_task", "map: client+scheduler RSS per held future",
                       "B/task", False, Target("<=", 1024.0)),
                Metric("map_worst_loop_cpu_ms", "map: most loop CPU between 10 ms ticks",
                       "ms", False, Target("<=", 100.0)),
                Metric("map_worst_loop_stall_ms", "map: worst loop wake-up delay (wall)",
                       "ms", False),
                Metric("map_worst_health_ms", "map: slowest dashboard /health", "ms", False),
                Metric("array_seconds", "da.ones(n, chunks=1).sum().compute()", "s", False,
                       Target("<=", 120.0)),
                Metric("array_first_done_seconds", "array: first task done after", "s", False),
                Metric("array_worst_loop_cpu_ms", "array: most loop CPU between 10 ms ticks",
                       "ms", False, Target("<=", 100.0)),
                Metric("array_worst_loop_stall_ms", "array: worst loop wake-up delay (wall)",
                       "ms", False),
                Metric("array_worst_health_ms", "array: slowest dashboard /health", "ms", False),
            ),
            sizes={
                "quick": {"n_map": 20_000, "n_array": 5_000},
                "default": {"n_map": 100_000, "n_array": 20_000},
                "full": {"n_map": 1_000_000, "n_array": 1_000_000},
            },
            timeout_s=3600,
            method="shoal only: dask.distributed needs about 25 minutes for the 1M-task map "
            "(665 tasks/s) and far longer for the array (it ingests a 2.5M-task graph in "
            "about 5 minutes before running it); the throughput and memory workloads compare "
            "the two side by side at 20,000-100,000 tasks. `Client(n_workers=2, "
            "threads_per_worker=1, dashboard_address=':0')`: `client.map(noop, range(n))` "
            "+ `wait`, then `da.ones(n, chunks=1).sum().compute()` (about 2n tasks; dask's "
            "graph building, optimisation and ordering happen in the client first). A probe "
            "coroutine on the loop that runs the scheduler sleeps 10 ms at a time and records "
            "the most CPU its thread used between two wake-ups (an upper bound of the longest "
            "callback, independent of machine load) and how late it woke (wall clock, which "
            "includes waiting for a core on a loaded machine); a thread GETs /health every "
            "50 ms. First done = when the scheduler first counted a finished task. Default "
            "sizes are small so `make bench` stays short; `--full` runs issue 14's million.",
            systems=("shoal",),
        ),
    ]
}


def plan(
    names: list[str], size: Size, systems: tuple[str, ...], repeat: int | None = None
) -> list[Run]:
    """The subprocess runs for ``names`` on ``systems``, in order.

    Each workload's runs alternate the systems (``_repeat.alternate``: dask first when both
    run as often, so one run each is dask then shoal); every repetition runs all of the
    workload's variants of that system in turn. ``repeat`` replaces every workload's default
    number of runs per system. Reference runs (numpy alone) are added once whenever their
    workload is selected.
    """
    if repeat is not None and repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    runs: list[Run] = []
    for name in names:
        workload = WORKLOADS[name]
        base = workload.params(size)
        counts = {
            system: workload.runs(system, repeat)
            for system in SYSTEMS
            if system in systems and system in workload.systems
        }
        for system, rep in alternate(counts):
            for variant in workload.variants:
                params = {**base, **variant.params}
                runs.append(Run(name, system, params, variant.prefix, rep))
        if workload.references:
            runs.append(Run(name, "numpy", base))
    return runs
