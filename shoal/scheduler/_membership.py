"""Which workers make up a running cluster, from the scheduler's shell: restart, restart some
workers, retire workers gracefully.

Owns: carrying out those operations over the connections (telling workers to go, moving
data off retiring workers, waiting for replacements with a deadline). Decisions stay pure
elsewhere: what a restart drops is ``SchedulerState``'s ``ClusterReset``; where retiring
workers' data goes is ``_retire.plan_retirement``.

A restarted worker is replaced, not repaired: told ``RestartWorker``, a worker with a
nanny exits at once and its nanny starts a fresh process (in parallel for every worker);
one without a nanny registers again as a fresh worker. The scheduler forgets the old
connection first, so nothing the old process still says is mistaken for the new one's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.protocol._messages import Close, CopyKeys, RestartWorker
from shoal.scheduler._events import ClusterReset, DataCopied, WorkerRetiring
from shoal.scheduler._retire import Move, plan_retirement
from shoal.scheduler._views import one_worker_info

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler

logger = logging.getLogger("shoal.scheduler")

# Rounds of "move what is unique, check again" before retiring: tasks finishing on a
# retiring worker meanwhile may leave new unique results on it.
_RETIRE_ROUNDS = 3


def resolve_workers(scheduler: Scheduler, workers: list[Any], *,
                    skip_unknown: bool = False) -> list[str]:
    """Worker addresses for ``workers`` given as addresses or names; with
    ``skip_unknown``, those that are neither are left out (logged).

    Raises:
        ValueError: one is neither; the message lists the workers there are.
    """
    by_name = {str(ws.name): a for a, ws in scheduler.state.workers.items()}
    out: list[str] = []
    unknown: list[Any] = []
    for w in workers:
        if w in scheduler.state.workers:
            out.append(w)
        elif str(w) in by_name:
            out.append(by_name[str(w)])
        else:
            unknown.append(w)
    if unknown and skip_unknown:
        logger.info("no worker with address or name %s: left out",
                    ", ".join(map(repr, unknown)))
    elif unknown:
        known = sorted(scheduler.state.workers)
        raise ValueError(
            f"no worker with address or name {', '.join(map(repr, unknown))}; the workers "
            f"are {known} (see client.scheduler_info()['workers'])"
        )
    return list(dict.fromkeys(out))


def _drop(scheduler: Scheduler, address: str) -> Any:
    """Forget ``address``'s connection (later messages on it are ignored) and return it."""
    conn = scheduler._workers.pop(address, None)
    scheduler._worker_fids.pop(address, None)
    scheduler._fail_runs_for(address)
    return conn


def _remove(scheduler: Scheduler, address: str, reason: str) -> Any:
    """Remove one worker on purpose (its tasks go elsewhere, and count no death against
    them) and return its connection."""
    conn = _drop(scheduler, address)
    if conn is not None:
        scheduler._apply([WorkerRetiring(address, reason)])
        _removed(scheduler, address)
    return conn


def _removed(scheduler: Scheduler, address: str) -> None:
    """Scheduler plugins hear of a worker removed on purpose, as of one that died."""
    scheduler._hook("remove_worker", scheduler=scheduler, worker=address,
                    stimulus_id=f"worker-left-{address}")


