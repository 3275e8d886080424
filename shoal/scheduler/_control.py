"""Answers to the client's requests that change a running cluster: plugins and uploads,
``run_on_scheduler``, the task stream in dask's record format, ``replicate`` and
``rebalance``. Joined to the scheduler's request table (``_requests``).

Outcomes that may be a user's exception travel as ``(ok, value)`` with ``value`` an error
dict (``exception_to_error``), so the client raises the original exception with its
remote traceback.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shoal.comm import Connection
from shoal.protocol._errors import exception_to_error
from shoal.protocol._messages import CopyKeys, PluginSetup, PluginTeardown
from shoal.protocol._serialize import Serialized, dumps, loads
from shoal.scheduler import _rebalance as rebalance
from shoal.scheduler._events import ReplicasAdded, ReplicasDropped

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler


def _error(exc: BaseException, where: str) -> dict[str, Any]:
    return exception_to_error(exc, exc.__traceback__, where, "scheduler", time.time())


# --- worker and nanny plugins ---------------------------------------------------------------


async def _register_worker_plugin(scheduler: Scheduler, conn: Connection, name: str,
                                  plugin: Serialized, kind: str, idempotent: bool) -> Any:
    """Keep the plugin for workers to come and set it up on every worker now; answers
    ``{worker: (ok, value)}`` (empty for an idempotent plugin already registered). A
    plugin whose ``setup`` raised on some worker is kept all the same, as dask keeps it:
    the caller sees the error, and a worker that joins later tries it too (a ``setup``
    raising there is logged by that worker, which runs on)."""
    if idempotent and name in scheduler.plugin_host.for_workers:
        return {}
    scheduler.plugin_host.keep(name, plugin, kind)
    asks = {w: (lambda rid: PluginSetup(rid, name, plugin, kind)) for w in scheduler._workers}
    return await scheduler.ask_workers(conn, asks)


async def _unregister_worker_plugin(scheduler: Scheduler, conn: Connection, name: str) -> Any:
    try:
        scheduler.plugin_host.forget(name)
    except ValueError as exc:
        return [False, _error(exc, "unregister_worker_plugin")]
    asks = {w: (lambda rid: PluginTeardown(rid, name)) for w in scheduler._workers}
    return [True, await scheduler.ask_workers(conn, asks)]


async def _workers_replaced(scheduler: Scheduler, conn: Connection, gone: list[str], n: int,
                            timeout: float) -> Any:
    """Wait until none of ``gone`` is connected and at least ``n`` workers are (workers
    restarting after a nanny plugin); answers whether that happened within ``timeout``."""
    async def wait() -> None:
        while any(w in scheduler.state.workers for w in gone) or len(scheduler.state.workers) < n:
            scheduler._worker_joined.clear()
            try:
                await asyncio.wait_for(scheduler._worker_joined.wait(), 0.05)
            except asyncio.TimeoutError:
                pass  # departures do not set the event: look again

    try:
        await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


# --- scheduler plugins ----------------------------------------------------------------------


async def _register_scheduler_plugin(scheduler: Scheduler, conn: Connection, name: str,
                                     plugin: Serialized, idempotent: bool) -> Any:
    if idempotent and name in scheduler.plugin_host.plugins:
        return [True, None]
    try:
        await scheduler.plugin_host.add(scheduler, name, plugin)
    except Exception as exc:
        return [False, _error(exc, f"plugin {name}")]
    return [True, None]


async def _unregister_scheduler_plugin(scheduler: Scheduler, conn: Connection, name: str) -> Any:
    try:
        await scheduler.plugin_host.remove(name)
    except ValueError as exc:
        return [False, _error(exc, "unregister_scheduler_plugin")]
    return [True, None]


# --- run_on_scheduler -----------------------------------------------------------------------


async def _run_on_scheduler(scheduler: Scheduler, conn: Connection, function: Serialized,
                            wait: bool) -> Any:
    """Run the function in the scheduler's loop (``dask_scheduler=`` is the scheduler);
    an async one is awaited, or started in the background without ``wait``."""
    from shoal._run import in_background, inject

    try:
        fn = inject(loads(function), "dask_scheduler", scheduler)
        if inspect.iscoroutinefunction(fn):
            if not wait:
                scheduler._spawn(in_background(fn, "scheduler"))
                return [True, dumps(None)]
            value = await fn()
        else:
            value = fn()
        return [True, dumps(value)]
    except Exception as exc:
        return [False, _error(exc, "run_on_scheduler")]


# --- the task stream, in dask's record format -----------------------------------------------


async def _task_stream_records(scheduler: Scheduler, conn: Connection, since: int | None,
                               start: float | None, stop: float | None,
                               count: int | None) -> Any:
    """``(total, records)``: the task stream's records after index ``since`` (all kept when
    None), or between times ``start`` and ``stop``, the last ``count`` of them."""
    state = scheduler.state
    stream = list(state.task_stream)
    total = state.task_stream_total
    if since is not None:
        first = total - len(stream)
        stream = stream[max(since - first, 0):]
    rows = [r for r in stream if (start is None or r[5] >= start) and (stop is None or r[5] <= stop)]
    if count is not None:
        rows = rows[-count:] if count > 0 else []
    tasks = state.tasks
    records = []
    for key, _prefix, worker, thread, begin, end, kind in rows:
        ts = tasks.get(key)
        action = "transfer" if kind == "transfer" else "compute"
        records.append({
            "key": key,
            "worker": worker,
            "status": "error" if kind == "error" else "OK",
            "nbytes": ts.nbytes if ts is not None and ts.nbytes >= 0 else 0,
            "type": ts.typename if ts is not None else "",
            "typename": ts.typename if ts is not None else "",
            "thread": thread,
            "metadata": {},
            "startstops": [{"action": action, "start": begin, "stop": end}],
        })
    return [total, records]


# --- replicate and rebalance ----------------------------------------------------------------


def _pool(scheduler: Scheduler, workers: list[str] | None) -> list[str]:
    live = scheduler.state.workers
    if workers is None:
        return list(live)
    unknown = [w for w in workers if w not in live]
    if unknown:
        raise ValueError(f"unknown workers {unknown}; see client.scheduler_info()['workers']")
    return list(workers)


def _copy_keys(rows: list[tuple[Any, list[str]]]) -> Callable[[int], CopyKeys]:
    return lambda rid: CopyKeys(rid, rows)


async def _carry_out(scheduler: Scheduler, conn: Connection, plan: rebalance.Plan) -> Any:
    """Ask the targets to fetch their copies; record the confirmed ones, then drop what
    the plan drops (only keys whose new copy arrived, for a move). Answers the number of
    copies made and dropped."""
    state = scheduler.state
    asks = {}
    for target, keys in plan.by_target().items():
        rows = [(k, [w.address for w in state.tasks[k].who_has]) for k in keys if k in state.tasks]
        asks[target] = _copy_keys(rows)
    answers = await scheduler.ask_workers(conn, asks)
    arrived: dict[Any, set[str]] = {}
    events: list[Any] = []
    for worker, (ok, value) in answers.items():
        if ok:
            keys = [k for k, _n in value]
            for k in keys:
                arrived.setdefault(k, set()).add(worker)
            events.append(ReplicasAdded(worker, keys))
    dropped = 0
    for worker, keys in plan.drops.items():
        # A move drops its source only once the copy arrived; replicate's drops need none.
        keep = [k for k in keys if k not in plan.copies or arrived.get(k)]
        dropped += len(keep)
        events.append(ReplicasDropped(worker, keep))
    if events:
        scheduler._apply(events)
    return {"copied": sum(len(v) for v in arrived.values()), "dropped": dropped}


_NOT_IN_MEMORY = ("still being computed, or lost with a worker and being computed again; "
                  "wait for the futures (client.wait) and try again")


async def _replicate(scheduler: Scheduler, conn: Connection, keys: list[Any], n: int | None,
                     workers: list[str] | None) -> Any:
    try:
        plan = _plan_replicate(scheduler, keys, n, workers)
    except ValueError as exc:
        return [False, _error(exc, "replicate")]
    # The copies asked for are kept by the active memory manager (n=1 forgets the wish).
    scheduler.amm.wanted(keys, n if n is not None else len(_pool(scheduler, workers)))
    return [True, await _carry_out(scheduler, conn, plan)]


def _plan_replicate(scheduler: Scheduler, keys: list[Any], n: int | None,
                    workers: list[str] | None) -> rebalance.Plan:
    state = scheduler.state
    pool = _pool(scheduler, workers)
    missing = [k for k in keys if k not in state.tasks or state.tasks[k].state != "memory"]
    if missing:
        raise ValueError(f"replicate: {len(missing)} keys are not in memory (e.g. {missing[0]!r}): "
                         f"{_NOT_IN_MEMORY}")
    holders = {k: [w.address for w in state.tasks[k].who_has] for k in keys}
    nbytes = {k: state.tasks[k].nbytes for k in keys}
    load = {a: ws.nbytes for a, ws in state.workers.items()}
    return rebalance.plan_replicate(holders, nbytes, load, pool, n)


async def _rebalance(scheduler: Scheduler, conn: Connection, keys: list[Any] | None,
                     workers: list[str] | None) -> Any:
    try:
        plan = _plan_rebalance(scheduler, keys, workers)
    except ValueError as exc:
        return [False, _error(exc, "rebalance")]
    return [True, await _carry_out(scheduler, conn, plan)]


def _plan_rebalance(scheduler: Scheduler, keys: list[Any] | None,
                    workers: list[str] | None) -> rebalance.Plan:
    import dask

    state = scheduler.state
    pool = _pool(scheduler, workers)
    if keys is not None:
        missing = [k for k in keys if k not in state.tasks or state.tasks[k].state != "memory"]
        if missing:
            raise ValueError(f"rebalance: {len(missing)} keys are not in memory "
                             f"(e.g. {missing[0]!r}): {_NOT_IN_MEMORY}")
    held = {a: {ts.key: ts.nbytes for ts in state.workers[a].has_what} for a in pool}
    gap = dask.config.get("distributed.worker.memory.rebalance.sender-recipient-gap",
                          rebalance.DEFAULT_TOLERANCE)
    return rebalance.plan_rebalance(held, None if keys is None else set(keys), float(gap))


OPS: dict[str, Callable[..., Awaitable[Any]]] = {
    "register_worker_plugin": _register_worker_plugin,
    "unregister_worker_plugin": _unregister_worker_plugin,
    "workers_replaced": _workers_replaced,
    "register_scheduler_plugin": _register_scheduler_plugin,
    "unregister_scheduler_plugin": _unregister_scheduler_plugin,
    "run_on_scheduler": _run_on_scheduler,
    "task_stream_records": _task_stream_records,
    "replicate": _replicate,
    "rebalance": _rebalance,
}
