"""Answers to the client's non-hot-path questions (``Request`` messages), by op name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shoal.comm import Connection
from shoal.scheduler import _amm_shell, _control, _introspection, _membership, _profiling
from shoal.scheduler import _placement as placement
from shoal.scheduler._state import stimulus_id
from shoal.scheduler._tasks import payload_of
from shoal.scheduler._views import scheduler_info

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler


# dask's names (``Scheduler.handlers``) for the requests shoal names otherwise: what users
# list in ``distributed.scheduler.blocked-handlers``. The other ops share dask's names.
DASK_NAMES: dict[str, tuple[str, ...]] = {
    "scheduler_info": ("identity",),
    "run": ("broadcast",),  # client.run
    "run_on_scheduler": ("run_function",),
    "task_stream": ("get_task_stream",),
    "task_stream_records": ("get_task_stream",),
    "story": ("get_story",),
    "scheduler_logs": ("get_logs", "logs", "worker_logs"),
    "dump_state": ("get_cluster_state", "dump_cluster_state_to_url"),
}


class HandlerBlocked(ValueError):
    """A request for a handler listed in ``distributed.scheduler.blocked-handlers`` (dask
    raises ValueError with the same message start)."""


def blocked_name(op: str, blocked: frozenset[str]) -> str | None:
    """The name under which request ``op`` is blocked (shoal's op, or dask's name for it),
    or None when it is allowed."""
    if not blocked:
        return None
    for name in (op, *DASK_NAMES.get(op, ())):
        if name in blocked:
            return name
    return None


async def answer(scheduler: Scheduler, conn: Connection, op: str, args: dict[str, Any]) -> Any:
    """Answer request ``op``.

    Raises:
        HandlerBlocked: the op is listed in ``distributed.scheduler.blocked-handlers``.
        ValueError: no such op.
    """
    handler = _OPS.get(op)
    if handler is None:
        raise ValueError(f"unknown request {op!r}")
    name = blocked_name(op, scheduler._blocked)
    if name is not None:
        also = f" (shoal's {op!r} request)" if name != op else ""
        raise HandlerBlocked(
            f"The {name!r} handler has been explicitly disallowed in Scheduler, possibly "
            f"due to security concerns: it is listed in distributed.scheduler.blocked-handlers"
            f"{also}. Remove it from that list (in the scheduler's config) to allow it.")
    return await handler(scheduler, conn, **args)


async def _info(scheduler: Scheduler, conn: Connection, n_workers: int = -1) -> Any:
    return scheduler_info(scheduler, n_workers)


async def _restart(scheduler: Scheduler, conn: Connection, timeout: float | None,
                   wait_for_workers: bool) -> Any:
    return await _membership.restart(scheduler, timeout, wait_for_workers)


async def _restart_workers(scheduler: Scheduler, conn: Connection, workers: list[Any],
                           timeout: float | None) -> Any:
    """``("ok", {worker: status})``, or ``("error", "ValueError", message)`` for a worker
    that is not there (the client raises it as such)."""
    try:
        return ["ok", await _membership.restart_workers(scheduler, workers, timeout)]
    except ValueError as exc:
        return ["error", "ValueError", str(exc)]


async def _retire_workers(scheduler: Scheduler, conn: Connection, workers: list[Any] | None,
                          n: int | None, close_workers: bool, timeout: float) -> Any:
    """``("ok", {address: info})`` or ``("error", "ValueError", message)``."""
    try:
        return ["ok", await _membership.retire_workers(scheduler, workers, n, close_workers, timeout)]
    except ValueError as exc:
        return ["error", "ValueError", str(exc)]


async def _who_has(scheduler: Scheduler, conn: Connection, keys: list[Any] | None) -> Any:
    tasks = scheduler.state.tasks
    if keys is None:
        return [[k, [w.address for w in ts.who_has]] for k, ts in tasks.items() if ts.who_has]
    return [[k, [w.address for w in tasks[k].who_has] if k in tasks else []] for k in keys]


async def _has_what(scheduler: Scheduler, conn: Connection) -> Any:
    return {a: [ts.key for ts in ws.has_what] for a, ws in scheduler.state.workers.items()}


async def _run(scheduler: Scheduler, conn: Connection, function: Any, workers: list[str] | None,
               wait: bool = True) -> Any:
    return await scheduler.start_run(conn, function, workers, wait)


async def _task_stream(scheduler: Scheduler, conn: Connection, cursor: int,
                       limit: int | None = None) -> Any:
    return scheduler.state.task_stream_since(cursor, limit)


async def _wait_for_workers(scheduler: Scheduler, conn: Connection, n: int, timeout: float | None) -> Any:
    """How many workers there are once ``n`` have come or ``timeout`` passed (the client
    tells a timeout by the count, and raises its own TimeoutError)."""
    try:
        await scheduler.wait_for_workers(n, timeout)
    except TimeoutError:
        pass
    return len(scheduler.state.workers)


async def _story(scheduler: Scheduler, conn: Connection, key: Any) -> Any:
    """dask's scheduler story rows, ``(key, start, finish, recommendations, stimulus_id,
    time)``, of a key or (a string naming one) a stimulus id. shoal's moves cascade
    directly, without dask's recommendations: that field is always empty."""
    state = scheduler.state
    rows = state.story(key)
    if isinstance(key, str) and not rows:
        rows = state.stimulus_story(key)
    return [[k, start, finish, {}, stimulus_id(cause, now), now]
            for k, start, finish, cause, now in rows]


