"""Worker membership in :class:`~shoal.scheduler._state.SchedulerState`: workers joining,
leaving, dying, pausing, and the periodic tick.

Owns: adding and removing workers (a crash counts against the tasks a worker was running:
``_suspects``, KilledWorker), recomputing what was lost with a worker, data a worker reports
missing, heartbeats and the heartbeat timeout, pausing on memory, and the tick's
housekeeping. What workers report about the tasks they run is ``_report_handlers``.
"""

from __future__ import annotations

import heapq
from typing import Any

from mypy_extensions import trait

from shoal.protocol._errors import scheduler_error
from shoal.protocol._serialize import dumps
from shoal.scheduler import _no_workers as no_workers
from shoal.scheduler._events import (
    CloseWorker,
    DataMissing,
    ForgetFunctions,
    HeartbeatReceived,
    LogEvent,
    Tick,
    WorkerJoined,
    WorkerLeft,
    WorkerMemoryKilled,
    WorkerPaused,
    WorkerRetiring,
)
from shoal.scheduler._state_base import StateBase, stimulus_id
from shoal.scheduler._task_shards import merged_if_small
from shoal.scheduler._tasks import TaskState, WorkerState, unhold, waits_again


@trait  # a mixin of SchedulerState (a trait when compiled: see _state_base)
class WorkerHandlers(StateBase):
    """The handlers of worker membership and failure events."""

    def _on_worker_joined(self, ev: WorkerJoined) -> None:
        if ev.address in self.workers:
            return
        ws = self.workers[ev.address] = WorkerState(
            ev.address, ev.name, ev.nthreads, ev.memory_limit, ev.pid, ev.host, ev.now,
            ev.resources,
        )
        self._went_idle.add(ws)
        self._room.add(ws)
        self._out.append(LogEvent([ev.address], {"action": "add-worker"}))
        self._out.append(LogEvent(["all"], {"action": "add-worker", "worker": ev.address}))
        self._place_no_worker_again()

    def _on_worker_left(self, ev: WorkerLeft) -> None:
        self._remove_worker(ev.address, ev.reason, crashed=True)

    def _on_worker_retiring(self, ev: WorkerRetiring) -> None:
        self._remove_worker(ev.address, ev.reason, crashed=False)

    def _suspects(self, ws: WorkerState) -> list[TaskState]:
        """The tasks ``ws`` was running when it died: those it reported starting. A worker
        may die before its first report leaves (a task that kills it at once): then its
        threads were running its first tasks in priority order, as its executor picks them
        (once it said it was ready: before, its tasks waited for its imports). Tasks only
        queued there are innocent."""
        suspects = [ts for ts in ws.processing if ts.started]
        if not suspects and ws.processing and ws.ready:
            suspects = heapq.nsmallest(ws.nthreads, ws.processing, key=lambda t: t.prio)
        return suspects

    def _remove_worker(self, address: str, reason: str, crashed: bool) -> None:
        """The worker is gone (``crashed``) or leaving on purpose: its tasks run elsewhere,
        and only a crash counts against the tasks it was running (KilledWorker)."""
        ws = self.workers.pop(address, None)
        if ws is None:
            return
        self._paused.discard(ws)
        self._room.remove(ws)
        processing = [ts.key for ts in ws.processing]
        recompute: list[TaskState] = []
        suspects = set(self._suspects(ws)) if crashed else set()
        for ts in sorted(ws.processing, key=lambda t: t.prio):
            if ts.processing_on is not ws:  # erred meanwhile, as a dependent of a suspect
                continue
            if ts in suspects:
                ts.killed_on = (*ts.killed_on, ws.address)
                if ts.suspicious > self.allowed_failures:
                    self._err(ts, self._killed_error(ts, ws.memory_killed), tell_worker=False)
                    continue
            self._go(ts, "released", tell_worker=False)
            recompute.append(ts)
        for _, _, ts in ws.held:  # restricted tasks queued here on the scheduler
            if ts.state == "queued" and ts.held_on is ws:
                self._go(ts, "released", tell_worker=False)
                recompute.append(ts)
        ws.held = []
        lost: list[TaskState] = []
        actors: list[TaskState] = []
        for ts in list(ws.has_what):
            unhold(ts, ws)
            if not ts.who_has and ts.state == "memory":
                self._go(ts, "released")
                (actors if ts.actor else lost).append(ts)
        ws.has_what.clear()
        # dask's remove-worker event (lists, not sets: events travel as msgpack)
        said = {"action": "remove-worker", "processing-tasks": processing,
                "lost-computed-tasks": [ts.key for ts in lost if ts.payload is not None],
                "lost-scattered-tasks": [ts.key for ts in lost if ts.payload is None],
                "stimulus_id": stimulus_id(self._cause, self._now), "expected": not crashed}
        self._out.append(LogEvent([address], said))
        self._out.append(LogEvent(["all"], {**said, "worker": address}))
        # An actor's state died with its worker; recomputing it would silently start afresh.
        for ts in actors:
            self._err(ts, _actor_lost_error(ts, ws.address, reason))
        # Dependents already sent elsewhere can no longer fetch lost inputs: run them again.
        for ts in lost:
            for dts in list(ts.dependents):
                if dts.state in ("processing", "queued", "no-worker"):
                    self._go(dts, "released", tell_worker=True)
                    recompute.append(dts)
                elif dts.state == "waiting":
                    if dts.waiting_on:
                        dts.waiting_on.add(ts)
                    else:
                        dts.waiting_on = {ts}
        self._activate(ts for ts in recompute + lost if self._needed(ts))
        self._tidy(lost + actors)
        if self._storing or self._undone:  # a scatter settles on what is left
            self._scatters_lost_with(address, crashed, ws.memory_limit)

    def _on_missing(self, ev: DataMissing) -> None:
        ts = self.tasks.get(ev.key)
        # A worker that names no holder has none left to try, and lacks the input itself:
        # if we list it as a holder, that replica is stale (else it is sent back forever).
        holder = self.workers.get(ev.holder or ev.worker)
        if ts is not None and holder is not None and holder in ts.who_has:
            unhold(ts, holder)
            holder.has_what.discard(ts)
            holder.nbytes -= max(ts.nbytes, 0)
        lost = []
        if ts is not None and ts.state == "memory" and not ts.who_has:
            self._go(ts, "released")
            if ts.actor:
                self._err(ts, _actor_lost_error(ts, ev.holder, f"{ev.worker} could not reach it"))
                self._tidy([ts])
                return
            lost.append(ts)
            if ev.holder not in ("", ev.worker) and ev.worker in self.workers:
                # The worker that needs it could not get it from that holder (cut off from
                # it, or the holder lacks it): recompute it there, not on the holder again,
                # which would send the dependent back to the same failing fetch for ever.
                ts.recompute_on = ev.worker
        dts = self.tasks.get(ev.for_key)
        again = []
        # Naming another peer, the worker keeps the task and tries the next holder; it drops
        # the task (and says so naming no one, or itself) when none is left, or the input
        # is lost anyway: only then does the task run again.
        dropped = ev.holder in ("", ev.worker) or ts is None or ts.state != "memory"
        if dropped and dts is not None and dts.state == "processing" and (
            dts.processing_on is not None and dts.processing_on.address == ev.worker
        ):
            self._go(dts, "released", tell_worker=False)
            again.append(dts)
        waits_again(lost)
        self._activate(t for t in lost + again if self._needed(t))

    def _on_heartbeat(self, ev: HeartbeatReceived) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return
        ws.last_seen = ev.now
        ws.memory_process = ev.memory_process
        ws.memory_managed = ev.memory_managed
        ws.memory_spilled = ev.memory_spilled
        ws.memory_spilled_disk = ev.memory_spilled_disk
        ws.cpu = ev.cpu
        ws.executing = ev.executing

    def _on_worker_memory_killed(self, ev: WorkerMemoryKilled) -> None:
        ws = self.workers.get(ev.worker)
        if ws is not None:
            ws.memory_killed = (ev.process, ev.limit, ev.fraction)

    def _on_worker_paused(self, ev: WorkerPaused) -> None:
        """A worker paused (memory): it gets nothing new, and idle workers may steal what
        is queued there. Resumed: it takes work again, including tasks that found no
        allowed worker running meanwhile."""
        ws = self.workers.get(ev.worker)
        if ws is None or ws.paused == ev.paused:
            return
        ws.paused = ev.paused
        self._room.touch(ws)  # has_room follows paused
        if ev.paused:
            self._paused.add(ws)
            self._went_idle.update(w for w in self.workers.values() if not w.paused)
            return
        self._paused.discard(ws)
        self._went_idle.add(ws)
        if ws.held_live:
            self._freed.add(ws)  # its queue on the scheduler is sent again
        self._place_no_worker_again()

    def _place_no_worker_again(self) -> None:
        """A worker joined or resumed: place every no-worker task again. Those still left
        without a worker keep the time they were first seen waiting (no-workers-timeout):
        workers that cannot run them, coming and going, do not restart their clock."""
        waiting, self._no_worker = self._no_worker, {}
        for ts in waiting:
            if ts.state == "no-worker":
                self._go(ts, "waiting")
                self._ready(ts)
        if self.no_workers_timeout is not None:
            for ts, since in waiting.items():
                if ts in self._no_worker:
                    self._no_worker[ts] = since

    def _on_tick(self, ev: Tick) -> None:
        self._went_idle.update(
            w for w in self.workers.values()
            if len(w.processing) - len(w.long_running) < w.nthreads
        )
        for w in self.workers.values():
            if w.held:
                self._compact_held(w)
                self._freed.add(w)
        unused = self.functions.tick()
        self.tasks = merged_if_small(self.tasks)  # a large graph's shards, once it is gone
        if unused:
            self._out.append(ForgetFunctions(unused))
        for ws in list(self.workers.values()):
            if ev.now - ws.last_seen > self.worker_ttl:
                self._out.append(CloseWorker(ws.address, f"no heartbeat for {self.worker_ttl} s"))
                self._on_worker_left(WorkerLeft(ws.address, "heartbeat timeout", ev.now))
        if self.no_workers_timeout is not None:
            no_workers.expire(self, ev.now)


def _actor_lost_error(ts: TaskState, worker: str, reason: str) -> dict[str, Any]:
    message = (
        f"Worker holding Actor was lost: actor {ts.key!r} lived on {worker}, which left the "
        f"cluster ({reason}); its state is gone. Create the actor again."
    )
    return scheduler_error(
        "actor-lost", "builtins.RuntimeError", message, ts.key, worker=worker,
        exception=dumps(RuntimeError(message)),
    )
