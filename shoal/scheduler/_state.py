"""The scheduler's task logic as a pure state machine: ``handle(*events) -> commands``.

Owns: every task's state and the transitions between states, which worker holds or runs
what, who wants which result, lineage for recomputation, retries and worker-death limits.
Must not know: sockets, event loops, threads, clocks or configuration files. Time comes in
events; settings come in the constructor; data bytes stay opaque (``Serialized``).

States: released → waiting → queued | no-worker → processing → memory | erred, and
forgotten when nothing refers to a task any more. Scattered data goes released →
scattering → memory once a worker acknowledges holding it (or erred if none could). Every allowed move is listed in
``_TRANSITIONS``; anything else raises :class:`InvalidTransition` with the task's story.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from shoal.protocol._errors import scheduler_error
from shoal.protocol._serialize import dumps
from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    CloseWorker,
    ClusterReset,
    Command,
    DataCopied,
    DataMissing,
    DataScattered,
    DropScattered,
    Event,
    ExecutionStarted,
    FireAndForgetAsked,
    ForgetFunctions,
    GraphSubmitted,
    HeartbeatReceived,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    ReplicasAdded,
    ReplicasDropped,
    ReportCancelled,
    ReportDone,
    ReportErred,
    ReportRestarted,
    ScatterAcked,
    Seceded,
    SendCompute,
    SendFree,
    SendStore,
    TaskFailed,
    TaskFinished,
    Tick,
    TransferDone,
    WorkerJoined,
    WorkerLeft,
    WorkerPaused,
    WorkerRetiring,
)
from shoal.scheduler._functions import FunctionRefs
from shoal.scheduler._room import RoomIndex
from shoal.scheduler._stealing import plan_steals
from shoal.scheduler._tasks import Key, TaskState, WorkerState

ACTIVE = frozenset({"waiting", "queued", "no-worker", "processing"})
_KEEPS_INPUTS = ACTIVE | {"erred"}
STATES = (
    "released", "waiting", "queued", "no-worker", "processing", "memory", "erred", "scattering",
)
# Held tasks whose resources are in use that a drain lets lower-priority ones pass, at most.
_HELD_PASSES = 64
# The pseudo-client that wants fire-and-forget keys until they finish (dask's name for it).
FIRE_AND_FORGET = "fire-and-forget"
# Measured durations are kept for this many prefixes, least recently measured dropped first
# (every distinct key prefix ever seen would otherwise stay for good).
DURATIONS_KEPT = 4096


class InvalidTransition(RuntimeError):
    """The scheduler was asked for a move its transition table does not allow (a shoal bug)."""

    def __init__(self, key: Key, start: str, finish: str, story: list[tuple[Any, ...]]) -> None:
        lines = "\n".join(f"  {row}" for row in story[-20:])
        super().__init__(
            f"task {key!r} cannot go from {start!r} to {finish!r}; its story:\n{lines}\n"
            "This is a bug in shoal; please report it with the story above."
        )
        self.key, self.start, self.finish = key, start, finish


class EventsFailed(RuntimeError):
    """Handling some events raised (a shoal bug). The state changes made are kept, and
    ``commands`` holds every command decided in the batch: carry them out, or workers and
    clients wait for answers that never come."""

    def __init__(self, failures: list[tuple[Any, BaseException]], commands: list[Command]) -> None:
        lines = "\n".join(
            f"  {type(exc).__name__}: {exc} (handling {event!r})" for event, exc in failures
        )
        super().__init__(f"{len(failures)} scheduler event(s) failed:\n{lines}")
        self.failures = failures
        self.commands = commands


def key_prefix(key: Key) -> str:
    """``('sum-abc123', 0)`` → ``'sum'``; ``'inc-9f2e...'`` → ``'inc'``."""
    name = key[0] if isinstance(key, tuple) and key else key
    words = str(name).split("-")
    # The first word, then the words that follow while they are words (dask's rule): a
    # token or uuid (``inc-270f4f78-3002-...``, hex and digits) ends the name.
    out = words[0]
    for word in words[1:]:
        if not word.isalpha() or (len(word) == 8 and all(c in "abcdef" for c in word)):
            break
        out += "-" + word
    return out or "task"


class SchedulerState:
    """All scheduling decisions. Feed events to :meth:`handle`; carry out what it returns."""

    def __init__(
        self,
        *,
        allowed_failures: int = 3,
        worker_ttl: float = 300.0,
        bandwidth: float = placement.BANDWIDTH,
        task_stream_size: int = 100_000,
        story_size: int = 100_000,
    ) -> None:
        self.tasks: dict[Key, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.clients: dict[str, set[TaskState]] = {}
        self.allowed_failures = allowed_failures
        self.worker_ttl = worker_ttl
        self.bandwidth = bandwidth
        self._queue: list[tuple[Any, int, TaskState]] = []
        self._seq = itertools.count()
        self._no_worker: set[TaskState] = set()
        self._actors: set[TaskState] = set()  # tasks marked actor, until forgotten
        self._went_idle: set[WorkerState] = set()  # workers to find stolen work for
        self._paused: set[WorkerState] = set()  # workers placed nothing (memory)
        self._freed: set[WorkerState] = set()  # workers with held tasks that gained room
        self._room = RoomIndex()  # the least busy worker with room, for queued tasks
        self._storing: dict[Key, _Storing] = {}  # scattered keys awaiting workers' acks
        self.functions = FunctionRefs()  # which function blobs tasks still use
        self._durations: dict[str, float] = {}
        self.prefix_counts: dict[str, dict[str, int]] = {}
        self.task_stream: deque[tuple[Any, ...]] = deque(maxlen=task_stream_size)
        self.task_stream_total = 0
        self.completed_total = 0
        self._log: deque[tuple[Any, ...]] = deque(maxlen=story_size)
        self._out: list[Command] = []
        self._fired_done: list[TaskState] = []  # fire-and-forget keys that just finished
        self._cause = ""
        self._handlers: dict[type, Callable[[Any], None]] = {
            ClientJoined: self._on_client_joined,
            ClientLeft: self._on_client_left,
            GraphSubmitted: self._on_graph,
            KeysReleased: self._on_released,
            KeysCancelled: self._on_cancelled,
            KeysRetried: self._on_retried,
            DataScattered: self._on_scattered,
            ScatterAcked: self._on_scatter_acked,
            WorkerJoined: self._on_worker_joined,
            WorkerLeft: self._on_worker_left,
            WorkerRetiring: self._on_worker_retiring,
            ExecutionStarted: self._on_started,
            TaskFinished: self._on_finished,
            TaskFailed: self._on_failed,
            DataMissing: self._on_missing,
            TransferDone: self._on_transfer,
            HeartbeatReceived: self._on_heartbeat,
            Tick: self._on_tick,
            Seceded: self._on_seceded,
            WorkerPaused: self._on_worker_paused,
            FireAndForgetAsked: self._on_fire_and_forget,
            ClusterReset: self._on_reset,
            DataCopied: self._on_copied,
            ReplicasAdded: self._on_replicas_added,
            ReplicasDropped: self._on_replicas_dropped,
        }

    # --- entry point -------------------------------------------------------------------------

    def handle(self, *events: Event) -> list[Command]:
        """Apply events in order; return the commands they lead to, in order.

        Raises:
            EventsFailed: an event (or the placement after them) raised; the other events
                were applied, and the exception carries every command decided.
        """
        failures: list[tuple[Event | None, BaseException]] = []
        for event in events:
            self._cause = type(event).__name__
            try:
                self._handlers[type(event)](event)
            except Exception as exc:
                failures.append((event, exc))
        try:
            if self._fired_done:
                done, self._fired_done = self._fired_done, []
                self._tidy(done)
            self._fill()
            if self._went_idle:
                self._steal()
        except Exception as exc:
            failures.append((None, exc))
        out, self._out = self._out, []
        if failures:
            raise EventsFailed(failures, out)
        return out

    def story(self, key: Key) -> list[tuple[Any, ...]]:
        """Every recorded transition of ``key``: (key, start, finish, cause)."""
        return [row for row in self._log if row[0] == key]

    # --- transitions ---------------------------------------------------------------------------
    # Every state change goes through _go, which looks the move up in _TRANSITIONS (at the
    # end of this module): one method per allowed (start, finish) pair, doing exactly the
    # bookkeeping of that move. Event handlers decide which moves to make.

    def _go(self, ts: TaskState, finish: str, **kwargs: Any) -> None:
        move = _TRANSITIONS.get((ts.state, finish))
        if move is None:
            raise InvalidTransition(ts.key, ts.state, finish, self.story(ts.key))
        move(self, ts, **kwargs)

    def _set(self, ts: TaskState, finish: str) -> None:
        """Record a move (counts per prefix, story); only transition methods call this."""
        start = ts.state
        counts = self.prefix_counts.get(ts.prefix)
        if counts is None:
            counts = self.prefix_counts[ts.prefix] = dict.fromkeys(STATES, 0)
        if start in counts:
            counts[start] -= 1
        if finish in counts:
            counts[finish] += 1
        ts.state = finish
        self._log.append((ts.key, start, finish, self._cause))

    def _released_waiting(self, ts: TaskState) -> None:
        self._set(ts, "waiting")
        ts.waiting_on = {d for d in ts.dependencies if d.state != "memory"}

    def _waiting_queued(self, ts: TaskState, push: bool = True) -> None:
        """Ready to run; ``push=False`` when the caller places it on a worker at once."""
        self._set(ts, "queued")
        if push:
            heapq.heappush(self._queue, (ts.priority, next(self._seq), ts))

    def _waiting_no_worker(self, ts: TaskState) -> None:
        self._set(ts, "no-worker")
        self._no_worker.add(ts)

    def _no_worker_waiting(self, ts: TaskState) -> None:
        self._no_worker.discard(ts)
        self._set(ts, "waiting")

    def _queued_processing(self, ts: TaskState, worker: WorkerState) -> None:
        assert ts.payload is not None
        if ts.held_on is not None:
            self._unhold(ts)
        self._set(ts, "processing")
        self._assign(ts, worker)

    def _processing_processing(self, ts: TaskState, worker: WorkerState) -> None:
        """Stolen: the worker holding it queued is told to drop it, ``worker`` runs it."""
        victim = self._unassign(ts)
        if victim is not None:
            self._out.append(SendFree(victim.address, [ts.key]))
        self._set(ts, "processing")
        self._assign(ts, worker)

    def _assign(self, ts: TaskState, worker: WorkerState) -> None:
        assert ts.payload is not None
        if ts.workers is None:
            worker.stealable += 1
        ts.processing_on = worker
        ts.est = self._estimate(ts.prefix)
        if ts.resources is not None:
            free = worker.free
            for r, q in ts.resources.items():
                free[r] = free.get(r, 0.0) - q
        worker.processing.add(ts)
        worker.occupancy += ts.est
        self._room.touch(worker)
        deps = [(d.key, [w.address for w in d.who_has], d.nbytes) for d in ts.dependencies]
        self._out.append(
            SendCompute(
                worker.address, ts.key, ts.payload, deps, ts.fids, ts.priority,
                bool(ts.who_wants), ts.prefix,
            )
        )

    def _processing_memory(self, ts: TaskState, worker: WorkerState, nbytes: int, typename: str) -> None:
        self._unassign(ts)
        self._store(ts, worker, nbytes, typename)

    def _released_memory(self, ts: TaskState, worker: WorkerState, nbytes: int, typename: str) -> None:
        """Scattered data replacing a computation: in memory without having been computed."""
        self._store(ts, worker, nbytes, typename)

    def _released_scattering(self, ts: TaskState) -> None:
        """Scattered data on its way to workers; tasks using it wait like for a computation."""
        self._set(ts, "scattering")

    def _scattering_memory(self, ts: TaskState, worker: WorkerState, nbytes: int, typename: str) -> None:
        self._store(ts, worker, nbytes, typename)

    def _processing_released(self, ts: TaskState, tell_worker: bool = True) -> None:
        ws = self._unassign(ts)
        if ws is not None and tell_worker:
            self._out.append(SendFree(ws.address, [ts.key]))
        self._set(ts, "released")

    def _pending_released(self, ts: TaskState, tell_worker: bool = True) -> None:
        """waiting, queued or no-worker back to released (no worker knows of it yet)."""
        self._no_worker.discard(ts)
        ts.waiting_on = set()
        if ts.held_on is not None:
            self._unhold(ts)
        self._set(ts, "released")

    def _to_erred(self, ts: TaskState, error: dict[str, Any], tell_worker: bool = True) -> None:
        """Any active (or released) task fails; its worker is told unless it reported it."""
        if ts.state == "processing":
            ws = self._unassign(ts)
            if ws is not None and tell_worker:
                self._out.append(SendFree(ws.address, [ts.key]))
        self._no_worker.discard(ts)
        ts.waiting_on = set()
        if ts.held_on is not None:
            self._unhold(ts)
        ts.error = error
        self._set(ts, "erred")
        if FIRE_AND_FORGET in ts.who_wants:
            self._unfire(ts)
        for client in ts.who_wants:
            self._out.append(ReportErred(client, ts.key, error))

    def _memory_released(self, ts: TaskState) -> None:
        for ws in ts.who_has:
            ws.has_what.discard(ts)
            ws.nbytes -= max(ts.nbytes, 0)
            self._out.append(SendFree(ws.address, [ts.key]))
        ts.who_has = set()
        self._set(ts, "released")

    def _erred_released(self, ts: TaskState) -> None:
        """Retried: the failure is forgotten, and so are the worker deaths it counted."""
        ts.error = None
        ts.killed_on = []
        ts.suspicious = 0
        self._set(ts, "released")

    # --- helpers of the transitions ----------------------------------------------------------

    def _store(self, ts: TaskState, ws: WorkerState, nbytes: int, typename: str) -> None:
        self._set(ts, "memory")
        ts.nbytes = nbytes
        ts.typename = typename
        ts.who_has.add(ws)
        ws.has_what.add(ts)
        ws.nbytes += max(nbytes, 0)
        for dts in ts.dependents:
            if dts.state == "waiting":
                dts.waiting_on.discard(ts)
                if not dts.waiting_on:
                    self._ready(dts)

    def _reestimate(self, prefix: str, duration: float) -> None:
        """The first measured duration of a prefix replaces the guess its running tasks were
        assigned with; otherwise the workers that got the first tasks look busy for the
        guessed half second and every queued task goes to the others."""
        for ws in self.workers.values():
            for t in ws.processing:
                if t.prefix == prefix and t not in ws.long_running:
                    ws.occupancy = max(0.0, ws.occupancy - t.est) + duration
                    t.est = duration
                    self._room.touch(ws)
            if ws.held:
                self._freed.add(ws)

    def _measured(self, prefix: str, duration: float) -> None:
        """A task of ``prefix`` computed for ``duration`` seconds: update the estimate."""
        durations = self._durations
        old = durations.pop(prefix, None)  # re-inserted last: the dict is an LRU
        durations[prefix] = duration if old is None else 0.8 * old + 0.2 * duration
        if old is None:
            if len(durations) > DURATIONS_KEPT:
                del durations[next(iter(durations))]
            self._reestimate(prefix, duration)

    def _unassign(self, ts: TaskState) -> WorkerState | None:
        ws = ts.processing_on
        if ws is not None:
            ws.processing.discard(ts)
            if ws.long_running:
                ws.long_running.discard(ts)
            ws.occupancy = max(0.0, ws.occupancy - ts.est)
            self._room.touch(ws)
            ts.processing_on = None
            ts.started = False
            if ts.workers is None:
                ws.stealable -= 1
            if ts.resources is not None:
                free = ws.free
                for r, q in ts.resources.items():
                    free[r] = free.get(r, 0.0) + q
            if ws.held:
                self._freed.add(ws)
            if len(ws.processing) - len(ws.long_running) < ws.nthreads:
                self._went_idle.add(ws)
        return ws

    def _activate(self, roots: Iterable[TaskState]) -> None:
        """Released tasks that are needed (and their released inputs) start waiting."""
        todo = _upstream(roots, "released")
        failed: list[tuple[TaskState, dict[str, Any]]] = []
        for ts in todo:
            self._go(ts, "waiting")
        for ts in todo:
            bad = next((d for d in ts.dependencies if d.state == "erred"), None)
            if bad is not None and bad.error is not None:
                failed.append((ts, bad.error))
            elif ts.payload is None:
                failed.append((ts, self._lost_error(ts)))
        for ts, error in failed:
            if ts.state in ACTIVE:
                self._err(ts, error)
        for ts in todo:
            if ts.state == "waiting" and not ts.waiting_on:
                self._ready(ts)

    def _lost_error(self, ts: TaskState) -> dict[str, Any]:
        if ts.killed_on:
            return self._killed_error(ts)
        return scheduler_error(
            "lost-data",
            "shoal.LostDataError",
            f"The data of {ts.key!r} was lost with the worker(s) holding it and cannot be "
            "recomputed (it was scattered, or its task is no longer known). Scatter or "
            "compute it again.",
            ts.key,
        )

    def _killed_error(self, ts: TaskState) -> dict[str, Any]:
        return scheduler_error(
            "killed",
            "shoal.KilledWorker",
            f"Task {ts.key!r} was running on {len(ts.killed_on)} worker(s) that died: "
            f"{', '.join(ts.killed_on)}.",
            ts.key,
            workers=list(ts.killed_on),
            worker=ts.killed_on[-1] if ts.killed_on else "",
        )

    def _estimate(self, prefix: str) -> float:
        return self._durations.get(prefix, placement.UNKNOWN_DURATION)

    def _ready(self, ts: TaskState) -> None:
        """All inputs are in memory: place the task now, or queue it."""
        workers: Iterable[WorkerState] = self.workers.values()
        if self._paused:
            workers = self._running()
        if ts.actor:
            self._place_actor(ts)
            return
        if ts.workers is not None or ts.resources is not None:
            self._place_restricted(ts)
            return
        ws = placement.start_time_choice(ts, workers, self.bandwidth)
        if ws is not None:
            self._go(ts, "queued", push=False)
            if placement.over_cap(ws):  # it waits here for room rather than flood the worker
                self._hold(ts, ws)
                return
            self._go(ts, "processing", worker=ws)
            return
        self._go(ts, "queued")

    def _place_restricted(self, ts: TaskState) -> None:
        """A task with ``workers=`` or ``resources=``: sent to an allowed worker with a free
        slot and its resources unused (with ``allow_other_workers``, to any worker when no
        allowed one has room), else its best allowed worker. It waits in that worker's queue
        on the scheduler, and :meth:`_drain_held` sends it when the worker has room. No
        allowed worker at all: no-worker until one joins."""
        # Paused workers (memory) get nothing new; a task only they may run waits.
        workers = self._running() if self._paused else self.workers.values()
        valid = placement.allowed(ts, workers)
        if not valid and ts.loose:
            valid = placement.anywhere(ts, workers)
        if not valid:
            self._go(ts, "no-worker")
            return
        est = self._estimate(ts.prefix)
        choice = placement.start_time_choice(ts, valid, self.bandwidth)
        ready = [w for w in valid if placement.fits(w, ts, est)]
        if not ready and ts.loose:
            ready = [w for w in placement.anywhere(ts, workers) if placement.fits(w, ts, est)]
        if ready:
            ws = choice if choice in ready else placement.least_held(ready)
        else:
            ws = choice or placement.least_held(valid)
        assert ws is not None
        # Sent from the worker's queue at the end of this batch, in priority order.
        self._go(ts, "queued", push=False)
        self._hold(ts, ws)

    def _hold(self, ts: TaskState, ws: WorkerState) -> None:
        """Queue ``ts`` (state queued) for ``ws`` on the scheduler; sent at the next
        :meth:`_fill` if ``ws`` has room, else when it has."""
        ts.held_on = ws
        ws.held_live += 1
        heapq.heappush(ws.held, (ts.priority, next(self._seq), ts))
        self._freed.add(ws)

    def _unhold(self, ts: TaskState) -> None:
        """``ts`` leaves its worker's queue (sent, released or failed). Its heap entry
        stays until popped or compacted (:meth:`_compact_held`)."""
        ws = ts.held_on
        assert ws is not None
        ws.held_live -= 1
        ts.held_on = None

    @staticmethod
    def _compact_held(ws: WorkerState) -> None:
        """Drop the entries of tasks that left ``ws``'s queue once they are most of it
        (released tasks would otherwise stay referenced until they reach the top)."""
        if len(ws.held) > 2 * ws.held_live + 64:
            ws.held = [e for e in ws.held if e[2].held_on is ws]
            heapq.heapify(ws.held)

    def _drain_held(self, ws: WorkerState) -> None:
        """Send ``ws`` the restricted tasks queued for it while it has room, highest priority
        first. One whose resources are in use lets lower ones with other needs pass."""
        held = ws.held
        passed: list[tuple[Any, int, TaskState]] = []
        while held and len(passed) < _HELD_PASSES:
            ts = held[0][2]
            if ts.state != "queued" or ts.held_on is not ws:
                heapq.heappop(held)
                continue
            est = self._estimate(ts.prefix)
            if ws.paused or not placement.has_room(ws, est):
                break
            entry = heapq.heappop(held)
            if not placement.fits(ws, ts, est):
                passed.append(entry)
                continue
            self._go(ts, "processing", worker=ws)
        for entry in passed:
            heapq.heappush(held, entry)

    def _place_actor(self, ts: TaskState) -> None:
        """Actors are not queued: each goes at once to the worker with the fewest actors."""
        counts: dict[WorkerState, int] = {}
        for t in self._actors:
            if t.processing_on is not None:
                counts[t.processing_on] = counts.get(t.processing_on, 0) + 1
            for holder in t.who_has:
                counts[holder] = counts.get(holder, 0) + 1
        ws = placement.fewest_actors(placement.allowed(ts, self._running()), counts)
        if ws is None:
            self._go(ts, "no-worker")
            return
        self._go(ts, "queued", push=False)
        self._go(ts, "processing", worker=ws)

    def _fill(self) -> None:
        """Hand queued tasks to workers that have room, highest priority first."""
        if self._freed:
            freed, self._freed = self._freed, set()
            for w in freed:
                if self.workers.get(w.address) is w:
                    self._drain_held(w)
        queue = self._queue
        if not queue or not self.workers:
            return
        pick = self._room.pick
        while queue:
            ts = queue[0][2]
            if ts.state != "queued":
                heapq.heappop(queue)
                continue
            ws = pick(self._estimate(ts.prefix))
            if ws is None:
                return
            heapq.heappop(queue)
            self._go(ts, "processing", worker=ws)

    def _steal(self) -> None:
        """Workers that ran dry (or joined) take tasks queued on busy ones (``_stealing``).
        Only on that change, and once a second (Tick), so a backlog that cannot move (its
        inputs too big to fetch) is not looked at again on every event."""
        workers = self.workers
        idle = [ws for ws in self._went_idle
                if workers.get(ws.address) is ws and not ws.paused
                and len(ws.processing) - len(ws.long_running) < ws.nthreads]
        self._went_idle.clear()
        if idle and not self._queue:  # else the queue feeds them
            for ts, thief in plan_steals(idle, workers.values(), self.bandwidth):
                self._go(ts, "processing", worker=thief)

    def _err(self, ts: TaskState, error: dict[str, Any], tell_worker: bool = True) -> None:
        """``ts`` failed with ``error``; everything waiting on it fails with the same cause.
        ``tell_worker=False`` when its worker already knows (it reported the failure)."""
        stack = [ts]
        while stack:
            t = stack.pop()
            if t.state not in ACTIVE and t.state not in ("released", "scattering"):
                continue
            self._go(t, "erred", error=error, tell_worker=tell_worker or t is not ts)
            stack.extend(d for d in t.dependents if d.state in ACTIVE)

    def _needed(self, ts: TaskState) -> bool:
        """Wanted by a client, or an input of a task that is still to run or that failed
        (inputs of failures are kept while the failure is held, for replaying it)."""
        if ts.who_wants:
            return True
        for d in ts.dependents:  # noqa: SIM110 - a plain loop is measurably faster here
            if d.state in _KEEPS_INPUTS:
                return True
        return False

    def _tidy(self, candidates: Iterable[TaskState]) -> None:
        """Release what nobody needs any more and forget what nothing refers to."""
        stack = list(candidates)
        while stack:
            ts = stack.pop()
            if ts.state == "forgotten" or self._needed(ts):
                continue
            if ts.state in ACTIVE:
                self._go(ts, "released", tell_worker=True)
                stack.extend(ts.dependencies)
            elif ts.state == "memory":
                self._go(ts, "released")
            if ts.state in ("released", "erred") and not ts.dependents:
                self._forget(ts)
                stack.extend(ts.dependencies)

    def _forget(self, ts: TaskState) -> None:
        counts = self.prefix_counts.get(ts.prefix)
        if counts is not None and ts.state in counts:
            counts[ts.state] -= 1
            if not any(counts.values()):  # the prefix's last task: drop its row
                del self.prefix_counts[ts.prefix]
        self._log.append((ts.key, ts.state, "forgotten", self._cause))
        ts.state = "forgotten"
        self.tasks.pop(ts.key, None)
        if ts.actor:
            self._actors.discard(ts)
        if ts.fids:
            self.functions.release(ts.fids)
        for dep in ts.dependencies:
            dep.dependents.discard(ts)

    # --- client events --------------------------------------------------------------------------

    def _on_client_joined(self, ev: ClientJoined) -> None:
        self.clients.setdefault(ev.client, set())

    def _on_client_left(self, ev: ClientLeft) -> None:
        held = self.clients.pop(ev.client, set())
        for ts in held:
            ts.who_wants.discard(ev.client)
        self._tidy(held)

    def _on_graph(self, ev: GraphSubmitted) -> None:
        wanted_by = self.clients.setdefault(ev.client, set())
        new: list[TaskState] = []
        rows: list[tuple[TaskState, tuple[Any, ...]]] = []
        tasks = self.tasks
        restrictions = ev.restrictions
        for row in ev.tasks:
            key, payload, deps, fids, priority, retries, workers, prefix = row
            ts = tasks.get(key)
            if ts is None:
                ts = tasks[key] = TaskState(key, prefix or key_prefix(key))
                counts = self.prefix_counts.get(ts.prefix)
                if counts is None:
                    counts = self.prefix_counts[ts.prefix] = dict.fromkeys(STATES, 0)
                counts["released"] += 1
                new.append(ts)
            elif ts.state != "released" or ts.payload is not None:
                continue
            ts.payload = payload
            ts.fids = tuple(fids)
            if fids:
                self.functions.use(fids)
            ts.priority = priority
            ts.retries = retries
            ts.workers = frozenset(workers) if workers else None
            if restrictions:
                need, loose = restrictions.get(key, (None, False))
                ts.resources = dict(need) if need else None
                ts.loose = bool(loose) and ts.workers is not None
            rows.append((ts, deps))
        for key in ev.actors:
            ats = tasks.get(key)
            if ats is not None and ats.state == "released":
                ats.actor = True
                self._actors.add(ats)
        missing: list[tuple[TaskState, Key]] = []
        for ts, deps in rows:
            for dk in deps:
                dts = tasks.get(dk)
                if dts is None:
                    missing.append((ts, dk))
                    continue
                ts.dependencies.add(dts)
                dts.dependents.add(ts)
        wanted_now: list[TaskState] = []
        for key in ev.wanted:
            ts = tasks.get(key)
            if ts is None:
                continue
            wanted_now.append(ts)
            ts.who_wants.add(ev.client)
            wanted_by.add(ts)
            if ts.state == "memory":
                self._out.append(ReportDone(ev.client, key, ts.nbytes, ts.typename, None))
            elif ts.state == "erred" and ts.error is not None:
                self._out.append(ReportErred(ev.client, key, ts.error))
        for ts, dk in missing:
            error = scheduler_error(
                "lost-data",
                "shoal.LostDataError",
                f"lost dependencies: task {ts.key!r} needs {dk!r}, which the cluster no "
                "longer holds (it was released or lost). Keep a reference to its future or "
                "persisted collection while other computations use it.",
                ts.key,
            )
            self._err(ts, error)
        candidates = [ts for ts, _ in rows]
        candidates.extend(t for t in wanted_now if t.state == "released")
        self._activate(ts for ts in candidates if ts.state == "released" and self._needed(ts))
        self._tidy(new)

    def _on_released(self, ev: KeysReleased) -> None:
        held = self.clients.get(ev.client, set())
        touched = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            ts.who_wants.discard(ev.client)
            held.discard(ts)
            touched.append(ts)
        self._tidy(touched)

    def _on_cancelled(self, ev: KeysCancelled) -> None:
        """dask's rule: a task wanted by others only loses this client's interest (unless
        forced); otherwise it is cancelled for all who want it, and so are its dependents
        (by the same rule). A client cancels only keys it holds. The cancelling client settled the futures it named itself; a
        report of those could overtake their resubmission and cancel it."""
        client = ev.client
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
                ts.who_wants = set()
                stack.extend(d.key for d in ts.dependents)
            else:
                ts.who_wants.discard(client)
                self.clients.get(client, set()).discard(ts)
        self._tidy(touched)

    def _on_retried(self, ev: KeysRetried) -> None:
        roots = _upstream((self.tasks[k] for k in ev.keys if k in self.tasks), "erred")
        for ts in roots:
            self._go(ts, "released")
        self._activate(ts for ts in roots if self._needed(ts))

    def _on_scattered(self, ev: DataScattered) -> None:
        """Send each item to a worker (every worker for ``broadcast``); the key is in memory
        when a worker acknowledges it (:meth:`_on_scatter_acked`), not before."""
        pool = list(self.workers.values())
        if ev.workers:
            wanted = set(ev.workers)
            pool = [w for w in pool if w.address in wanted or w.name in wanted] or pool
        held = self.clients.setdefault(ev.client, set())
        for key, nbytes, typename in ev.items:
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = TaskState(key, key_prefix(key))
                self.prefix_counts.setdefault(ts.prefix, dict.fromkeys(STATES, 0))["released"] += 1
            ts.who_wants.add(ev.client)
            held.add(ts)
            if ts.state == "memory":  # the same data (scatter keys hash it), already held
                self._out.append(ReportDone(ev.client, key, ts.nbytes, ts.typename, None))
                continue
            if key in self._storing:  # already on its way: the same ack answers both
                continue
            if not pool:
                self._err(ts, self._lost_error(ts))
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
        pending = self._storing.get(ev.key)
        ts = self.tasks.get(ev.key)
        if pending is None or ev.worker not in pending.waiting:
            if ev.error is None and (ts is None or ws not in ts.who_has):
                self._out.append(SendFree(ev.worker, [ev.key]))  # a copy nobody waits for
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
                ts.who_has.add(ws)
                ws.has_what.add(ts)
                ws.nbytes += max(ts.nbytes, 0)
            return
        if ts.state in ACTIVE:
            # Freeing the task on the worker that now holds the value would drop the value:
            # there the task finishes, and its result replaces the value (same key).
            self._go(ts, "released", tell_worker=ts.processing_on is not ws)
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
            if pending.error is not None:
                self._err(ts, {**pending.error, "key": key, "message": (
                    f"scattered data {key!r} could not be loaded on the worker: "
                    f"{pending.error.get('message', '')}"
                )})
            else:
                self._err(ts, self._lost_error(ts))
        self._out.append(DropScattered([key]))
        self._tidy([ts])

    def _scatters_lost_with(self, address: str) -> None:
        """Workers that died before acknowledging scattered data: send it to another worker
        (the scheduler keeps the bytes until the scatter settles), or settle it."""
        for key, pending in list(self._storing.items()):
            if address not in pending.waiting:
                continue
            pending.waiting.discard(address)
            ts = self.tasks.get(key)
            if not pending.waiting and ts is not None and ts.state == "scattering" and self.workers:
                pool = list(self.workers.values())
                ws = pool[next(self._seq) % len(pool)]
                pending.waiting.add(ws.address)
                self._out.append(SendStore(ws.address, key))
            elif not pending.waiting:
                self._settle_scatter(key, pending)

    # --- worker events --------------------------------------------------------------------------

    def _on_worker_joined(self, ev: WorkerJoined) -> None:
        if ev.address in self.workers:
            return
        ws = self.workers[ev.address] = WorkerState(
            ev.address, ev.name, ev.nthreads, ev.memory_limit, ev.pid, ev.host, ev.now,
            ev.resources,
        )
        self._went_idle.add(ws)
        self._room.add(ws)
        waiting = list(self._no_worker)
        self._no_worker.clear()
        for ts in waiting:
            if ts.state == "no-worker":
                self._go(ts, "waiting")
                self._ready(ts)

    def _on_worker_left(self, ev: WorkerLeft) -> None:
        self._remove_worker(ev.address, ev.reason, crashed=True)

    def _on_worker_retiring(self, ev: WorkerRetiring) -> None:
        self._remove_worker(ev.address, ev.reason, crashed=False)

    def _on_started(self, ev: ExecutionStarted) -> None:
        ws = self.workers.get(ev.worker)
        tasks = self.tasks
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is not None and ts.processing_on is ws is not None:
                ts.started = True

    def _suspects(self, ws: WorkerState) -> list[TaskState]:
        """The tasks ``ws`` was running when it died: those it reported starting. A worker
        may die before its first report leaves (a task that kills it at once): then its
        threads were running its first tasks in priority order, as its executor picks them.
        Tasks only queued there are innocent."""
        suspects = [ts for ts in ws.processing if ts.started]
        if not suspects and ws.processing:
            suspects = heapq.nsmallest(ws.nthreads, ws.processing, key=lambda t: t.priority)
        return suspects

    def _remove_worker(self, address: str, reason: str, crashed: bool) -> None:
        """The worker is gone (``crashed``) or leaving on purpose: its tasks run elsewhere,
        and only a crash counts against the tasks it was running (KilledWorker)."""
        ws = self.workers.pop(address, None)
        if ws is None:
            return
        self._paused.discard(ws)
        self._room.remove(ws)
        recompute: list[TaskState] = []
        suspects = set(self._suspects(ws)) if crashed else set()
        for ts in sorted(ws.processing, key=lambda t: t.priority):
            if ts.processing_on is not ws:  # erred meanwhile, as a dependent of a suspect
                continue
            if ts in suspects:
                ts.suspicious += 1
                ts.killed_on.append(ws.address)
                if ts.suspicious > self.allowed_failures:
                    self._err(ts, self._killed_error(ts), tell_worker=False)
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
            ts.who_has.discard(ws)
            if not ts.who_has and ts.state == "memory":
                self._go(ts, "released")
                (actors if ts.actor else lost).append(ts)
        ws.has_what.clear()
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
                    dts.waiting_on.add(ts)
        self._activate(ts for ts in recompute + lost if self._needed(ts))
        self._tidy(lost + actors)
        if self._storing:  # after the data it held is gone: a scatter settles on what is left
            self._scatters_lost_with(address)

    def _on_finished(self, ev: TaskFinished) -> None:
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if ws is None:
            return
        self._record_stream(ev.key, ts.prefix if ts else key_prefix(ev.key), ev.worker, ev.thread,
                            ev.start, ev.stop, "compute")
        if ts is None or ts.state in ("released", "erred", "forgotten"):
            self._out.append(SendFree(ev.worker, [ev.key]))
            return
        if ts.state == "memory":
            # Not from a holder: a run this worker was told to free (the free is on its way
            # or done), so it drops the value; counting it as a replica would send fetches
            # and tasks to a worker that lacks the input.
            if ws not in ts.who_has:
                self._out.append(SendFree(ev.worker, [ev.key]))
            return
        if ts.processing_on is not ws:
            self._out.append(SendFree(ev.worker, [ev.key]))
            return
        self.completed_total += 1
        if not (ws.long_running and ts in ws.long_running):  # measured when it seceded
            self._measured(ts.prefix, max(ev.stop - ev.start, 0.0))
        self._go(ts, "memory", worker=ws, nbytes=ev.nbytes, typename=ev.typename)
        if FIRE_AND_FORGET in ts.who_wants:
            self._unfire(ts)
        for client in ts.who_wants:
            self._out.append(ReportDone(client, ts.key, ev.nbytes, ev.typename, ev.inline))
        self._tidy([ts, *ts.dependencies])

    def _on_failed(self, ev: TaskFailed) -> None:
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        self._record_stream(ev.key, ts.prefix, ev.worker, ev.thread, ev.start, ev.stop, "error")
        if ts.retries > 0:
            ts.retries -= 1
            self._go(ts, "released", tell_worker=False)
            self._activate([ts])
            return
        self._err(ts, ev.error, tell_worker=False)
        self._tidy([ts, *ts.dependencies])

    def _on_missing(self, ev: DataMissing) -> None:
        ts = self.tasks.get(ev.key)
        # A worker that names no holder has none left to try, and lacks the input itself:
        # if we list it as a holder, that replica is stale (else it is sent back forever).
        holder = self.workers.get(ev.holder or ev.worker)
        if ts is not None and holder is not None and holder in ts.who_has:
            ts.who_has.discard(holder)
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
        for t in lost:
            for d in t.dependents:
                if d.state == "waiting":
                    d.waiting_on.add(t)
        self._activate(t for t in lost + again if self._needed(t))

    def _on_transfer(self, ev: TransferDone) -> None:
        for key in ev.keys[:1]:
            ts = self.tasks.get(key)
            self._record_stream(key, ts.prefix if ts else key_prefix(key), ev.worker, -1,
                                ev.start, ev.stop, "transfer")

    def _on_heartbeat(self, ev: HeartbeatReceived) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            return
        ws.last_seen = ev.now
        ws.memory_process = ev.memory_process
        ws.memory_managed = ev.memory_managed
        ws.memory_spilled = ev.memory_spilled
        ws.cpu = ev.cpu
        ws.executing = ev.executing

    def _running(self) -> list[WorkerState]:
        """The workers new work may go to: all but the paused ones."""
        return [ws for ws in self.workers.values() if not ws.paused]

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
        waiting = list(self._no_worker)
        self._no_worker.clear()
        for ts in waiting:
            if ts.state == "no-worker":
                self._go(ts, "waiting")
                self._ready(ts)

    def _on_seceded(self, ev: Seceded) -> None:
        """The task gave its thread back: it stays on its worker (its result arrives as
        usual) but stops counting against the worker's slots and occupancy, so the worker
        gets more work while it waits (dask's "long-running")."""
        ws = self.workers.get(ev.worker)
        ts = self.tasks.get(ev.key)
        if ws is None or ts is None or ts.processing_on is not ws or ts in ws.long_running:
            return
        ws.long_running.add(ts)
        ts.started = True  # it ran: never stolen, and counted if its worker dies
        ws.occupancy = max(0.0, ws.occupancy - ts.est)
        ts.est = 0.0
        if ws.held:  # its slot is free: tasks waiting for this worker may go
            self._freed.add(ws)
        self._room.touch(ws)
        self._measured(ts.prefix, max(ev.duration, 0.0))

    def _on_fire_and_forget(self, ev: FireAndForgetAsked) -> None:
        held = self.clients.setdefault(FIRE_AND_FORGET, set())
        touched = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None or ts.state in ("memory", "erred"):
                continue  # unknown (already forgotten) or already finished: nothing to run
            ts.who_wants.add(FIRE_AND_FORGET)
            held.add(ts)
            touched.append(ts)
        self._activate(ts for ts in touched if ts.state == "released")

    def _unfire(self, ts: TaskState) -> None:
        """A fire-and-forget key finished: stop holding it (released at the end of
        ``handle`` unless a real client wants it)."""
        ts.who_wants.discard(FIRE_AND_FORGET)
        self.clients.get(FIRE_AND_FORGET, set()).discard(ts)
        self._fired_done.append(ts)

    def _on_reset(self, ev: ClusterReset) -> None:
        """``client.restart()``: forget every task and drop every worker in one step (their
        processes are being replaced; the fresh ones join as new workers). Clients stay
        connected; each is told once, and cancels all its futures (dask's semantics).
        Measured durations are kept: the same code usually runs again."""
        log = self._log
        cause = self._cause
        for ts in self.tasks.values():
            log.append((ts.key, ts.state, "forgotten", cause))
            ts.state = "forgotten"
            if ts.fids:
                self.functions.release(ts.fids)
        if self._storing:  # scattered bytes in transit: nobody will want them
            self._out.append(DropScattered(list(self._storing)))
            self._storing = {}
        self.tasks = {}
        self.prefix_counts = {}
        self._queue = []
        self._no_worker = set()
        self._actors = set()
        self._fired_done = []
        self._went_idle = set()
        self._paused = set()
        self._freed = set()
        for ws in self.workers.values():
            self._room.remove(ws)
        self.workers = {}
        for client, held in self.clients.items():
            held.clear()
            self._out.append(ReportRestarted(client, ev.reason))

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
                ts.who_has.add(ws)
                ws.has_what.add(ts)
                ws.nbytes += max(nbytes, 0)

    def needed(self, ts: TaskState) -> bool:
        """Whether a client or a task to run (or a failure being kept) still needs ``ts``."""
        return self._needed(ts)

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
        if unused:
            self._out.append(ForgetFunctions(unused))
        for ws in list(self.workers.values()):
            if ev.now - ws.last_seen > self.worker_ttl:
                self._out.append(CloseWorker(ws.address, f"no heartbeat for {self.worker_ttl} s"))
                self._on_worker_left(WorkerLeft(ws.address, "heartbeat timeout", ev.now))

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
                ts.who_has.add(ws)
                ws.has_what.add(ts)
                ws.nbytes += max(ts.nbytes, 0)
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
                ts.who_has.discard(ws)
                ws.has_what.discard(ts)
                ws.nbytes -= max(ts.nbytes, 0)
                dropped.append(key)
        if dropped:
            self._out.append(SendFree(ws.address, dropped))

    # --- views -------------------------------------------------------------------------------

    def task_stream_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """The records after ``cursor`` (a count of records ever made), oldest first, at most
        ``limit`` of them, and the cursor to ask next. Records older than the retained ring
        are gone; ``cursor < 0`` asks only for the current position."""
        total = self.task_stream_total
        if cursor < 0:  # "from now on"
            return total, []
        first = max(cursor, total - len(self.task_stream))
        n = max(total - first, 0)
        if limit is not None:
            n = min(n, max(limit, 0))
        skip = len(self.task_stream) - (total - first)
        rows = itertools.islice(self.task_stream, skip, skip + n)
        items = [
            {"key": str(k), "prefix": p, "worker": w, "thread": t, "start": a, "stop": b, "kind": kind}
            for k, p, w, t, a, b, kind in rows
        ]
        return min(first + n, total), items

    def first_failure(self, key: Key) -> TaskState | None:
        """The task whose exception made ``key`` fail (itself or an erred ancestor)."""
        ts = self.tasks.get(key)
        if ts is None or ts.error is None:
            return None
        origin = ts.error.get("key")
        return self.tasks.get(origin, ts)

    def validate(self) -> None:
        """Check every invariant; raises AssertionError naming the task. For tests."""
        assert self._paused == {ws for ws in self.workers.values() if ws.paused}, "paused set"
        for key, ts in self.tasks.items():
            assert ts.key == key, key
            assert ts.state in STATES, (key, ts.state)
            assert not ts.started or ts.state == "processing", key
            if ts.state == "processing":
                assert ts.processing_on is not None, key
                assert ts in ts.processing_on.processing, key
                assert ts.processing_on.address in self.workers, key
            else:
                assert ts.processing_on is None, (key, ts.state)
            if ts.state == "memory":
                assert ts.who_has, key
                for ws in ts.who_has:
                    assert ts in ws.has_what, key
            else:
                assert not ts.who_has, (key, ts.state)
            if ts.state == "waiting":
                assert ts.waiting_on, key
                assert all(d.state != "memory" for d in ts.waiting_on), key
            if ts.state in ACTIVE:
                assert all(d.key in self.tasks for d in ts.dependencies), key
            if ts.state == "erred":
                assert ts.error is not None, key
            if ts.actor and ts.state == "memory":
                assert len(ts.who_has) == 1, (key, "an actor lives on exactly one worker")
            assert ts.actor == (ts in self._actors), (key, "actor set out of date")
            if ts.state == "scattering":
                assert key in self._storing, key
            for dep in ts.dependencies:
                assert ts in dep.dependents, (key, dep.key)
            for client in ts.who_wants:
                assert ts in self.clients.get(client, set()), (key, client)
        for ts in self._actors:
            assert self.tasks.get(ts.key) is ts, (ts.key, "forgotten actor still counted")
        for ws in self.workers.values():
            for ts in ws.processing:
                assert ts.processing_on is ws and ts.state == "processing", ts.key
            assert ws.long_running <= ws.processing, ws.address
            assert ws.stealable == sum(t.workers is None for t in ws.processing), ws
            for r, total in ws.resources.items():
                taken = sum((t.resources or {}).get(r, 0.0) for t in ws.processing)
                assert abs(ws.free.get(r, 0.0) - (total - taken)) < 1e-9, (ws.address, r)
            for _, _, ts in ws.held:
                assert ts.held_on is not ws or ts.state == "queued", (ts.key, ts.state)
            live = {t for _, _, t in ws.held if t.held_on is ws}
            assert ws.held_live == len(live), (ws.address, ws.held_live, len(live))
            for ts in ws.has_what:
                assert ws in ts.who_has, ts.key
        self._room.validate(self.workers)
        used: dict[str, int] = {}
        for ts in self.tasks.values():
            for fid in ts.fids:
                used[fid] = used.get(fid, 0) + 1
        assert used == self.functions.refs, (used, self.functions.refs)
        self.functions.validate()
        counted: dict[str, dict[str, int]] = {}
        for ts in self.tasks.values():
            c = counted.setdefault(ts.prefix, dict.fromkeys(STATES, 0))
            c[ts.state] += 1
        for prefix, counts in self.prefix_counts.items():
            expected = counted.get(prefix, dict.fromkeys(STATES, 0))
            assert counts == expected, (prefix, counts, expected)


def _actor_lost_error(ts: TaskState, worker: str, reason: str) -> dict[str, Any]:
    message = (
        f"Worker holding Actor was lost: actor {ts.key!r} lived on {worker}, which left the "
        f"cluster ({reason}); its state is gone. Create the actor again."
    )
    return scheduler_error(
        "actor-lost", "builtins.RuntimeError", message, ts.key, worker=worker,
        exception=dumps(RuntimeError(message)),
    )


class _Storing:
    """A scatter in flight: the workers sent the data that have not answered yet."""

    __slots__ = ("error", "nbytes", "typename", "waiting")

    def __init__(self, waiting: set[str], nbytes: int, typename: str) -> None:
        self.waiting = waiting
        self.nbytes = nbytes
        self.typename = typename
        self.error: dict[str, Any] | None = None


def _upstream(roots: Iterable[TaskState], state: str) -> list[TaskState]:
    """``roots`` in ``state`` and, transitively, their inputs in that state (no recursion:
    chains of thousands of tasks are common)."""
    out: list[TaskState] = []
    stack = [ts for ts in roots if ts.state == state]
    seen: set[TaskState] = set()
    while stack:
        ts = stack.pop()
        if ts in seen or ts.state != state:
            continue
        seen.add(ts)
        out.append(ts)
        stack.extend(d for d in ts.dependencies if d.state == state)
    return out


_S = SchedulerState
# Every allowed move and what it does. A move not listed here raises InvalidTransition.
_TRANSITIONS: dict[tuple[str, str], Callable[..., None]] = {
    ("released", "waiting"): _S._released_waiting,
    ("released", "memory"): _S._released_memory,
    ("released", "erred"): _S._to_erred,
    ("released", "scattering"): _S._released_scattering,
    ("scattering", "memory"): _S._scattering_memory,
    ("scattering", "erred"): _S._to_erred,
    ("waiting", "queued"): _S._waiting_queued,
    ("waiting", "no-worker"): _S._waiting_no_worker,
    ("waiting", "released"): _S._pending_released,
    ("waiting", "erred"): _S._to_erred,
    ("queued", "processing"): _S._queued_processing,
    ("queued", "released"): _S._pending_released,
    ("queued", "erred"): _S._to_erred,
    ("no-worker", "waiting"): _S._no_worker_waiting,
    ("no-worker", "released"): _S._pending_released,
    ("no-worker", "erred"): _S._to_erred,
    ("processing", "memory"): _S._processing_memory,
    ("processing", "processing"): _S._processing_processing,
    ("processing", "released"): _S._processing_released,
    ("processing", "erred"): _S._to_erred,
    ("memory", "released"): _S._memory_released,
    ("erred", "released"): _S._erred_released,
}
