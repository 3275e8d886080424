"""What clients ask of :class:`~shoal.scheduler._state.SchedulerState`: the handlers of
client events.

Owns: clients joining and leaving, graphs submitted, keys released, cancelled and retried,
fire-and-forget, and the cluster reset of ``client.restart()``. Each handler decides which
moves to make (``_transitions``); scattered data has its own handlers (``_scatter_handlers``).
"""

from __future__ import annotations

from sys import intern
from typing import Any

from mypy_extensions import trait

from shoal.protocol._errors import scheduler_error
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    ClusterReset,
    DropScattered,
    FireAndForgetAsked,
    ForgetWatched,
    GraphSubmitted,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    LogEvent,
    ReportCancelled,
    ReportDone,
    ReportErred,
    ReportRestarted,
    SpanSubmitted,
    WatchedKeysForgotten,
    WorkResumed,
)
from shoal.scheduler._state_base import (
    FIRE_AND_FORGET,
    StateBase,
    ingest_holder,
    key_prefix,
    stimulus_id,
)
from shoal.scheduler._task_shards import Tasks, sharded_for
from shoal.scheduler._tasks import EMPTY, Key, TaskState, add_dependent, compact_payload
from shoal.scheduler._transitions import _upstream

# Tasks of an ended graph hold let go of per ``handle`` call (about 15 µs each).
ENDING_STEP = 2_000
# Tasks one hold of an arriving graph keeps at most; a larger graph is kept by several
# holds. A hold is one set, and a set of a million tasks grows by rehashing all of them in
# one step: 200-270 ms of the loop at 1.26M tasks (``da.ones(1M)``, issue 14).
HOLD_TASKS = 100_000


