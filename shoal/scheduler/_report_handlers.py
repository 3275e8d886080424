"""What workers report about tasks to :class:`~shoal.scheduler._state.SchedulerState`.

Owns: tasks started, finished, failed (with retries) and seceded, transfers between workers
and the task stream they are recorded in, and copies of data made or dropped on workers
(retirement, ``replicate``, ``rebalance``). Workers joining, leaving or losing data are
``_worker_handlers``.
"""

from __future__ import annotations

from mypy_extensions import trait

from shoal.protocol._serialize import Serialized
from shoal.scheduler._events import (
    DataCopied,
    ExecutionStarted,
    ReplicasAdded,
    ReplicasDropped,
    ReplicasWanted,
    ReportDone,
    RescheduleAsked,
    Seceded,
    SendFree,
    TaskFailed,
    TaskFinished,
    TasksFinished,
    TransferDone,
)
from shoal.scheduler._state_base import FIRE_AND_FORGET, StateBase, key_prefix
from shoal.scheduler._tasks import Key, TaskState, hold, unguess, unhold, waits_again


@trait  # a mixin of SchedulerState (a trait when compiled: see _state_base)
class ReportHandlers(StateBase):
    """The handlers of workers' reports on tasks and data."""

    def _on_started(self, ev: ExecutionStarted) -> None:
        ws = self.workers.get(ev.worker)
        if ws is not None:
            ws.ready = True
        tasks = self.tasks
        for key, run in zip(ev.keys, ev.runs, strict=False):  # a short list: the rest ignored
            ts = tasks.get(key)
            if ts is not None and ts.processing_on is ws is not None and ts.run == run:
                ts.started = True

    def _on_finished(self, ev: TaskFinished) -> None:
        if ev.dropped:
            self._finished_dropping(ev)
            return
        self._finished(ev.worker, ev.key, ev.nbytes, ev.typename, ev.start, ev.stop,
                       ev.thread, ev.inline, ev.run, ev.pickled_type)

    def _on_finished_many(self, ev: TasksFinished) -> None:
        """A worker's results as columns: each row as its own ``TaskFinished`` would be
        (same story rows and cause), with no event object per row. A row that raises (a
        shoal bug) does not stop the others; the first such error is raised at the end,
        with a note naming every other row that failed."""
        self._cause = "TaskFinished"
        worker = ev.worker
        finished = self._finished
        failed: list[tuple[Key, Exception]] = []
        for key, nbytes, typename, start, stop, thread, inline, run, dropped, cls in zip(
            ev.keys, ev.nbytes, ev.typenames, ev.starts, ev.stops, ev.threads, ev.inlines,
            ev.runs, ev.dropped, ev.pickled_types, strict=True,
        ):
            try:
                if dropped:
                    self._finished_dropping(TaskFinished(
                        worker, key, nbytes, typename, start, stop, thread, inline, run,
                        tuple(dropped), cls))
                else:
                    finished(worker, key, nbytes, typename, start, stop, thread, inline, run,
                             cls)
            except Exception as exc:
                failed.append((key, exc))
        if failed:
            first = failed[0][1]
            for key, other in failed[1:]:
                first.add_note(f"row {key!r} of the same batch also failed: "
                               f"{type(other).__name__}: {other}")
            raise first

    def _finished(self, worker: str, key: Key, nbytes: int, typename: str, start: float,
                  stop: float, thread: int, inline: Serialized | None, run: int,
                  pickled_type: bytes | None = None) -> None:
        """One result (``TaskFinished``'s fields), its dropped inputs already handled."""
        ws = self.workers.get(worker)
        ts = self.tasks.get(key)
        if ws is None:
            return
        # The task's own key, not the message's copy: the stream keeps 100,000 of them.
        # (``_record_stream``, inlined: once per result)
        if ts is None:
            self.task_stream.append((key, key_prefix(key), worker, thread, start, stop,
                                     "compute"))
        else:
            self.task_stream.append((ts.key, ts.prefix, worker, thread, start, stop,
                                     "compute"))
        self.task_stream_total += 1
        if ts is None or ts.state in ("released", "erred", "forgotten"):
            self._out.append(SendFree(worker, [key]))
            return
        if ts.state == "memory":
            # Not from a holder: a run this worker was told to free (the free is on its way
            # or done), so it drops the value; counting it as a replica would send fetches
            # and tasks to a worker that lacks the input.
            if ws not in ts.who_has:
                self._out.append(SendFree(worker, [key]))
            return
        if ts.processing_on is not ws:
            self._out.append(SendFree(worker, [key]))
            return
        if run != ts.run:
            # A run this worker was told to free before the key was assigned to it again:
            # its value goes with that free, and the worker reports the current run itself
            # (a free now would cancel that run).
            return
        self.completed_total += 1
        if not (ws.long_running and ts in ws.long_running):  # measured when it seceded
            self._measured(ts.prefix, max(stop - start, 0.0))
        if ts.state == "processing":  # (it is: processing_on is ws) the move, as _go would
            self._processing_memory(ts, ws, nbytes, typename)
        else:
            self._go(ts, "memory", worker=ws, nbytes=nbytes, typename=typename)
        if FIRE_AND_FORGET in ts.who_wants:
            self._unfire(ts)
        for client in ts.who_wants:
            self._out.append(ReportDone(client, ts.key, nbytes, typename, inline, pickled_type))
        if self.spans.by_key:  # some task was submitted in a ``span`` block
            self.spans.finished(ts.key, ts.prefix, start, stop, nbytes)
        deps = ts.dependencies
        if deps or not ts.who_wants:  # else nothing to tidy: a wanted task is needed
            self._tidy([ts, *deps])

    def _finished_dropping(self, ev: TaskFinished) -> None:
        """A result whose worker dropped, as the task ended, inputs it read last
        (``SendCompute.drop``): that worker holds them no longer, whatever became of the
        task since (released and wanted again, stolen: the worker dropped them all the
        same). A worker's reports come in order, so any copy it holds again is reported
        after this. An input needed after all (a client or a new task came to want it
        since the assignment) is recomputed, or read from another copy."""
        ws = self.workers.get(ev.worker)
        dropped, ev.dropped = ev.dropped, ()
        gone = []
        if ws is not None:
            tasks = self.tasks
            for key in dropped:
                d = tasks.get(key)
                if d is not None and ws in d.who_has:
                    unhold(d, ws)
                    ws.has_what.discard(d)
                    ws.nbytes -= max(d.nbytes, 0)
                    gone.append(d)
        self._on_finished(ev)  # releases the inputs nothing needs (no free to ``ws``)
        lost = [d for d in gone if d.state == "memory" and not d.who_has]
        for d in lost:
            self._go(d, "released")
        waits_again(lost)
        if lost:
            self._activate(d for d in lost if self._needed(d))
            self._tidy(d for d in lost if d.state == "released")

    def _on_failed(self, ev: TaskFailed) -> None:
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if ws is None or ts is None or ts.processing_on is not ws or ev.run != ts.run:
            return  # not the current run (see _on_finished)
        self._record_stream(ts.key, ts.prefix, ev.worker, ev.thread, ev.start, ev.stop, "error")
        if ts.retries > 0:
            ts.retries -= 1
            self._go(ts, "released", tell_worker=False)
            self._activate([ts])
            return
        self._err(ts, ev.error, tell_worker=False)
        self._tidy([ts, *ts.dependencies])

    def _on_rescheduled(self, ev: RescheduleAsked) -> None:
        """The task raised ``Reschedule``: back to released and placed again from scratch
        (perhaps on the same worker), like a retry that costs none of its retries. The
        worker has already forgotten it."""
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if ws is None or ts is None or ts.processing_on is not ws or ev.run != ts.run:
            return  # not the current run (see _on_finished)
        self._go(ts, "released", tell_worker=False)
        self._activate([ts])

    def _on_transfer(self, ev: TransferDone) -> None:
        for key in ev.keys[:1]:
            ts = self.tasks.get(key)
            self._record_stream(ts.key if ts else key, ts.prefix if ts else key_prefix(key),
                                ev.worker, -1,
                                ev.start, ev.stop, "transfer")

    def _on_seceded(self, ev: Seceded) -> None:
        """The task gave its thread back: it stays on its worker (its result arrives as
        usual) but stops counting against the worker's slots and occupancy, so the worker
        gets more work while it waits (dask's "long-running")."""
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if (ws is None or ts is None or ts.processing_on is not ws or ev.run != ts.run
                or ts in ws.long_running):
            return
        ws.long_running.add(ts)
        ts.started = True  # it ran: never stolen, and counted if its worker dies
        ws.occupancy = max(0.0, ws.occupancy - ts.est)
        if ws.guessed:
            unguess(ws, ts)
        ts.est = 0.0
        if ws.held:  # its slot is free: tasks waiting for this worker may go
            self._freed.add(ws)
        self._room.touch(ws)
        self._measured(ts.prefix, max(ev.duration, 0.0))

    def _on_copied(self, ev: DataCopied) -> None:
        """Copies of keys now sit on ``ev.worker`` too (moved there by the shell)."""
        ws = self.workers.get(ev.worker)
        if ws is None:
            return
        for key, nbytes in ev.items:
            ts = self.tasks.get(key)
            if ts is None or ts.state != "memory":
                self._out.append(SendFree(ev.worker, [key]))  # not needed any more
            elif ws not in ts.who_has:
                hold(ts, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(nbytes, 0)
                self._track_copies(ts)

    def _record_stream(
        self, key: Key, prefix: str, worker: str, thread: int, start: float, stop: float,
        kind: str,
    ) -> None:
        self.task_stream.append((key, prefix, worker, thread, start, stop, kind))
        self.task_stream_total += 1

    def _on_replicas_added(self, ev: ReplicasAdded) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return
        stale = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None or ts.state != "memory":  # released meanwhile: the copy is not wanted
                stale.append(key)
            elif ws not in ts.who_has:
                hold(ts, ws)
                ws.has_what.add(ts)
                ws.nbytes += max(ts.nbytes, 0)
                self._track_copies(ts)
        if stale:
            self._out.append(SendFree(ws.address, stale))

    def _on_replicas_dropped(self, ev: ReplicasDropped) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return
        dropped = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is not None and ws in ts.who_has and len(ts.who_has) > 1:
                unhold(ts, ws)
                ws.has_what.discard(ts)
                ws.nbytes -= max(ts.nbytes, 0)
                dropped.append(key)
                if len(ts.who_has) <= self.replicas_wanted.get(ts, 1):
                    self.replicated_tasks.discard(ts)
        if dropped:
            self._out.append(SendFree(ws.address, dropped))
            if self._storing:
                self._free_undoes_stores(ws.address, dropped)

    def _free_undoes_stores(self, address: str, keys: list[Key]) -> None:
        """A free of ``keys`` sent to ``address`` also drops what a scatter still in flight
        stored there (same key, the store went first): its ack, on its way, is owed and
        must not make ``address`` a holder again."""
        for key in keys:
            pending = self._storing.get(key)
            if pending is not None and address in pending.waiting:
                pending.waiting.discard(address)
                self._owe(key, address)
                if not pending.waiting:
                    self._settle_scatter(key, pending)

    def _track_copies(self, ts: TaskState) -> None:
        """``ts`` got a holder (off the per-task path): the AMM looks at it if it now has
        more than the copies wanted."""
        if len(ts.who_has) > 1 and len(ts.who_has) > self.replicas_wanted.get(ts, 1):
            self.replicated_tasks.add(ts)

    def _on_replicas_wanted(self, ev: ReplicasWanted) -> None:
        wanted = self.replicas_wanted
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None or ts.state not in ("memory", "scattering"):
                continue
            if ev.n > 1:
                wanted[ts] = ev.n
            else:
                wanted.pop(ts, None)
            if len(ts.who_has) > max(ev.n, 1):
                self.replicated_tasks.add(ts)
            else:
                self.replicated_tasks.discard(ts)
