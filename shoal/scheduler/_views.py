"""Read-only views of the scheduler for the dashboard and ``scheduler_info``.
Cheap: O(workers + task prefixes), or O(rows asked for), never O(tasks)."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from shoal.scheduler._scaling import Load, WorkerLoad
from shoal.scheduler._state_base import key_prefix, prefix_counts

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler
    from shoal.scheduler._state import SchedulerState


def worker_info(scheduler: Scheduler) -> list[dict[str, Any]]:
    out = []
    # The state keeps liveness on the monotonic clock; users are shown wall-clock times.
    wall_minus_monotonic = time.time() - time.monotonic()
    for ws in scheduler.state.workers.values():
        # Managed = values in memory; spilled ones are on disk (dask counts both as managed
        # in ``managed_bytes`` and splits them in ``spilled_bytes``).
        managed = ws.memory_managed if ws.memory_spilled else max(ws.nbytes, ws.memory_managed)
        out.append(
            {
                "address": ws.address,
                "name": ws.name,  # an int stays an int (LocalCluster: 0, 1, ...), as in dask
                "nthreads": ws.nthreads,
                "memory_limit": ws.memory_limit,
                "memory_managed": managed,
                "memory_process": ws.memory_process,
                "memory_unmanaged": max(0, ws.memory_process - managed),
                "memory_spilled": ws.memory_spilled,
                "status": "paused" if ws.paused else "running",
                "metrics": {  # dask's heartbeat metrics names
                    "memory": ws.memory_process,
                    "managed_bytes": managed + ws.memory_spilled,
                    "spilled_bytes": {"memory": ws.memory_spilled,
                                      "disk": ws.memory_spilled_disk},
                    "cpu": ws.cpu,
                    "executing": ws.executing,
                },
                "cpu": ws.cpu,
                "processing": len(ws.processing),
                "in_memory": len(ws.has_what),
                "last_seen": ws.last_seen + wall_minus_monotonic,
                "pid": ws.pid,
                "host": ws.host,
                "resources": dict(ws.resources),
                "executing": ws.executing,
            }
        )
    return out


def _shown_counts(c: dict[str, int]) -> dict[str, int]:
    """A row of the state's counts as the dashboard shows it (``PrefixCounts``)."""
    return {
        "released": c["released"],
        "waiting": c["waiting"] + c["no-worker"],
        "no_worker": c["no-worker"],  # of those waiting, for a worker that can run them
        "queued": c["queued"],
        "processing": c["processing"],
        "memory": c["memory"],
        "erred": c["erred"],
    }


def snapshot(scheduler: Scheduler) -> dict[str, Any]:
    workers = worker_info(scheduler)
    prefixes = {
        prefix: _shown_counts(c)
        for prefix, c in prefix_counts(scheduler.state).items()
        if any(c.values())
    }
    return {
        "scheduler": {"address": scheduler.address, "started": scheduler.started, "now": time.time()},
        "workers": workers,
        "prefixes": prefixes,
        "totals": {
            "tasks": len(scheduler.state.tasks),
            "workers": len(workers),
            "nthreads": sum(w["nthreads"] for w in workers),
            "memory_limit": sum(w["memory_limit"] for w in workers),
            "memory_managed": sum(w["memory_managed"] for w in workers),
            "memory_process": sum(w["memory_process"] for w in workers),
            "memory_spilled": sum(w["memory_spilled"] for w in workers),
            "paused": sum(w["status"] == "paused" for w in workers),
        },
        "tasks_per_second": scheduler.tasks_per_second(),
    }


def task_groups(state: SchedulerState, limit: int) -> dict[str, Any]:
    """The dashboard's ``/api/groups``: the newest ``limit`` task groups (dask's
    ``TaskGroup``: a collection's layer, or a prefix of plain keys), newest first, each with
    its counts by state. O(limit), whatever the number of tasks or groups: the groups are
    read from the end of the state's insertion-ordered ``group_counts``."""
    groups = state.group_counts
    rows = [
        {"name": str(group), "prefix": key_prefix(group), **_shown_counts(c)}
        for group, c in itertools.islice(reversed(groups.items()), max(0, limit))
    ]
    return {"groups": len(groups), "limit": limit, "rows": rows}


def erred_tasks(state: SchedulerState, limit: int) -> dict[str, Any]:
    """The dashboard's ``/api/exceptions``: the latest tasks that failed themselves (not
    through an input), newest first, at most ``limit`` of the state's ``erred_tasks``."""
    rows = [
        {
            "key": str(key),
            "type": str(error.get("type", "")),
            "exception": str(error.get("message", "")),
            "traceback": str(error.get("tb_text", "")),
            "worker": str(error.get("worker", "")),
            "time": float(error.get("time") or 0.0),
        }
        for key, error in itertools.islice(state.erred_tasks, max(0, limit))
    ]
    kept = state.erred_tasks.maxlen
    return {"count": len(state.erred_tasks), "kept": kept, "limit": limit, "rows": rows}


def _dask_worker_fields(w: dict[str, Any]) -> dict[str, Any]:
    """One worker's entry in dask's ``scheduler_info()`` shape (shoal's own fields kept)."""
    return {
        **w,
        "type": "Worker",
        "id": w["name"],
        "local_directory": w.get("local_directory"),
        "nanny": None,  # shoal's nanny serves no port
        "services": {},
        "metrics": {
            **w["metrics"],
            "in_memory": w["in_memory"],
            "task_counts": {"processing": w["processing"], "memory": w["in_memory"]},
            "time": w["last_seen"],
        },
    }


def one_worker_info(scheduler: Scheduler, address: str) -> dict[str, Any]:
    for w in worker_info(scheduler):
        if w["address"] == address:
            return _dask_worker_fields(w)
    raise KeyError(address)


def scheduler_info(scheduler: Scheduler, n_workers: int = -1) -> dict[str, Any]:
    """dask's ``Scheduler.identity()``: the scheduler and (the first ``n_workers``, all
    when -1) workers."""
    workers = worker_info(scheduler)
    shown = workers if n_workers < 0 else workers[:n_workers]
    # As served: a client applies its own distributed.dashboard.link template, as dask's.
    link = None if scheduler.dashboard is None else str(scheduler.dashboard.link)
    services: dict[str, Any] = {}
    if scheduler.dashboard is not None:
        port = getattr(scheduler.dashboard, "port", None)
        services["dashboard"] = port if port is not None else link
    return {
        "type": "Scheduler",
        "id": scheduler.id,
        "address": scheduler.address,
        "dashboard": link,
        "services": services,
        "started": scheduler.started,
        "n_workers": len(workers),
        "total_threads": sum(w["nthreads"] for w in workers),
        "total_memory": sum(w["memory_limit"] for w in workers),
        "workers": {w["address"]: _dask_worker_fields(w) for w in shown},
    }


def load(scheduler: Scheduler) -> Load:
    """What ``cluster.adapt`` decides on: per-worker load and the tasks ready to run but
    on no worker yet (from the per-group counts: O(workers + task groups))."""
    state = scheduler.state
    ready = 0
    ready_seconds = 0.0
    for group, counts in state.group_counts.items():
        n = counts["queued"] + counts["no-worker"]
        if n:
            ready += n
            ready_seconds += n * state._estimate(state.group_prefix[group])
    workers = tuple(
        WorkerLoad(ws.address, str(ws.name), ws.nthreads, len(ws.processing) - len(ws.long_running),
                   ws.occupancy, ws.nbytes, ws.memory_limit)
        for ws in state.workers.values()
    )
    return Load(workers, ready, ready_seconds)
