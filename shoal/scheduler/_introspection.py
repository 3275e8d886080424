"""Answers to the client's questions about what the cluster is doing, joined to the
scheduler's request table (``_requests``): the keys each worker runs (``processing``),
sizes of results (``nbytes``), which workers run given keys (for ``call_stack``), the
metadata store, the scheduler's recent logs, its versions, and a dump of its state
(``dump_cluster_state``). Read-only, except ``set_metadata``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shoal import _logs
from shoal.comm import Connection
from shoal.scheduler._events import ForgetWatched
from shoal.scheduler._state_base import key_prefix

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler


async def _processing(scheduler: Scheduler, conn: Connection, workers: list[str] | None) -> Any:
    """Worker address -> the keys it runs or was sent to run."""
    live = scheduler.state.workers
    chosen = list(live) if workers is None else [w for w in workers if w in live]
    return {a: [ts.key for ts in live[a].processing] for a in chosen}


async def _nbytes(scheduler: Scheduler, conn: Connection, keys: list[Any] | None,
                  summary: bool) -> Any:
    """Key (or, with ``summary``, key prefix) -> bytes of the results held on workers."""
    tasks = scheduler.state.tasks
    chosen = (ts for ts in tasks.values()) if keys is None else (
        tasks[k] for k in keys if k in tasks)
    out: dict[Any, int] = {}
    for ts in chosen:
        if not ts.who_has or ts.nbytes < 0:
            continue
        if summary:
            name = ts.prefix or key_prefix(ts.key)
            out[name] = out.get(name, 0) + ts.nbytes
        else:
            out[ts.key] = ts.nbytes
    return [[k, n] for k, n in out.items()]  # rows: keys may be tuples


async def _running_on(scheduler: Scheduler, conn: Connection, keys: list[Any] | None) -> Any:
    """The workers running any of ``keys`` (every worker when None)."""
    if keys is None:
        return list(scheduler.state.workers)
    tasks = scheduler.state.tasks
    found = {tasks[k].processing_on.address for k in keys  # type: ignore[union-attr]
             if k in tasks and tasks[k].processing_on is not None}
    return sorted(found)


async def _set_metadata(scheduler: Scheduler, conn: Connection, path: list[Any],
                        value: Any) -> Any:
    """``None``, or the ValueError's message (the client raises it as such)."""
    try:
        scheduler.metadata.set(list(path), value)
    except ValueError as exc:
        return str(exc)
    # A task's metadata goes when the task is forgotten (dask's Scheduler does the same).
    scheduler._apply([ForgetWatched([path[0]])])
    return None


async def _get_metadata(scheduler: Scheduler, conn: Connection, path: list[Any]) -> Any:
    found, value = scheduler.metadata.get(list(path))
    return [found, value]


async def _scheduler_logs(scheduler: Scheduler, conn: Connection, n: int | None) -> Any:
    return scheduler.logs.newest(n, _logs.configured_format())


async def _versions(scheduler: Scheduler, conn: Connection, packages: list[str]) -> Any:
    from shoal._versions import get_versions

    return get_versions(packages)


async def _dump_state(scheduler: Scheduler, conn: Connection) -> Any:
    """The scheduler's state as plain data (keys as text), for ``dump_cluster_state``."""
    state = scheduler.state
    tasks = {}
    for key, ts in state.tasks.items():
        tasks[str(key)] = {
            "state": ts.state,
            "prefix": ts.prefix,
            "dependencies": [str(d.key) for d in ts.dependencies],
            "dependents": [str(d.key) for d in ts.dependents],
            "who_has": sorted(w.address for w in ts.who_has),
            "who_wants": sorted(ts.who_wants),
            "processing_on": ts.processing_on.address if ts.processing_on else None,
            "nbytes": ts.nbytes,
            "type": ts.typename,
            "retries": ts.retries,
            "error": None if ts.error is None else ts.error.get("message"),
        }
    workers = {}
    for address, ws in state.workers.items():
        workers[address] = {
            "name": ws.name, "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
            "host": ws.host, "pid": ws.pid, "processing": [str(t.key) for t in ws.processing],
            "has_what": [str(t.key) for t in ws.has_what], "occupancy": ws.occupancy,
            "nbytes": ws.nbytes, "paused": ws.paused, "executing": ws.executing,
        }
    return {
        "address": scheduler.address,
        "id": scheduler.id,
        "started": scheduler.started,
        "tasks": tasks,
        "workers": workers,
        "clients": {c: len(held) for c, held in state.clients.items()},
        "task_stream": [[str(r[0]), *r[1:]] for r in list(state.task_stream)[-1000:]],
        "logs": scheduler.logs.newest(1000),
    }


OPS: dict[str, Callable[..., Awaitable[Any]]] = {
    "processing": _processing,
    "nbytes": _nbytes,
    "running_on": _running_on,
    "set_metadata": _set_metadata,
    "get_metadata": _get_metadata,
    "scheduler_logs": _scheduler_logs,
    "versions": _versions,
    "dump_state": _dump_state,
}
