"""Where the CPU of ``client.map(noop, range(n))`` + gather goes, per task and per thread.

``python -m benchmarks._profile`` starts the throughput workload's cluster (2 worker
processes x 1 thread, no dashboard), warms it up, then runs the map ``--repeats`` times and
prints, for each process and thread (client main thread, the ``shoal-loop`` thread that
runs the scheduler and the client's I/O, each worker's loop and task threads), the CPU µs
it spent per task, from the kernel's per-thread counters (no sampling, no tracing, so the
figures are the workload's own). Thread names come from ``threading.enumerate()`` in each
process (through ``client.run`` for workers).

For the functions inside each thread, run it under py-spy, e.g.::

    py-spy record --subprocesses --threads --nonblocking --rate 200 --format raw \\
        -o /tmp/stacks.txt -- python -m benchmarks._profile --repeats 5

and fold the samples by thread and function (``--fold /tmp/stacks.txt`` prints the top
functions by self samples per thread).

``--round-trips N`` measures the latency workload instead (N sequential
``submit(inc, i, pure=False).result()`` after a warm-up): the round trip's median, tenth
percentile and mean, and each thread's CPU µs per round trip, user and system apart (the
system part is mostly the wake-ups of the six thread hand-offs). Run it under
``chrt -f 10``, and once more pinned to one CPU (``taskset -c 1``), where every hand-off is
a context switch on the same CPU and the wall clock is the sum of the CPU figures.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from benchmarks import _tasks


def _thread_names() -> tuple[int, dict[int, str]]:
    """This process's id and its threads' names by native id."""
    return os.getpid(), {t.native_id: t.name for t in threading.enumerate()
                         if t.native_id is not None}


def _cpu_by_thread(pids: dict[int, dict[int, str]],
                   split: bool = False) -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) per (pid, thread name); unnamed threads are 'other'.
    With ``split``, user and system time apart: keys ``(pid, name + " usr")`` and
    ``(pid, name + " sys")``."""
    out: dict[tuple[int, str], float] = collections.defaultdict(float)
    for pid, names in pids.items():
        try:
            threads = psutil.Process(pid).threads()
        except psutil.Error:
            continue
        for t in threads:
            name = names.get(t.id, "other")
            if split:
                out[(pid, name + " usr")] += t.user_time
                out[(pid, name + " sys")] += t.system_time
            else:
                out[(pid, name)] += t.user_time + t.system_time
    return out


