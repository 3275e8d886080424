"""Events applied to the state by :class:`~shoal.scheduler._server.Scheduler`, and the
state's commands carried out as messages.

Owns: ``_apply`` (``SchedulerState.handle``, logging ``EventsFailed`` and carrying out its
commands anyway), the plugin ``transition`` hook fed from the state's story, turning each
command into messages (a worker's ``FreeKeys`` batched but never after a later command to
it), and forgetting function blobs no task uses.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from shoal.comm import Connection
from shoal.protocol._columns import computes as computes_message
from shoal.protocol._columns import keys_done
from shoal.protocol._messages import (
    ClusterRestarted,
    Compute,
    DropFunctions,
    FreeKeys,
    KeyCancelled,
    KeyDone,
    KeyErred,
    Store,
    TopicEvent,
)
from shoal.scheduler._events import (
    CloseWorker,
    ContinueWork,
    DropScattered,
    ForgetFunctions,
    LogEvent,
    ReportCancelled,
    ReportDone,
    ReportErred,
    ReportRestarted,
    SendCompute,
    SendFree,
    SendStore,
    TaskFailed,
    TaskFinished,
    WatchedKeysForgotten,
    WorkResumed,
)
from shoal.scheduler._graph_hook import GraphNote
from shoal.scheduler._server_base import ShellBase
from shoal.scheduler._state import EventsFailed, stimulus_id
from shoal.scheduler._state_base import key_prefix
from shoal.scheduler._tasks import TaskState
from shoal.scheduler._topics import EventLogged, membership

logger = logging.getLogger("shoal.scheduler")


# Commands that send a client something other than a result.
_TO_CLIENT = (ReportErred, ReportCancelled, ReportRestarted)


def _report_fields(ev: TaskFinished | TaskFailed) -> dict[str, Any]:
    """The keyword arguments dask's scheduler passes to plugins' ``transition`` for a move
    out of ``processing`` (the fields of its worker's task-finished or task-erred report),
    of those shoal's reports have."""
    extra: dict[str, Any] = {
        "worker": ev.worker, "thread": ev.thread, "run_id": ev.run,
        "startstops": [{"action": "compute", "start": ev.start, "stop": ev.stop}],
    }
    if isinstance(ev, TaskFinished):
        extra.update(nbytes=ev.nbytes, typename=ev.typename)
        if ev.pickled_type is not None:
            extra["type"] = ev.pickled_type
    else:
        from shoal.protocol._errors import error_to_exception

        error = ev.error
        extra["exception"] = error_to_exception(error)  # (never raises)
        extra.update(exception_text=str(error.get("message", "")),
                     traceback_text=str(error.get("tb_text", "")))
    return extra


class ServerCommands(ShellBase):
    """Applying events and carrying out commands."""

    def _apply(self, events: list[Any]) -> None:
        if self.plugin_host.plugins:
            self._apply_plugged(events)
            return
        self._carry_out_all(self._handle(events))

    def _handle(self, events: list[Any], now: float | None = None) -> list[Any]:
        try:
            return self.state.handle(*events, now=time.time() if now is None else now)
        except EventsFailed as failed:  # its state changes are made: carry out their commands
            logger.error("%s", failed, exc_info=failed.failures[0][1])
            return failed.commands

    def _handle_graphs(self, events: list[Any], ready: list[GraphNote]
                       ) -> tuple[list[Any], dict[int, float]]:
        """``_handle(events)`` where ``ready`` graphs complete: each graph's last piece
        starts a step of its own, at a time of its own, so that its ``update_graph`` hook
        and the moves it makes share one stimulus id that no other graph has (dask's).
        Returns the steps' commands, in order, and each note's step time (by ``id``)."""
        if not ready:
            return self._handle(events), {}
        notes = {id(note.event): note for note in ready}
        steps: list[list[Any]] = [[]]
        for ev in events:
            if id(ev) in notes and steps[-1]:
                steps.append([])
            steps[-1].append(ev)
        commands: list[Any] = []
        times: dict[int, float] = {}
        for step in steps:
            now = self.plugin_host.graphs.stamp()
            note = notes.get(id(step[0]))
            if note is not None:
                times[id(note)] = now
            commands += self._handle(step, now)
        return commands, times

    def _update_graph_hook(self, note: GraphNote, now: float | None = None) -> None:
        try:
            arguments = self.plugin_host.graphs.arguments(note, self.state, now)
        except Exception:  # a shoal bug: the graph runs, the plugins miss its update
            logger.exception("could not describe a graph of client %s to update_graph "
                             "hooks", note.client)
            return
        self._hook("update_graph", self, **arguments)

    def _apply_plugged(self, events: list[Any]) -> None:
        """``_apply`` while scheduler plugins are registered: after the state's step, the
        ``update_graph`` hook of each graph submission those events complete (noted by
        ``_on_client_message``: its tasks are in the table now), then, while a plugin has
        a ``transition`` hook, the step's new story rows as its calls (dask's order)."""
        host = self.plugin_host
        ready = host.graphs.take_ready()
        if not host.watching:
            commands, times = self._handle_graphs(events, ready)
            for note in ready:
                self._update_graph_hook(note, times.get(id(note)))
            self._carry_out_all(commands)
            return
        # The batch's rows go to a log of their own first, then to the state's: a batch
        # making more moves than that log keeps (distributed.admin.low-level-log-length)
        # still shows the plugin every one. (An InvalidTransition raised meanwhile shows
        # the task's moves of this batch only.)
        state = self.state
        kept = state._log
        new: collections.deque[tuple[Any, ...]] = collections.deque()
        state._log = new
        try:
            commands, times = self._handle_graphs(events, ready)
        finally:
            state._log = kept
            kept.extend(new)
        for note in ready:
            self._update_graph_hook(note, times.get(id(note)))
        # What dask gives a task's processing -> memory/erred move (a task-stream plugin
        # reads ``startstops``), from the worker's report among these events.
        done = {e.key: e for e in events if type(e) in (TaskFinished, TaskFailed)}
        tasks = state.tasks
        for key, start, finish, cause, now in new:
            ev = done.get(key) if start == "processing" else None
            extra = {} if ev is None else _report_fields(ev)
            # The hook reads the task as dask's does, in ``finish`` (the batch may have
            # moved it on since), and a task forgotten meanwhile as a stand-in record put
            # back for the call (dask puts the forgotten task back for its plugins).
            ts = tasks.get(key)
            stand_in = ts is None
            if ts is None:
                ts = tasks[key] = TaskState(key, key_prefix(key))
            actual, ts.state = ts.state, finish
            try:
                self._hook("transition", key, start, finish,
                           stimulus_id=stimulus_id(cause, now), **extra)
            finally:
                if stand_in:
                    del tasks[key]
                else:
                    ts.state = actual
        self._carry_out_all(commands)

    def _carry_out_all(self, commands: list[Any]) -> None:
        workers = self._workers
        clients = self._clients
        # A worker's computes leave as one Computes, and its FreeKeys as one FreeKeys, but
        # neither after a later command to that worker: a release then a resubmission (or a
        # compute then its free) must reach it in that order. So at most one of the two is
        # pending for a worker at any time.
        frees: dict[str, list[Any]] = {}
        computes: dict[str, list[SendCompute]] = {}
        # Likewise a client's results leave as one KeysDone, before any later message to it.
        dones: dict[str, list[ReportDone]] = {}
        try:
            for cmd in commands:
                try:
                    kind = type(cmd)
                    if kind is ReportDone:  # the per-task commands first
                        pending_done = dones.get(cmd.client)
                        if pending_done is None:
                            dones[cmd.client] = [cmd]
                        else:
                            pending_done.append(cmd)
                        continue
                    if kind is SendCompute:
                        address = cmd.worker
                        if frees and address in frees:
                            self._send_frees(frees, address)
                        pending = computes.get(address)
                        if pending is None:
                            computes[address] = [cmd]
                        else:
                            pending.append(cmd)
                        continue
                    if dones and isinstance(cmd, _TO_CLIENT) and cmd.client in dones:
                        self._send_dones(dones, cmd.client)
                    if isinstance(cmd, (SendFree, SendStore, CloseWorker)):
                        if computes and cmd.worker in computes:
                            self._send_computes(computes, cmd.worker)
                        if frees and not isinstance(cmd, SendFree):
                            self._send_frees(frees, cmd.worker)
                    self._carry_out(cmd, workers, clients, frees)
                except Exception:
                    logger.exception("scheduler could not carry out %r; going on with the rest",
                                     cmd)
            # (Each step's own: most steps have one kind, a round trip's one command.)
            if dones:
                for client in list(dones):
                    try:
                        self._send_dones(dones, client)
                    except Exception:
                        logger.exception("scheduler could not send results to %s", client)
            if computes:
                for address in list(computes):
                    try:
                        self._send_computes(computes, address)
                    except Exception:
                        logger.exception("scheduler could not send computes to %s", address)
            if frees:
                for address in list(frees):
                    self._send_frees(frees, address)
        finally:
            # Computes and results are written now, not a loop turn later; the workers'
            # first: an in-process client handles its results inside its flush (and wakes
            # the user's thread, which takes the GIL), and a worker whose thread just freed
            # would wait for that before the task queued for it leaves.
            held = self._held
            if held:
                self._held = []
                for conn in held:
                    conn.flush()
            held = self._held_clients
            if held:
                self._held_clients = []
                for conn in held:
                    conn.flush()

    def _send_frees(self, frees: dict[str, list[Any]], address: str) -> None:
        keys = frees.pop(address, None)
        conn = self._workers.get(address)
        if keys and conn is not None:
            # Written with the step's computes (a release riding a submission: else the
            # free armed the end-of-iteration write, and the compute after it waited for it).
            if conn.hold():
                self._held.append(conn)
            conn.send(FreeKeys(keys))

    def _send_dones(self, dones: dict[str, list[ReportDone]], client: str) -> None:
        """One client's results of this step: one ``KeyDone`` alone, several as one
        ``KeysDone``."""
        cmds = dones.pop(client)
        c = self._clients.get(client)
        if c is None:
            return
        if c.hold():
            self._held_clients.append(c)
        if len(cmds) == 1:
            cmd = cmds[0]
            c.send(KeyDone(cmd.key, cmd.nbytes, cmd.typename, cmd.inline, cmd.pickled_type))
        else:
            c.send(keys_done(cmds))

    def _send_computes(self, computes: dict[str, list[SendCompute]], address: str) -> None:
        """The computes decided for one worker, with the function blobs it lacks: one
        ``Compute`` alone, several as one ``Computes`` (no message object per task)."""
        cmds = computes.pop(address)
        conn = self._workers.get(address)
        if conn is None:
            return
        known = self._worker_fids[address]
        blobs = {}
        last: tuple[str, ...] | None = None
        for cmd in cmds:
            fids = cmd.fids
            if fids is last or not fids:  # a map's tasks share one fids tuple
                continue
            last = fids
            for fid in fids:
                if fid not in known:
                    blobs[fid] = self._functions[fid]
                    known.add(fid)
        if conn.hold():
            self._held.append(conn)
        if len(cmds) == 1:
            cmd = cmds[0]
            conn.send(Compute(cmd.key, cmd.payload, cmd.deps, blobs, cmd.priority,
                              cmd.send_inline, cmd.prefix, cmd.run, cmd.drop))
        else:
            conn.send(computes_message(cmds, blobs))

    def _carry_out(
        self, cmd: Any, workers: dict[str, Connection], clients: dict[str, Connection],
        frees: dict[str, list[Any]],
    ) -> None:
        if isinstance(cmd, SendFree):
            frees.setdefault(cmd.worker, []).extend(cmd.keys)
        elif isinstance(cmd, ReportErred):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(KeyErred(cmd.key, cmd.error))
        elif isinstance(cmd, ReportCancelled):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(KeyCancelled(cmd.key, cmd.reason))
        elif isinstance(cmd, SendStore):
            conn = workers.get(cmd.worker)
            held = self._scattered.get(cmd.key)
            if conn is not None and held is not None:
                conn.send(Store(cmd.key, held[0], held[1]))
        elif isinstance(cmd, DropScattered):
            for key in cmd.keys:
                self._scattered.pop(key, None)
        elif isinstance(cmd, ForgetFunctions):
            self._forget_functions(cmd.fids)
        elif isinstance(cmd, WatchedKeysForgotten):
            self.metadata.forget(cmd.keys)
        elif isinstance(cmd, ReportRestarted):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(ClusterRestarted(cmd.reason))
        elif isinstance(cmd, ContinueWork):
            # After what waits now (other connections, timers): a bounded step each time.
            asyncio.get_running_loop().call_soon(self._apply, [WorkResumed()])
        elif isinstance(cmd, LogEvent):  # as a TopicLog: kept, sent to subscribers, hooked
            owners = membership(cmd.msg, time.monotonic())
            if owners:
                self._apply_side(self.topics, [EventLogged(cmd.topics, cmd.msg, time.time()),
                                               *owners])
            else:  # (the same, cheaper: one per submitted graph)
                for told in self.topics.log(cmd.topics, cmd.msg, time.time()):
                    c = clients.get(told.client)
                    if c is not None:
                        c.send(TopicEvent(told.topic, told.time, told.msg))
            if self.plugin_host.plugins:
                for topic in cmd.topics:
                    self._hook("log_event", topic, cmd.msg)
        elif isinstance(cmd, CloseWorker):
            conn = workers.get(cmd.worker)
            if conn is not None:
                # Dropped, not told to leave: like dask restarting a worker that missed
                # its TTL, one that is still alive reconnects as a fresh worker.
                logger.warning("dropping worker %s: %s", cmd.worker, cmd.reason)
                conn.close()

    def _forget_functions(self, fids: list[str]) -> None:
        """No task has used ``fids`` for a while: drop the blobs, and tell the workers and
        clients holding them (they forget; the next use sends the blob again)."""
        for fid in fids:
            blob = self._functions.pop(fid, None)
            if blob is not None:
                self._forgotten[fid] = blob
        while len(self._forgotten) > 256:
            self._forgotten.popitem(last=False)
        for peers, known_by in ((self._workers, self._worker_fids), (self._clients, self._client_fids)):
            for name, known in known_by.items():
                drop = [fid for fid in fids if fid in known]
                conn = peers.get(name)
                if drop and conn is not None:
                    known.difference_update(drop)
                    conn.send(DropFunctions(drop))
