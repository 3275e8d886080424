"""How big a local cluster is: dask's defaults for splitting this machine's cores into workers
and threads, and for reading a ``memory_limit`` (bytes, a string, a fraction, "auto").

Owns: those numbers only. Pure functions of their arguments and the machine (its usable
cores, its memory); knows nothing of processes or the scheduler.
"""

from __future__ import annotations

import math
import os
from typing import Any

import psutil
from dask.utils import parse_bytes


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity; all of them where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def split_cores(n_workers: int | None, threads_per_worker: int | None, cores: int) -> tuple[int, int]:
    """dask's rule: up to 4 cores → one single-threaded worker per core; more → about
    sqrt(cores) workers; a given count fixes the other by dividing the cores."""
    if n_workers is None and threads_per_worker is None:
        if cores <= 4:
            return cores, 1
        procs = min(f for f in range(1, cores + 1) if cores % f == 0 and f >= math.sqrt(cores))
        return procs, cores // procs
    if n_workers is None:
        assert threads_per_worker is not None
        return max(1, cores // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cores // max(n_workers, 1))
    return n_workers, threads_per_worker


def local_shape(n_workers: int | None, threads_per_worker: int | None, processes: bool,
                cores: int) -> tuple[int, int]:
    """dask's ``LocalCluster`` rule for workers x threads: threads only (processes=False)
    → one worker with every core as a thread unless told; a number of workers alone → the
    cores shared out, rounded up (dask overcommits rather than undercommits); otherwise
    :func:`split_cores`."""
    if not processes and n_workers is None:
        return 1, threads_per_worker if threads_per_worker is not None else cores
    if n_workers and threads_per_worker is None:
        return n_workers, max(1, math.ceil(cores / n_workers))
    return split_cores(n_workers, threads_per_worker, cores)


def local_memory_limit(value: Any, n_workers: int, threads_per_worker: int) -> int:
    """A LocalCluster worker's memory limit: ``"auto"`` shares the machine's memory out
    between the ``n_workers`` workers, as dask's LocalCluster does (none started: by the
    worker's share of the cores); anything else as :func:`parse_memory_limit` reads it."""
    if isinstance(value, str) and value == "auto" and n_workers:
        return parse_memory_limit("auto", 1, cores=n_workers)
    return parse_memory_limit(value, threads_per_worker)


def parse_memory_limit(value: Any, nthreads: int, cores: int | None = None,
                       total: int | None = None) -> int:
    """A worker's memory limit in bytes, 0 for none, as dask's ``parse_memory_limit``
    reads it: None or 0 → no limit; "auto" → this machine's memory times the worker's share
    of its cores; a number up to 1 → that fraction of the machine's memory; bytes or a size
    like "4GB" otherwise; never more than the machine has.

    Raises:
        ValueError: not a size, or negative.
    """
    if value is None:
        return 0
    total = psutil.virtual_memory().total if total is None else total
    cores = cpu_count() if cores is None else cores
    orig = value
    if value == "auto":
        value = int(total * min(1.0, nthreads / max(cores, 1)))
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                value = parse_bytes(value)
            except ValueError:
                raise ValueError(
                    f"memory_limit {orig!r} is not a size like '4GB', a fraction, 'auto' or "
                    "0/None for no limit") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"memory_limit must be bytes, a size like '4GB', a fraction, 'auto' "
                         f"or 0/None for no limit, got {orig!r}")
    if isinstance(value, float) and value <= 1:
        value = value * total
    return min(int(value), total)


def wait_arguments(n_workers: Any, timeout: Any) -> float | None:
    """``wait_for_workers``' arguments checked (a cluster's, as dask's): the timeout in
    seconds (a number, dask's durations like ``"10s"``, a ``timedelta``; None: no limit).

    Raises:
        ValueError: ``n_workers`` is not a positive integer, or ``timeout`` not a duration.
    """
    from shoal.client._timeouts import duration, seconds

    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"wait_for_workers: n_workers must be a positive integer, got "
                         f"{n_workers!r}")
    return seconds(duration(timeout), "wait_for_workers", None)