async def _failure(scheduler: Scheduler, conn: Connection, key: Any) -> Any:
    """What the client needs to explain or replay the first failure behind ``key``: only
    for a client holding ``key`` (the payload and functions are that client's to read)."""
    state = scheduler.state
    held = state.tasks.get(key)
    if held is None or conn.info.get("name") not in held.who_wants:
        raise PermissionError(f"this client does not hold {key!r}; only the holder of a "
                              "future can read its task (share data with publish_dataset)")
    ts = state.first_failure(key)
    if ts is None:
        stuck = state.tasks.get(key)
        if stuck is not None and stuck.state == "no-worker":
            return {"no_worker": placement.no_worker_reason(stuck, state.workers.values())}
        return None
    down = 0
    stack, seen = [ts], set()
    while stack:
        t = stack.pop()
        for d in t.dependents:
            if d not in seen and d.state == "erred":
                seen.add(d)
                down += 1
                stack.append(d)
    functions = {fid: scheduler._functions[fid] for fid in ts.fids if fid in scheduler._functions}
    return {
        "key": ts.key,
        "prefix": ts.prefix,
        "state": ts.state,
        "error": ts.error,
        "payload": None if ts.payload is None else payload_of(ts.payload, ts.fids),
        "functions": functions,
        "dependencies": [
            [d.key, [w.address for w in d.who_has], d.state, d.typename, d.nbytes]
            for d in ts.dependencies
        ],
        "dependents_erred": down,
        "story": [list(row) for row in state.story(ts.key)][-20:],
    }


async def _missing_data(scheduler: Scheduler, conn: Connection, pairs: list[Any]) -> Any:
    """A client found these (key, worker) replicas missing or unreachable: drop them, so
    the keys are recomputed or served by another copy."""
    from shoal.scheduler._events import DataMissing

    scheduler._apply([DataMissing(worker, key, worker, None) for key, worker in pairs])
    return None


_OPS: dict[str, Callable[..., Awaitable[Any]]] = {
    "scheduler_info": _info,
    "who_has": _who_has,
    "has_what": _has_what,
    "run": _run,
    "task_stream": _task_stream,
    "wait_for_workers": _wait_for_workers,
    "story": _story,
    "failure": _failure,
    "restart": _restart,
    "restart_workers": _restart_workers,
    "retire_workers": _retire_workers,
    "missing_data": _missing_data,
}
_OPS.update(_control.OPS)  # changing a running cluster: plugins, run_on_scheduler, copies
_OPS.update(_introspection.OPS)  # what the cluster is doing: processing, nbytes, logs...
_OPS.update(_profiling.OPS)  # the statistical profiler: client.profile
_OPS.update(_amm_shell.OPS)  # client.amm: the active memory manager