async def restart(scheduler: Scheduler, timeout: float | None, wait_for_workers: bool) -> dict[str, Any]:
    """Every worker replaced, every task forgotten, every client told; then wait (up to
    ``timeout``) for as many workers as there were. Returns ``{"status": "OK"}`` or
    ``{"status": "timed out", ...}`` (the client raises)."""
    n = len(scheduler._workers)
    addresses = list(scheduler._workers)
    conns = [_drop(scheduler, a) for a in addresses]
    scheduler._apply([ClusterReset("client.restart()")])
    # As dask calls it: the tasks are forgotten (and the clients told), the workers not
    # yet removed.
    scheduler._hook("restart", scheduler)
    for address in addresses:
        _removed(scheduler, address)
    for conn in conns:
        if conn is not None and not conn.closed:
            conn.send(RestartWorker("client.restart()"))
    start = time.monotonic()
    try:
        if wait_for_workers:
            await scheduler.wait_for_workers(n, timeout)
        else:
            gone = [c.wait_closed() for c in conns if c is not None and not c.closed]
            if gone:
                await asyncio.wait_for(asyncio.gather(*gone), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        back = len(scheduler.state.workers)
        what = f"{back} of {n} workers came back" if wait_for_workers else "workers did not close"
        return {"status": "timed out",
                "message": f"client.restart(): {what} within {timeout} s"}
    logger.info("restarted %d workers in %.3f s", n, time.monotonic() - start)
    return {"status": "OK"}


async def restart_workers(scheduler: Scheduler, workers: list[Any], timeout: float | None) -> dict[str, str]:
    """Replace just ``workers`` (addresses or names); their tasks run elsewhere or after.
    Returns ``{worker as given: "OK" | "timed out"}``."""
    addresses = resolve_workers(scheduler, workers)
    given = dict(zip(addresses, workers, strict=False))
    names = {a: str(scheduler.state.workers[a].name) for a in addresses}
    # A replacement comes back under the same name (a nanny passes it on). An unnamed
    # worker (named after its address) is replaced by a stranger: count those instead.
    unnamed = sum(1 for a, name in names.items() if name == a)
    before = {a for a in scheduler.state.workers if a not in names}
    for address in addresses:
        conn = _remove(scheduler, address, "restarted by client.restart_workers()")
        if conn is not None and not conn.closed:
            conn.send(RestartWorker("client.restart_workers()"))

    def missing() -> list[str]:
        present = {str(ws.name) for ws in scheduler.state.workers.values()}
        strangers = len(set(scheduler.state.workers) - before - set(names))
        return [a for a, name in names.items() if name != a and name not in present] + (
            [a for a, name in names.items() if name == a][: max(unnamed - strangers, 0)]
        )

    deadline = None if timeout is None else time.monotonic() + timeout
    while missing():
        scheduler._worker_joined.clear()
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        try:
            await asyncio.wait_for(scheduler._worker_joined.wait(), left)
        except (asyncio.TimeoutError, TimeoutError):
            break
    late = set(missing())
    return {str(given[a]): ("timed out" if a in late else "OK") for a in addresses}


async def _copy(scheduler: Scheduler, moves: list[Move], timeout: float) -> None:
    """Have each staying worker fetch the keys moved to it straight from their retiring
    holders (``CopyKeys``, as for ``replicate``: the bytes never pass through the
    scheduler); record the copies that arrived (``DataCopied``). Keys that could not be
    fetched are left out: their retiring holder keeps them, and is then not retired.

    Waits at most ``timeout``; answers arriving later are still recorded (a fetch ends
    by the worker's own deadline, or with the worker)."""
    rows: dict[str, list[tuple[Any, list[str]]]] = {}
    for m in moves:
        rows.setdefault(m.dest, []).append((m.key, [m.source]))
    asks = {dest: functools.partial(CopyKeys, keys=keys) for dest, keys in rows.items()}
    answers = scheduler.ask_workers(None, asks)

    def record(done: asyncio.Future[dict[str, tuple[bool, Any]]]) -> None:
        if done.cancelled():
            return
        events = [DataCopied(dest, [(k, n) for k, n in value])
                  for dest, (ok, value) in done.result().items() if ok]
        if events:
            scheduler._apply(events)

    answers.add_done_callback(record)  # runs before the wait below returns
    try:
        await asyncio.wait_for(asyncio.shield(answers), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        logger.warning("retiring: copies of %d keys were not all made within %g s; the "
                       "workers still holding them stay", len(moves), timeout)


async def retire_workers(scheduler: Scheduler, workers: list[Any] | None, n: int | None,
                         close_workers: bool, timeout: float) -> dict[str, Any]:
    """Move what other tasks or clients still need off ``workers`` (or ``n`` idle ones),
    then remove them; with ``close_workers`` they are told to close (their nannies do
    not restart them). A worker whose data no other worker can take stays. Returns
    ``{address: worker info}`` of the workers retired."""
    from shoal.scheduler._scaling import choose_to_retire
    from shoal.scheduler._views import load

    if workers is None:
        count = 0 if n is None else n
        candidates = scheduler.plugin_host.downscalable(scheduler, load(scheduler).workers)
        addresses = choose_to_retire(candidates, count)
    else:  # as dask's: a worker not there (one that just left, say) is no error
        addresses = resolve_workers(scheduler, workers, skip_unknown=True)
    leaving = set(addresses)
    if close_workers:  # their nannies must not restart them, should they die meanwhile
        for a in leaving:
            _mark_retired(scheduler, a)
    # Retiring: the active memory manager keeps a copy on a staying worker meanwhile
    # (counted: two retirements of one worker may overlap).
    for a in leaving:
        scheduler.retiring[a] = scheduler.retiring.get(a, 0) + 1
    try:
        for _ in range(_RETIRE_ROUNDS):
            plan = plan_retirement(scheduler.state, leaving)
            if not plan.moves:
                break
            await _copy(scheduler, plan.moves, timeout)
    finally:
        for a in leaving:
            left = scheduler.retiring.pop(a, 1) - 1
            if left > 0:
                scheduler.retiring[a] = left
    # No await from here on: the final check and the removal are one step.
    plan = plan_retirement(scheduler.state, leaving)
    keep = set(plan.stranded) | {m.source for m in plan.moves}
    if keep:
        logger.warning("not retiring %s: they hold data no other worker could take",
                       sorted(keep))
    out: dict[str, Any] = {}
    for address in addresses:
        if (address in keep and close_workers and address in scheduler._workers
                and not scheduler.retiring.get(address)):
            scheduler.retired.pop(address, None)  # stays: its nanny restarts it if it dies
        if address in keep or address not in scheduler.state.workers:
            continue
        if close_workers:
            _mark_retired(scheduler, address)  # (again: an overlapping retirement kept it)
        info = one_worker_info(scheduler, address)
        info["status"] = "closed"
        out[address] = info
        conn = _remove(scheduler, address, "retired")
        if close_workers and conn is not None and not conn.closed:
            conn.send(Close("retired"))
    return out


# How many retired workers' addresses the scheduler remembers for their nannies.
RETIRED_KEPT = 4096


def _mark_retired(scheduler: Scheduler, address: str) -> None:
    """``address`` is retired (or being retired) and closed: its nanny, asking when its
    process exits unasked (``NannyWorkerExited``), is told not to restart it."""
    scheduler.retired.pop(address, None)
    scheduler.retired[address] = None  # (the latest last)
    while len(scheduler.retired) > RETIRED_KEPT:
        del scheduler.retired[next(iter(scheduler.retired))]


# Seconds a worker whose lifetime is over gives others to copy its data off it.
LIFETIME_COPY_TIMEOUT = 30.0


async def retire_asked(scheduler: Scheduler, address: str, reason: str) -> None:
    """A worker asked to leave (its lifetime is over, ``shoal worker --lifetime``): retire it
    as ``retire_workers`` does, moving what others still need first. When some of its data
    could go nowhere (no other worker can take it), it leaves anyway, as dask's does: a
    lifetime is a bound (a batch job's wall time), and the scheduler recomputes what was
    lost and is still wanted."""
    if scheduler._workers.get(address) is None:
        return  # already gone
    retired = await retire_workers(scheduler, [address], None, True, LIFETIME_COPY_TIMEOUT)
    if address in retired or scheduler._workers.get(address) is None:
        logger.info("retired worker %s: %s", address, reason)
        return
    logger.warning("worker %s leaves (%s) with data no other worker could take; what is "
                   "still wanted is recomputed", address, reason)
    conn = _remove(scheduler, address, reason)
    if conn is not None and not conn.closed:
        conn.send(Close(reason))
