"""Scattered data in :class:`~shoal.scheduler._state.SchedulerState`: ``client.scatter``
from the request to the acknowledgement.

Owns: scatters in flight (``_storing``: which workers were sent a key and have not answered;
``_undone``: acknowledgements still owed for stores a later free undid),
the ``released -> scattering -> memory`` path of a scattered key, scattered data replacing a
computation of the same key, and resending (or failing) a scatter whose worker died before
acknowledging. The bytes stay with the shell until ``DropScattered``.
"""

from __future__ import annotations

from typing import Any

from mypy_extensions import trait

from shoal.protocol._errors import scheduler_error
from shoal.scheduler._events import (
    DataScattered,
    DropScattered,
    LogEvent,
    ReportDone,
    ScatterAcked,
    SendFree,
    SendStore,
)
from shoal.scheduler._state_base import ACTIVE, StateBase, key_prefix
from shoal.scheduler._tasks import Key, TaskState, WorkerState, hold


@trait  # a mixin of SchedulerState (a trait when compiled: see _state_base)
class ScatterHandlers(StateBase):
    """The handlers of scattered data and their acknowledgements."""

    def _on_scattered(self, ev: DataScattered) -> None:
        """Send each item to a worker (every worker for ``broadcast``); the key is in memory
        when a worker acknowledges it (:meth:`_on_scatter_acked`), not before."""
        name = self._joined.get(ev.client, ev.client)  # (its Client.id: dask's name of it)
        self._out.append(LogEvent([name, "all"], {"action": "scatter", "client": name,
                                                  "count": len(ev.items)}))
        pool = list(self.workers.values())
        if ev.workers:
            wanted = set(ev.workers)
            pool = [w for w in pool if w.address in wanted or w.name in wanted
                    or str(w.name) in wanted] or pool
        held = self.clients.setdefault(ev.client, set())
        for key, nbytes, typename in ev.items:
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = TaskState(key, key_prefix(key))
                self.count_new(ts)
            self._want(ts, ev.client)
            held.add(ts)
            # The shell keeps each scattered key's bytes until DropScattered: a key that
            # goes nowhere lets go of them now (unless a store of it is still on its way).
            if ts.state == "memory":  # the same data (scatter keys hash it), already held
                self._out.append(ReportDone(ev.client, key, ts.nbytes, ts.typename, None))
                if key not in self._storing:
                    self._out.append(DropScattered([key]))
                continue
            if key in self._storing:  # already on its way: the same ack answers both
                continue
            if not pool:
                self._err(ts, self._lost_error(ts))
                self._out.append(DropScattered([key]))
                continue
            # A worker computing this key would hold the value under the same key as its
            # task: send it elsewhere when there is an elsewhere.
            others = [w for w in pool if w is not ts.processing_on] or pool
            targets = others if ev.broadcast else [others[next(self._seq) % len(others)]]
            self._storing[key] = _Storing({w.address for w in targets}, nbytes, typename)
            for ws in targets:
                self._out.append(SendStore(ws.address, key))
            if ts.state == "released":
                self._go(ts, "scattering")

    def _on_scatter_acked(self, ev: ScatterAcked) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return  # gone: its WorkerLeft already settled what it was sent
        if self._undone and self._answered_by_free(ev.key, ev.worker):
            return
        pending = self._storing.get(ev.key)
        ts = self.tasks.get(ev.key)
        if pending is None or ev.worker not in pending.waiting:
            # A copy nobody waits for; but never free a key where it is being computed:
            # the free would drop the computation, whose result replaces the copy anyway.
            if ev.error is None and (ts is None or (ws not in ts.who_has
                                                    and ts.processing_on is not ws)):
                self._out.append(SendFree(ev.worker, [ev.key]))
            return
        pending.waiting.discard(ev.worker)
        if ev.error is not None:
            pending.error = ev.error
        elif ts is None:
            self._out.append(SendFree(ev.worker, [ev.key]))
        else:
            self._hold_scattered(ts, ws, pending)
        if not pending.waiting:
            self._settle_scatter(ev.key, pending)

    def _hold_scattered(self, ts: TaskState, ws: WorkerState, pending: _Storing) -> None:
        """``ws`` holds scattered ``ts``. Data scattered to a key that is being computed (or
        failed) wins, as in dask.distributed: the computation is dropped."""
        if ts.state == "memory":
            if ws not in ts.who_has:
                hold(ts, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(ts.nbytes, 0)
                self._track_copies(ts)
            return
        if ts.state in ACTIVE:
            # Freeing the task on the worker that now holds the value would drop the value:
            # there the task finishes, and its result replaces the value (same key).
            computing = ts.processing_on
            if computing is not None and computing is not ws and (
                computing.address in pending.waiting
            ):
                # The free sent there also drops the copy this scatter sent it earlier (same
                # key, the store went first): its acknowledgement, already on its way, must
                # not make it a holder.
                pending.waiting.discard(computing.address)
                self._owe(ts.key, computing.address)
            self._go(ts, "released", tell_worker=computing is not ws)
        elif ts.state == "erred":
            self._go(ts, "released")
        self._go(ts, "memory", worker=ws, nbytes=pending.nbytes, typename=pending.typename)
        self._tidy(list(ts.dependencies))

    def _settle_scatter(self, key: Key, pending: _Storing) -> None:
        """Every worker sent ``key`` answered (or died): tell the clients how it went."""
        del self._storing[key]
        ts = self.tasks.get(key)
        if ts is None:
            self._out.append(DropScattered([key]))
            return
        if ts.state == "memory":
            for client in ts.who_wants:
                self._out.append(ReportDone(client, key, ts.nbytes, ts.typename, None))
        elif ts.state == "scattering":
            if pending.error is not None and pending.error.get("kind") == "killed":
                self._err(ts, pending.error)
            elif pending.error is not None:
                self._err(ts, {**pending.error, "key": key, "message": (
                    f"scattered data {key!r} could not be loaded on the worker: "
                    f"{pending.error.get('message', '')}"
                )})
            elif pending.killed_on:  # no worker left to send it to
                self._err(ts, scheduler_error("lost-data", "shoal.LostDataError",
                                              _killed_message(key, pending, "lost"), key))
            else:
                self._err(ts, self._lost_error(ts))
        self._out.append(DropScattered([key]))
        self._tidy([ts])

    def _abandon_scatter(self, key: Key) -> None:
        """``key`` is forgotten while workers still have its scattered data on the way:
        free it on each of them (the free follows the store on the same wire) and count
        their acknowledgements as answered, so that no later life of the key (a task of
        the same key, a new scatter) takes one for its own: a holder made by such an ack
        holds nothing once the free arrives, and a free sent in answer to it could drop a
        computation of the key sent in between."""
        pending = self._storing.pop(key)
        for address in pending.waiting:
            self._out.append(SendFree(address, [key]))
            self._owe(key, address)
        self._out.append(DropScattered([key]))

    def _owe(self, key: Key, address: str) -> None:
        """``address`` was sent ``key``'s store and then a free of ``key``: its ack is owed."""
        self._undone[(key, address)] = self._undone.get((key, address), 0) + 1

    def _answered_by_free(self, key: Key, address: str) -> bool:
        """Whether this ack is one a free already answered (acks come in the order of the
        stores, on one wire)."""
        owed = self._undone.get((key, address))
        if not owed:
            return False
        if owed == 1:
            del self._undone[(key, address)]
        else:
            self._undone[(key, address)] = owed - 1
        return True

    def _scatters_lost_with(self, address: str, crashed: bool, memory_limit: int) -> None:
        """Workers that died before acknowledging scattered data: send it to another worker
        (the scheduler keeps the bytes until the scatter settles), or settle it. Past
        ``allowed_failures`` crashes of workers storing it, as for a task, the data is
        taken to kill them (too big for one: each was killed by its nanny) and it errs
        with KilledWorker instead of going round every worker of the cluster."""
        for owed in [k for k in self._undone if k[1] == address]:
            del self._undone[owed]
        for key, pending in list(self._storing.items()):
            if address not in pending.waiting:
                continue
            pending.waiting.discard(address)
            ts = self.tasks.get(key)
            if crashed:
                pending.killed_on.append(address)
                pending.memory_limit = memory_limit
                if len(pending.killed_on) > self.allowed_failures and pending.error is None:
                    pending.error = _killed_storing(key, pending)
                    pending.waiting.clear()
            if (not pending.waiting and pending.error is None and ts is not None
                    and ts.state == "scattering" and self.workers):
                pool = list(self.workers.values())
                ws = pool[next(self._seq) % len(pool)]
                pending.waiting.add(ws.address)
                self._out.append(SendStore(ws.address, key))
            elif not pending.waiting:
                self._settle_scatter(key, pending)


class _Storing:
    """A scatter in flight: the workers sent the data that have not answered yet."""

    __slots__ = ("error", "killed_on", "memory_limit", "nbytes", "typename", "waiting")

    def __init__(self, waiting: set[str], nbytes: int, typename: str) -> None:
        self.waiting = waiting
        self.nbytes = nbytes
        self.typename = typename
        self.error: dict[str, Any] | None = None
        self.killed_on: list[str] = []  # workers that crashed before acknowledging it
        self.memory_limit = 0  # the last of them's (0: none)


def _killed_message(key: Key, pending: _Storing, outcome: str) -> str:
    limit = f" (memory_limit {pending.memory_limit / 1e6:.2f} MB)" if pending.memory_limit else ""
    return (
        f"Scattered data {key!r} ({pending.typename}, {pending.nbytes / 1e6:.2f} MB) was "
        f"{outcome}: {len(pending.killed_on)} worker(s) storing it died "
        f"({', '.join(pending.killed_on)}). It may be too big for a worker{limit}, whose "
        "nanny kills it past distributed.worker.memory.terminate: scatter smaller pieces "
        "or give workers a bigger memory_limit."
    )


def _killed_storing(key: Key, pending: _Storing) -> dict[str, Any]:
    message = (_killed_message(key, pending, "not stored") + " shoal stopped sending it; "
               "raise 'distributed.scheduler.allowed-failures' to try more workers.")
    return scheduler_error("killed", "shoal.KilledWorker", message, key, reason=message,
                           workers=list(pending.killed_on), worker=pending.killed_on[-1])
