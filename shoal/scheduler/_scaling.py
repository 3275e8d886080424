"""How many workers the load calls for, and which to let go: pure functions of a load
snapshot (``scheduler._views.load``), for ``cluster.scale`` and ``cluster.adapt``.

Owns: the adaptive target (dask's rule: the expected seconds of work queued and running
spread over ``target_duration``, never more workers than there are tasks, more when
memory is over 60 % full), the choice of workers to retire (idle ones holding the least
data first), and the hysteresis that retires a worker only after it was suggested
``wait_count`` times in a row. Must not know: clocks, loops, clusters or connections;
the shell (``cluster/_adaptive.py``) takes a snapshot, asks, and carries out the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MEMORY_FULL_FRACTION = 0.6


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    address: str
    name: str
    nthreads: int
    processing: int  # tasks assigned (running or queued on it)
    occupancy: float  # expected seconds of those tasks
    nbytes: int  # bytes of results it holds
    memory_limit: int


@dataclass(frozen=True, slots=True)
class Load:
    workers: tuple[WorkerLoad, ...]
    ready: int = 0  # tasks ready to run but on no worker yet (queued, or no worker fits)
    ready_seconds: float = 0.0  # their expected seconds


def target_workers(load: Load, target_duration: float) -> int:
    """Workers wanted to finish the current work in about ``target_duration`` seconds."""
    workers = load.workers
    busy = sum(w.occupancy for w in workers) + load.ready_seconds
    cpu = math.ceil(busy / max(target_duration, 1e-9))
    tasks = load.ready + sum(w.processing for w in workers)
    cpu = min(cpu, tasks)  # a few long tasks do not ask for many threads
    if workers:
        nthreads = sum(w.nthreads for w in workers)
        cpu = math.ceil(cpu / nthreads * len(workers))
    elif load.ready:
        cpu = max(1, cpu)
    limit = sum(w.memory_limit for w in workers)
    used = sum(max(w.nbytes, 0) for w in workers)
    memory = 2 * len(workers) if limit > 0 and used > MEMORY_FULL_FRACTION * limit else 0
    return max(memory, cpu)


def choose_to_retire(workers: tuple[WorkerLoad, ...] | list[WorkerLoad], n: int,
                     idle_only: bool = False) -> list[str]:
    """The addresses of ``n`` workers to retire: idle ones first, then those holding the
    least data (least to move), then the youngest names. With ``idle_only`` busy workers
    are never chosen (fewer may be returned)."""
    if n <= 0:
        return []
    pool = [w for w in workers if not (idle_only and w.processing)]
    pool.sort(key=lambda w: (w.processing > 0, max(w.nbytes, 0), _name_order(w.name), w.address),
              reverse=False)
    return [w.address for w in pool[:n]]


def choose_groups_to_retire(workers: list[WorkerLoad], group_of: dict[str, Any],
                            target: int) -> list[str]:
    """The addresses of whole groups of idle workers to retire (``group_of``: address ->
    group, dask's ``worker_key``) while the workers left are at least ``target``: groups
    holding the least data first; stops at the first group that is busy or would leave
    too few (dask's ``Scheduler.workers_to_close`` with a key)."""
    groups: dict[Any, list[WorkerLoad]] = {}
    for w in workers:
        groups.setdefault(group_of[w.address], []).append(w)
    order = sorted(groups.values(),
                   key=lambda g: (any(w.processing for w in g), sum(max(w.nbytes, 0) for w in g)))
    left = len(workers)
    out: list[str] = []
    for group in order:
        if any(w.processing for w in group) or left - len(group) < target:
            break
        left -= len(group)
        out += sorted(w.address for w in group)
    return out


def _name_order(name: str) -> tuple[int, int | str]:
    """Higher numeric names (the most recently added in a LocalCluster) go first."""
    return (0, -int(name)) if name.isdigit() else (1, name)


@dataclass(frozen=True, slots=True)
class ScaleUp:
    n: int  # total workers wanted


@dataclass(frozen=True, slots=True)
class ScaleDown:
    workers: list[Any]  # to retire: addresses (or the names a custom policy gave)


@dataclass(frozen=True, slots=True)
class Same:
    pass


Recommendation = ScaleUp | ScaleDown | Same


@dataclass
class AdaptivePolicy:
    """dask's ``Adaptive`` decisions without its loop: feed a :class:`Load` to
    :meth:`recommend` at each interval; scale up at once, retire a worker only after it
    was proposed ``wait_count`` times in a row (a short lull is no reason to lose it)."""

    minimum: int = 0
    maximum: float = math.inf
    wait_count: int = 3
    target_duration: float = 5.0
    close_counts: dict[Any, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.minimum, int) or self.minimum < 0:
            raise ValueError(f"adapt(minimum=) must be a non-negative integer, got {self.minimum!r}")
        if self.maximum < self.minimum:
            raise ValueError(
                f"adapt(maximum={self.maximum!r}) is below minimum={self.minimum!r}; "
                "give a maximum at least as large as the minimum"
            )
        if not isinstance(self.wait_count, int) or self.wait_count < 1:
            raise ValueError(f"adapt(wait_count=) must be a positive integer, got {self.wait_count!r}")
        if not self.target_duration > 0:
            raise ValueError(
                f"adapt(target_duration=) must be a positive duration, got {self.target_duration!r}")

    def target(self, load: Load) -> int:
        wanted = target_workers(load, self.target_duration)
        return int(max(self.minimum, min(wanted, self.maximum)))

    def recommend(self, load: Load) -> Recommendation:
        n = len(load.workers)
        target = self.target(load)
        proposed = (choose_to_retire(load.workers, n - target, idle_only=True)
                    if target < n else [])
        return self.decide(n, target, proposed)

    def decide(self, n: int, target: int, proposed: list[Any]) -> Recommendation:
        """The answer for ``n`` workers and a (bounded) ``target``: scale up at once; of
        the workers ``proposed`` for retiring (when ``target < n``: names or addresses),
        retire those proposed ``wait_count`` times in a row."""
        if target >= n:
            self.close_counts.clear()
            return ScaleUp(target) if target > n else Same()
        firm = []
        for worker in proposed:
            self.close_counts[worker] = self.close_counts.get(worker, 0) + 1
            if self.close_counts[worker] >= self.wait_count:
                firm.append(worker)
        for worker in list(self.close_counts):
            if worker in firm or worker not in proposed:
                del self.close_counts[worker]
        return ScaleDown(firm) if firm else Same()