@trait  # a mixin of SchedulerState (a trait when compiled: see _state_base)
class ClientHandlers(StateBase):
    """The handlers of client events."""

    def _on_client_joined(self, ev: ClientJoined) -> None:
        self.clients.setdefault(ev.client, set())
        if ev.client not in self._joined:
            name = self._joined[ev.client] = ev.id or ev.client
            self._out.append(LogEvent(["all", name], {"action": "add-client", "client": name}))

    def _client_id(self, client: str) -> str:
        """The ``Client.id`` of session ``client``, which dask's events name it by."""
        return self._joined.get(client, client)

    def _on_client_left(self, ev: ClientLeft) -> None:
        name = self._joined.pop(ev.client, None)
        if name is not None:  # not a pseudo-client (a dataset's or lock's holder)
            self._out.append(LogEvent(["all", name],
                                      {"action": "remove-client", "client": name}))
        held = self.clients.pop(ev.client, set())
        for ts in held:
            self._unwant(ts, ev.client)
        self._wanting.pop(ev.client, None)
        self._tidy(held)
        for arriving in [a for a in self._arriving if a[0] == ev.client]:
            self._end_ingest(arriving)  # a graph whose last piece never came

    def _end_ingest(self, arriving: tuple[str, int]) -> None:
        """Drop what kept the pieces of the graph ``arriving`` (client, stream): its last
        piece is in. A hold of a million tasks is let go of ``ENDING_STEP`` tasks per
        ``handle`` call (the shell feeds back :class:`WorkResumed`), so that no step holds
        the loop for long; a graph the client sends meanwhile gets a hold of its own."""
        hold = self._arriving.pop(arriving, None)
        if hold is None:
            return
        idle = not self._ending
        for full in self._full_holds.pop(arriving, ()):
            self._ending[full] = None
        self._ending[hold] = None
        if idle:
            self._end_some_holds()

    def _end_some_holds(self) -> None:
        """Let go of at most ``ENDING_STEP`` tasks of the holds being ended; ask to be
        resumed if some are left."""
        budget = ENDING_STEP
        while self._ending and budget > 0:
            hold = next(iter(self._ending))
            held = self.clients.get(hold, set())
            step = [held.pop() for _ in range(min(budget, len(held)))]
            for ts in step:
                self._unwant(ts, hold)
            self._tidy(step)
            budget -= len(step)
            if not held:
                del self._ending[hold]
                self.clients.pop(hold, None)
                self._wanting.pop(hold, None)
        if self._ending:
            self._resume_later()

    def _on_resumed(self, ev: WorkResumed) -> None:
        self._resuming = False
        self._end_some_holds()
        self._tidy(())

    def _hold_for(self, arriving: tuple[str, int]) -> str:
        """The pseudo-client keeping the pieces of the graph ``arriving`` (client, stream): a
        new one once the current one keeps ``HOLD_TASKS`` (that one is kept, full, until
        the graph's last piece is in)."""
        hold = self._arriving.get(arriving)
        if hold is not None and len(self.clients.get(hold, ())) >= HOLD_TASKS:
            self._full_holds.setdefault(arriving, []).append(hold)
            hold = None
        if hold is None:
            hold = base = ingest_holder(arriving[0])
            n = 1
            while hold in self.clients:  # another graph's hold (arriving, or being let go of)
                hold, n = f"{base} #{n}", n + 1
            self._arriving[arriving] = hold
        return hold

    def _on_graph(self, ev: GraphSubmitted) -> None:
        wanted_by = self.clients.setdefault(ev.client, set())
        new: list[TaskState] = []
        # (deps: a list off the wire, a tuple from a local caller; the compiled build checks)
        rows: list[tuple[TaskState, Any]] = []
        # (a piece that takes the table past a few hundred thousand tasks shards it first)
        tasks = self.tasks = sharded_for(self.tasks, len(ev.tasks))
        restrictions = ev.restrictions
        # A piece (stream > 0) that is not its graph's last keeps its tasks for the later
        # pieces: those it names as used later (``held``; all when the client cannot tell);
        # tasks it names as wanted are kept by the client itself: only the others need the
        # hold (ending it costs a step per task held).
        keep = ev.more and ev.stream > 0
        hold = self._hold_for((ev.client, ev.stream)) if keep else ""
        ingesting = self.clients.setdefault(hold, set()) if keep else set()
        named = set(ev.wanted) if keep else set()
        later = None if not keep or ev.held is None else set(ev.held)
        last_fids: tuple[str, ...] = ()
        uses = 0  # tasks of this graph that use ``last_fids`` and are not counted yet
        for row in ev.tasks:
            key, payload, deps, fids, priority, retries, workers, prefix = row
            ts = tasks.get(key)
            if ts is None:
                ts = tasks[key] = TaskState(
                    key, intern(prefix or key_prefix(key)))  # decoded afresh: share one copy
                self.count_new(ts)
                new.append(ts)
            elif ts.state != "released" or ts.payload is not None:
                if (keep and key not in named and ts not in ingesting
                        and (later is None or key in later)):
                    # known already (an earlier graph's result, kept by a hold now
                    # ending): this graph's later pieces may need it too
                    self._want(ts, hold)
                    ingesting.add(ts)
                continue
            if fids:
                # Tasks of one call use the same functions: they share one tuple (and
                # its decoded id strings) instead of keeping a copy each, and are counted
                # as users of them together.
                got = fids if type(fids) is tuple else tuple(fids)
                if got != last_fids:
                    if uses:
                        self.functions.use(last_fids, uses)
                    last_fids, uses = got, 0
                ts.fids = last_fids
                uses += 1
            else:
                ts.fids = ()
            ts.payload = compact_payload(payload, ts.fids)
            ts.prio = self._prio_of(priority)
            if retries or workers or ts.rare is not None:  # (most tasks: none of them)
                ts.retries = retries
                ts.workers = frozenset(workers) if workers else None
            if restrictions:
                need, loose = restrictions.get(key, (None, False))
                ts.resources = dict(need) if need else None
                ts.loose = bool(loose) and ts.workers is not None
            rows.append((ts, deps))
            if keep and key not in named and (later is None or key in later):
                # kept until the last piece: a dependent follows (or may)
                self._want(ts, hold)
                ingesting.add(ts)
        if uses:
            self.functions.use(last_fids, uses)
        for key in ev.actors:
            ats = tasks.get(key)
            if ats is not None and ats.state == "released":
                ats.actor = True
                self._actors.add(ats)
        missing: list[tuple[TaskState, Key]] = []
        for ts, deps in rows:
            if not deps:
                continue
            found: dict[TaskState, None] = dict.fromkeys(ts.dependencies)
            for dk in deps:
                dts = tasks.get(dk)
                if dts is None or dts is ts:  # (itself: a cycle, which would wait forever)
                    missing.append((ts, dk))
                    continue
                if dts in found:
                    continue
                found[dts] = None
                add_dependent(dts, ts)
            ts.dependencies = tuple(found)
        wanted_now: list[TaskState] = []
        alone = self._wanting.get(ev.client)
        if alone is None and ev.wanted:
            alone = self._wanting[ev.client] = frozenset((ev.client,))
        for key in ev.wanted:
            ts = tasks.get(key)
            if ts is None:
                if not ev.more:  # (a piece names only its own rows; the last, the rest)
                    # dask's answer to ``get(dsk, "typo")``: cancelled, not a wait forever
                    self._out.append(ReportCancelled(
                        ev.client, key,
                        f"lost dependencies: {key!r} is not in the graph and the cluster "
                        "holds no such key (never computed, or forgotten: released by every "
                        "client, or cleared by client.restart()); ask for keys of the graph "
                        "you pass, or compute it again (a Variable or dataset holding its "
                        "future: set or publish it again)"))
                continue
            wanted_now.append(ts)
            if ts.who_wants:
                self._want(ts, ev.client)
            elif alone is not None:  # wanted by no one yet (a new task's): ``_want``, inlined
                ts.who_wants = alone
            wanted_by.add(ts)
            if ts.state == "memory":
                self._out.append(ReportDone(ev.client, key, ts.nbytes, ts.typename, None))
            elif ts.state == "erred" and ts.error is not None:
                self._out.append(ReportErred(ev.client, key, ts.error))
        for ts, dk in missing:
            if dk == ts.key:
                error = scheduler_error(
                    "cycle", "RuntimeError",
                    f"Cycle detected: task {dk!r} depends on itself, so it can never run "
                    "(dask.order raises the same for such a graph); fix the graph.", dk)
            else:
                error = scheduler_error(
                    "lost-data",
                    "shoal.LostDataError",
                    f"lost dependencies: task {ts.key!r} needs {dk!r}, which the cluster no "
                    "longer holds (it was released or lost). Keep a reference to its future "
                    "or persisted collection while other computations use it.",
                    ts.key,
                )
            self._err(ts, error)
        candidates = [ts for ts, _ in rows]
        candidates.extend(t for t in wanted_now if t.state == "released")
        self._activate(ts for ts in candidates if ts.state == "released" and self._needed(ts))
        # (those wanted are needed: looking at them, a call each, would change nothing)
        unwanted = [ts for ts in new if not ts.who_wants]
        if unwanted or self._tidying:  # (a submission's wanted tasks: nothing to tidy)
            self._tidy(unwanted)
        if not ev.more and ev.stream > 0:
            self._end_ingest((ev.client, ev.stream))
        # dask's event of each graph (one per piece of a graph sent in pieces); a row whose
        # key the cluster had already (kept as it was) is one of dask's key collisions
        self._out.append(LogEvent(["scheduler", self._client_id(ev.client)], {
            "action": "update-graph", "stimulus_id": f"update-graph-{self._now}",
            "metrics": {"tasks": len(ev.tasks), "new_tasks": len(new),
                        "key_collisions": len(ev.tasks) - len(rows)},
            "status": "OK"}))

    def _on_span_submitted(self, ev: SpanSubmitted) -> None:
        self.spans.observe(tuple(ev.names), tuple(ev.ids), list(ev.keys), self._now)

    def _task_table(self) -> Tasks:
        """The tasks by key (for the span records: ``reset`` makes a new table)."""
        return self.tasks

    def _on_released(self, ev: KeysReleased) -> None:
        held = self.clients.get(ev.client, set())
        touched = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            self._unwant(ts, ev.client)
            held.discard(ts)
            touched.append(ts)
        self._tidy(touched)

    def _on_cancelled(self, ev: KeysCancelled) -> None:
        """dask's rule: a task wanted by others only loses this client's interest (unless
        forced); otherwise it is cancelled for all who want it, and so are its dependents
        (by the same rule). A client cancels only keys it holds. The cancelling client settled the futures it named itself; a
        report of those could overtake their resubmission and cancel it."""
        client = ev.client
        self._out.append(LogEvent([self._client_id(client)], {
            "action": "cancel", "count": len(ev.keys), "force": ev.force}))
        named = set(ev.keys)
        stack = list(ev.keys)
        seen: set[Key] = set()
        touched = []
        while stack:
            key = stack.pop()
            ts = self.tasks.get(key)
            if ts is None or key in seen:
                continue
            seen.add(key)
            if key in named and client not in ts.who_wants:
                continue  # not this client's key: holding it is what allows cancelling it
            touched.append(ts)
            if ev.force or ts.who_wants <= {client}:
                for c in ts.who_wants:
                    if c != client or key not in named:
                        self._out.append(ReportCancelled(c, key, "cancelled by the client"))
                    self.clients.get(c, set()).discard(ts)
                ts.who_wants = EMPTY
                stack.extend(d.key for d in ts.dependents)
            else:
                self._unwant(ts, client)
                self.clients.get(client, set()).discard(ts)
        self._tidy(touched)

    def _on_retried(self, ev: KeysRetried) -> None:
        self._out.append(LogEvent([self._client_id(ev.client)],
                                  {"action": "retry", "count": len(ev.keys)}))
        roots = _upstream((self.tasks[k] for k in ev.keys if k in self.tasks), "erred")
        for ts in roots:
            self._go(ts, "released")
        self._activate(ts for ts in roots if self._needed(ts))

    def _on_fire_and_forget(self, ev: FireAndForgetAsked) -> None:
        held = self.clients.setdefault(FIRE_AND_FORGET, set())
        touched = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None or ts.state in ("memory", "erred"):
                continue  # unknown (already forgotten) or already finished: nothing to run
            self._want(ts, FIRE_AND_FORGET)
            held.add(ts)
            touched.append(ts)
        self._activate(ts for ts in touched if ts.state == "released")

    def _unfire(self, ts: TaskState) -> None:
        """A fire-and-forget key finished: stop holding it (released at the end of
        ``handle`` unless a real client wants it)."""
        self._unwant(ts, FIRE_AND_FORGET)
        self.clients.get(FIRE_AND_FORGET, set()).discard(ts)
        self._fired_done.append(ts)

    def _on_forget_watched(self, ev: ForgetWatched) -> None:
        self._forget_watch.update(ev.keys)

    def _on_reset(self, ev: ClusterReset) -> None:
        """``client.restart()``: forget every task and drop every worker in one step (their
        processes are being replaced; the fresh ones join as new workers). Clients stay
        connected; each is told once, and cancels all its futures (dask's semantics).
        Measured durations are kept: the same code usually runs again. Each worker's
        leaving is logged as dask's remove-worker event (after the tasks are forgotten, as
        in dask: none is reported processing or lost)."""
        log = self._log
        cause, now = self._cause, self._now
        for ts in self.tasks.values():
            log.append((ts.key, ts.state, "forgotten", cause, now))
            ts.state = "forgotten"
            if ts.fids:
                self.functions.release(ts.fids)
        watched = [key for key in self._forget_watch if key in self.tasks]
        if watched:
            self._forget_watch.difference_update(watched)
            self._out.append(WatchedKeysForgotten(watched))
        if self._storing:  # scattered bytes in transit: nobody will want them
            self._out.append(DropScattered(list(self._storing)))
            self._storing = {}
        self._undone = {}
        self.tasks = {}
        self.replicated_tasks = set()
        self.replicas_wanted = {}
        self.group_counts = {}
        self.group_prefix = {}
        self._queue = []
        self._no_worker = {}
        self._no_workers_since = None
        self._actors = set()
        self._fired_done = []
        self._went_idle = set()
        self._paused = set()
        self._freed = set()
        said = {"action": "remove-worker", "processing-tasks": [],
                "lost-computed-tasks": [], "lost-scattered-tasks": [],
                "stimulus_id": stimulus_id(cause, now), "expected": True}
        for address, ws in self.workers.items():
            self._room.remove(ws)
            self._out.append(LogEvent([address], dict(said)))
            self._out.append(LogEvent(["all"], {**said, "worker": address}))
        self.workers = {}
        for client, held in self.clients.items():
            held.clear()
            self._out.append(ReportRestarted(client, ev.reason))
