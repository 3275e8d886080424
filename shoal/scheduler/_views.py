"""Read-only views of the scheduler for the dashboard and ``scheduler_info``.
Cheap: O(workers + task prefixes), never O(tasks)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler


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
                "name": str(ws.name),
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
                    "spilled_bytes": {"memory": ws.memory_spilled, "disk": ws.memory_spilled},
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
            }
        )
    return out


def snapshot(scheduler: Scheduler) -> dict[str, Any]:
    workers = worker_info(scheduler)
    prefixes = {
        prefix: {
            "released": c["released"],
            "waiting": c["waiting"] + c["no-worker"],
            "no_worker": c["no-worker"],  # of those waiting, for a worker that can run them
            "queued": c["queued"],
            "processing": c["processing"],
            "memory": c["memory"],
            "erred": c["erred"],
        }
        for prefix, c in scheduler.state.prefix_counts.items()
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


def scheduler_info(scheduler: Scheduler) -> dict[str, Any]:
    return {
        "type": "Scheduler",
        "address": scheduler.address,
        "dashboard": scheduler.dashboard_link,
        "started": scheduler.started,
        "workers": {w["address"]: {**w, "id": w["name"]} for w in worker_info(scheduler)},
    }