def measure(n: int, repeats: int) -> None:
    import shoal

    with shoal.Client(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as client:
        client.gather(client.map(_tasks.noop, range(-500, 0)))
        pids, labels = _processes(client)
        for rep in range(repeats):
            before = _cpu_by_thread(pids)
            start = time.perf_counter()
            futures = client.map(_tasks.noop, range(rep * n, (rep + 1) * n))
            client.gather(futures)
            wall = time.perf_counter() - start
            del futures
            after = _cpu_by_thread(pids)
            print(f"run {rep}: {n / wall:,.0f} tasks/s, {wall / n * 1e6:.1f} µs wall per task")
            rows = sorted(after, key=lambda k: (labels[k[0]], k[1]))
            total: dict[int, float] = collections.defaultdict(float)
            for k in rows:
                used = after[k] - before.get(k, 0.0)
                total[k[0]] += used
                if used * 1e6 / n >= 0.5:
                    print(f"  {labels[k[0]]:<17} {k[1]:<24} {used / n * 1e6:7.1f} µs CPU/task")
            for p, used in sorted(total.items(), key=lambda kv: labels[kv[0]]):
                print(f"  {labels[p]:<17} {'(all threads)':<24} {used / n * 1e6:7.1f} µs CPU/task")


def _processes(client: Any) -> tuple[dict[int, dict[int, str]], dict[int, str]]:
    """Each process's threads (by pid) and a label per pid: the client's own process
    (which holds the scheduler) and the workers, numbered."""
    pids = dict(client.run(_thread_names).values())
    pid, names = _thread_names()
    pids[pid] = names
    labels = {pid: "client+scheduler"}
    for i, wpid in enumerate(sorted(p for p in pids if p != pid)):
        labels[wpid] = f"worker {i}"
    return pids, labels


def round_trips(n: int, warmup: int) -> None:
    """Sequential ``submit(inc, i, pure=False).result()``: wall clock and CPU per round trip."""
    import shoal

    with shoal.Client(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as client:
        for i in range(warmup):
            client.submit(_tasks.inc, i, pure=False).result()
        pids, labels = _processes(client)
        before = _cpu_by_thread(pids, split=True)
        times = []
        for i in range(n):
            start = time.perf_counter()
            client.submit(_tasks.inc, i, pure=False).result()
            times.append(time.perf_counter() - start)
        after = _cpu_by_thread(pids, split=True)
    used = {(labels[k[0]], k[1]): after[k] - before.get(k, 0.0) for k in after}
    print("\n".join(round_trip_lines(times, used)))


def round_trip_lines(times: list[float], used: dict[tuple[str, str], float]) -> list[str]:
    """The report of :func:`round_trips`: wall-clock figures of the round ``times``
    (seconds), then the CPU seconds ``used`` per (process, thread) over all of them, in µs
    per round trip (threads under 0.5 µs left out), and their sum."""
    n = len(times)
    ordered = sorted(times)
    lines = [f"{n} round trips: median {statistics.median(ordered) * 1e3:.3f} ms, p10 "
             f"{ordered[n // 10] * 1e3:.3f} ms, mean {sum(ordered) / n * 1e3:.3f} ms"]
    total = 0.0
    for (process, thread), seconds in sorted(used.items()):
        per = seconds / n * 1e6
        total += per
        if per >= 0.5:
            lines.append(f"  {process:<17} {thread:<28} {per:7.1f} µs CPU/round trip")
    lines.append(f"  {'all processes':<46} {total:7.1f} µs CPU/round trip")
    return lines


def _thread_label(frames: list[str]) -> str:
    """A thread's name: py-spy names a subprocess's threads in a frame
    ``thread (pid): name``; the parent's threads by id only, so for those the first frame
    outside threading, runpy and the import machinery stands for the role."""
    for frame in frames[2:]:
        if frame.startswith("thread (") and "): " in frame:
            return frame
    for frame in frames[2:]:
        if not any(s in frame for s in ("threading.py", "runpy", "<frozen")):
            return frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
    return frames[1]


def fold(path: str, top: int) -> None:
    """Top functions by self and by total samples per process and thread role, from
    py-spy's ``--format raw`` output (lines ``process;thread;frame;...;frame count``)."""
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 3:
            continue
        thread = _thread_label(frames)
        n = int(count)
        own[thread][frames[-1]] += n
        for frame in set(frames[2:]):
            inclusive[thread][frame] += n
        totals[thread] += n
    for thread, total in totals.most_common():
        if total < 20:
            continue
        print(f"\n{thread}: {total} samples\n  self:")
        for frame, c in own[thread].most_common(top):
            print(f"  {100 * c / total:5.1f}%  {frame}")
        print("  total (shoal frames):")
        shown = 0
        for frame, c in inclusive[thread].most_common():
            if "shoal/" in frame and shown < top:
                print(f"  {100 * c / total:5.1f}%  {frame}")
                shown += 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._profile")
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fold", metavar="RAW", help="summarize py-spy raw output instead")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--round-trips", type=int, metavar="N",
                   help="measure N sequential submit().result() round trips instead")
    p.add_argument("--warmup", type=int, default=300, help="round trips before measuring")
    args = p.parse_args(argv)
    from benchmarks._machine import scheduler_build

    print(f"scheduler state machine: {scheduler_build()}", flush=True)
    if args.fold:
        fold(args.fold, args.top)
    elif args.round_trips:
        round_trips(args.round_trips, args.warmup)
    else:
        measure(args.tasks, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
