"""Task transitions of :class:`~shoal.scheduler._state.SchedulerState`: every allowed move of
a task between states, and the cascades built from them.

Owns: ``_TRANSITIONS``, the table ``(start, finish) -> method`` (one method per allowed move,
doing exactly that move's bookkeeping), ``_go`` that looks moves up in it, the assignment of
a task to a worker and back, and the cascades that move many tasks at once: activating what
is needed (``_activate``), failing what depends on a failure (``_err``), releasing and
forgetting what nothing needs (``_tidy``, ``_forget``). A move not in the table raises
:class:`InvalidTransition` with the task's story.
Must not know: why a move is made (the event handlers decide), or where a task should run
(``_dispatch``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from sys import intern
from typing import Any

from mypy_extensions import mypyc_attr, trait

from shoal.protocol._errors import KilledWorker, killed_for_memory_message, scheduler_error
from shoal.scheduler._events import (
    ContinueWork,
    ReportErred,
    SendCompute,
    SendFree,
    WatchedKeysForgotten,
)
from shoal.scheduler._state_base import ACTIVE, FIRE_AND_FORGET, STATES, StateBase, task_group
from shoal.scheduler._tasks import (
    _A_BIAS,
    _B_SLOT,
    _C_SLOT,
    EMPTY,
    Key,
    TaskState,
    WorkerState,
    drop_dependent,
    hold,
    payload_of,
    unguess,
    unpack_priority,
)

_KEEPS_INPUTS = ACTIVE | {"erred"}
# Tasks ``_tidy`` looks at per ``handle`` call (a few µs each).
TIDY_STEP = 5_000


@mypyc_attr(native_class=False)  # compiled: an exception stays a Python class
class InvalidTransition(RuntimeError):
    """The scheduler was asked for a move its transition table does not allow (a shoal bug)."""

    def __init__(self, key: Key, start: str, finish: str, story: list[tuple[Any, ...]]) -> None:
        lines = "\n".join(f"  {row}" for row in story[-20:])
        super().__init__(
            f"task {key!r} cannot go from {start!r} to {finish!r}; its story:\n{lines}\n"
            "This is a bug in shoal; please report it with the story above."
        )
        self.key, self.start, self.finish = key, start, finish


@trait  # a mixin of SchedulerState (a trait when compiled: see _state_base)
class Transitions(StateBase):
    """The moves of tasks between states, and the cascades of moves."""

    # Every state change goes through _go, which looks the move up in _TRANSITIONS (at the
    # end of this module): one method per allowed (start, finish) pair, doing exactly the
    # bookkeeping of that move. Event handlers decide which moves to make.

    def _go(self, ts: TaskState, finish: str, **kwargs: Any) -> None:
        move = _TRANSITIONS.get((ts.state, finish))
        if move is None:
            raise InvalidTransition(ts.key, ts.state, finish, self.story(ts.key))
        move(self, ts, **kwargs)

    def _set(self, ts: TaskState, finish: str) -> None:
        """Record a move (counts per task group, story); only transition methods call this."""
        start = ts.state
        key = ts.key
        # The task's group (``task_group``, inline: this runs on every move); its row was
        # made with the task (``count_new``). Both states are in STATES: a move never
        # starts or ends at "forgotten" (``_forget``).
        counts = self.group_counts[key[0] if type(key) is tuple and key else ts.prefix]
        counts[start] -= 1
        counts[finish] += 1
        ts.state = finish
        self._log.append((key, start, finish, self._cause, self._now))

    def _released_waiting(self, ts: TaskState) -> None:
        self._set(ts, "waiting")
        if ts.dependencies:
            ts.waiting_on = {d for d in ts.dependencies if d.state != "memory"} or EMPTY

    def _waiting_queued(self, ts: TaskState, push: bool = True) -> None:
        """Ready to run; ``push=False`` when the caller places it on a worker at once."""
        self._set(ts, "queued")
        if push:
            # The entry shares the task's own ``prio`` (a packed int while every priority
            # packs, see ``_prio_of``): a 56-byte pair per queued task, no key of its own
            # (a packed key plus sequence number was a 48-byte int more). Equal priorities
            # (two clients' graphs) compare the tasks, which compare ``prio``: equal, so
            # either may go first.
            heapq.heappush(self._queue, (ts.prio, ts))

    def _prio_of(self, priority: Any) -> Any:
        """What a task given ``priority`` keeps (``TaskState.prio``): packed while every
        priority packs; the first that does not unpacks every task's for good."""
        if type(priority) is not tuple:
            priority = (priority,)  # a bare number (dask's are tuples): still ordered
        if self._packed_priorities:
            packed = queue_key(priority)
            if packed is not None:
                return packed
            self._unpack_priorities()
        return priority

    def _unpack_priorities(self) -> None:
        """A priority ``queue_key`` cannot pack arrived: every task keeps its tuple from now
        on (one pass over the tasks, once in the scheduler's life), so that priorities
        compare with each other; worker queues of held tasks are ordered by them again."""
        self._packed_priorities = False
        for ts in self.tasks.values():
            if type(ts.prio) is int:
                ts.prio = unpack_priority(ts.prio)
        for ws in self.workers.values():
            if ws.held:
                ws.held = [(ts.prio, seq, ts) for _, seq, ts in ws.held]
                heapq.heapify(ws.held)
        # the queue's entries hold the old ints: take the tuples, in the same order
        self._queue = [(ts.prio, ts) for _, ts in self._queue]
        heapq.heapify(self._queue)

    def _waiting_no_worker(self, ts: TaskState) -> None:
        self._set(ts, "no-worker")
        self._no_worker[ts] = None  # stamped by the next Tick (_no_workers.expire)

    def _no_worker_waiting(self, ts: TaskState) -> None:
        self._no_worker.pop(ts, None)
        self._set(ts, "waiting")

    def _queued_processing(self, ts: TaskState, worker: WorkerState) -> None:
        assert ts.payload is not None
        if ts.rare is not None and ts.rare.held_on is not None:
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
        rare = ts.rare
        if rare is None or rare.workers is None:
            worker.stealable += 1
        ts.processing_on = worker
        ts.run = run = next(self._runs)
        est = self._durations.get(ts.prefix)
        if est is None:  # a guess until the first of its prefix is measured
            est = self.unknown_duration
            guessed = worker.guessed
            guessed[ts.prefix] = guessed.get(ts.prefix, 0.0) + est
        ts.est = est
        if rare is not None and rare.resources is not None:
            free = worker.free
            for r, q in rare.resources.items():
                free[r] = free.get(r, 0.0) - q
        processing = worker.processing
        processing.add(ts)
        if len(processing) - len(worker.long_running) > worker.nthreads:
            # ``worker`` has a backlog: something to steal. Only an assignment makes one (a
            # worker with a free thread is never a victim: ``find_victims``), so a round
            # trip's task, on a worker that ran dry, leaves the next steal scan skipped.
            self._no_victims = False
        worker.occupancy += ts.est
        self._room.touch(worker)
        if ts.dependencies:
            deps = [(d.key, [w.address for w in d.who_has], d.nbytes) for d in ts.dependencies]
            drop = self._read_last(ts, worker)
        else:
            deps, drop = [], ()
        self._out.append(
            SendCompute(
                worker.address, ts.key, payload_of(ts.payload, ts.fids), deps, ts.fids, ts.priority,
                bool(ts.who_wants), ts.prefix, run, drop,
            )
        )

    def _read_last(self, ts: TaskState, worker: WorkerState) -> tuple[Key, ...]:
        """The inputs of ``ts`` held on ``worker`` that nothing else will need once ``ts``
        ends (``Compute.drop``): no client wants them, they are no actor, and every other
        dependent is done or released (not waiting, running, or failed: a failure keeps
        its inputs for replaying it). The worker drops them as ``ts`` succeeds, without
        waiting for the free the scheduler would send after its report. Should one be
        needed after all (wanted or depended on meanwhile), the worker's report of the drop
        makes it lost here and it is recomputed (``_on_finished``). Inputs with more than
        a few dependents (a set, not a tuple) are never looked at: no per-task scan."""
        out: list[Key] = []
        for d in ts.dependencies:
            if d.who_wants or (d.rare is not None and d.rare.actor) or worker not in d.who_has:
                continue
            readers = d.dependents
            if type(readers) is not tuple:
                continue
            for r in readers:
                if r is not ts and r.state in _KEEPS_INPUTS:
                    break
            else:
                out.append(d.key)
        return tuple(out) if out else ()

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
        self._no_worker.pop(ts, None)
        if self.replicas_wanted:  # a broadcast scatter that failed
            self.replicas_wanted.pop(ts, None)
        ts.waiting_on = EMPTY
        if ts.rare is not None and ts.rare.held_on is not None:
            self._unhold(ts)
        self._set(ts, "released")

    def _to_erred(self, ts: TaskState, error: dict[str, Any], tell_worker: bool = True) -> None:
        """Any active (or released) task fails; its worker is told unless it reported it."""
        if ts.state == "processing":
            ws = self._unassign(ts)
            if ws is not None and tell_worker:
                self._out.append(SendFree(ws.address, [ts.key]))
        self._no_worker.pop(ts, None)
        ts.waiting_on = EMPTY
        if ts.held_on is not None:
            self._unhold(ts)
        ts.error = error
        self._set(ts, "erred")
        if FIRE_AND_FORGET in ts.who_wants:
            self._unfire(ts)
        for client in ts.who_wants:
            self._out.append(ReportErred(client, ts.key, error))

    def _memory_released(self, ts: TaskState) -> None:
        frees = self._frees
        if self.replicated_tasks or self.replicas_wanted:  # both empty but for copies
            self.replicated_tasks.discard(ts)
            self.replicas_wanted.pop(ts, None)
        for ws in ts.who_has:
            ws.has_what.discard(ts)
            ws.nbytes -= max(ts.nbytes, 0)
            if frees is None:
                self._out.append(SendFree(ws.address, [ts.key]))
                continue
            keys = frees.get(ws.address)
            if keys is None:  # the cascade's one SendFree to it, where its first free was
                keys = frees[ws.address] = []
                self._out.append(SendFree(ws.address, keys))
            keys.append(ts.key)
        ts.who_has = EMPTY
        self._set(ts, "released")

    def _erred_released(self, ts: TaskState) -> None:
        """Retried: the failure is forgotten, and so are the worker deaths it counted."""
        ts.error = None
        ts.killed_on = ()
        self._set(ts, "released")

    # --- helpers of the transitions ----------------------------------------------------------

    def _store(self, ts: TaskState, ws: WorkerState, nbytes: int, typename: str) -> None:
        self._set(ts, "memory")
        ts.nbytes = nbytes
        ts.typename = intern(typename)  # decoded afresh per message: share one copy
        hold(ts, ws)
        ws.has_what.add(ts)
        ws.nbytes += max(nbytes, 0)
        for dts in ts.dependents:
            if dts.state == "waiting":
                dts.waiting_on.discard(ts)
                if not dts.waiting_on:
                    self._ready(dts)

    def _unassign(self, ts: TaskState) -> WorkerState | None:
        ws = ts.processing_on
        if ws is not None:
            ws.processing.discard(ts)
            if ws.long_running:
                ws.long_running.discard(ts)
            ws.occupancy = max(0.0, ws.occupancy - ts.est)
            if ws.guessed:
                unguess(ws, ts)
            self._room.touch(ws)
            ts.processing_on = None
            ts.started = False
            # Reports count only while it is processing (on ``ws``): the run number is
            # needed no longer, and a held task would keep a 28-byte int for it.
            ts.run = 0
            rare = ts.rare
            if rare is None or rare.workers is None:
                ws.stealable -= 1
            if rare is not None and rare.resources is not None:
                free = ws.free
                for r, q in rare.resources.items():
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
        for ts in todo:  # all released (_upstream's choice): the move itself, as _go would
            self._released_waiting(ts)
        for ts in todo:
            if ts.dependencies:
                bad = next((d for d in ts.dependencies if d.state == "erred"), None)
                if bad is not None and bad.error is not None:
                    failed.append((ts, bad.error))
                    continue
            if ts.payload is None:
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

    def _killed_error(self, ts: TaskState,
                      memory: tuple[int, int, float] | None = None) -> dict[str, Any]:
        """KilledWorker for ``ts``; ``memory``: the last worker's nanny killed it for
        memory (process bytes, limit, terminate fraction), which the message then says."""
        workers = list(ts.killed_on)
        extra: dict[str, Any] = {}
        if memory is not None:
            extra["reason"] = message = killed_for_memory_message(ts.key, workers, *memory)
        else:
            message = str(KilledWorker(ts.key, workers[-1] if workers else None,
                                       self.allowed_failures, workers=workers))
        return scheduler_error(
            "killed",
            "shoal.KilledWorker",
            message,
            ts.key,
            workers=workers,
            allowed_failures=self.allowed_failures,
            worker=workers[-1] if workers else "",
            **extra,
        )

    def _err(self, ts: TaskState, error: dict[str, Any], tell_worker: bool = True) -> None:
        """``ts`` failed with ``error``; everything waiting on it fails with the same cause.
        ``tell_worker=False`` when its worker already knows (it reported the failure)."""
        if ts.state in ACTIVE or ts.state in ("released", "scattering"):
            self.erred_tasks.appendleft((ts.key, error))  # the dashboard's /exceptions
        stack = [ts]
        while stack:
            t = stack.pop()
            if t.state not in ACTIVE and t.state not in ("released", "scattering"):
                continue
            self._go(t, "erred", error=error, tell_worker=tell_worker or t is not ts)
            stack.extend(d for d in t.dependents if d.state in ACTIVE)

    def _want(self, ts: TaskState, client: str) -> None:
        """``client`` wants ``ts`` (``who_wants`` is immutable: replaced, never changed)."""
        wants = ts.who_wants
        if not wants:
            one = self._wanting.get(client)
            if one is None:
                one = self._wanting[client] = frozenset((client,))
            ts.who_wants = one
        elif client not in wants:
            ts.who_wants = wants | {client}

    def _unwant(self, ts: TaskState, client: str) -> None:
        """``client`` no longer wants ``ts``."""
        wants = ts.who_wants
        if client in wants:
            ts.who_wants = EMPTY if len(wants) == 1 else wants - {client}

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
        """Release what nobody needs any more and forget what nothing refers to.

        At most ``TIDY_STEP`` tasks per ``handle`` call: dropping the one future of a
        2M-task array's result forgets its whole lineage, seconds of work. What is left
        waits in ``_tidying`` for :class:`WorkResumed` (the shell feeds it back on a
        later loop step); each task is looked at afresh then, so events in between
        (the key wanted again) are taken into account."""
        stack = self._tidying
        stack.extend(candidates)
        budget = self._tidy_budget
        # Releasing a map's results frees thousands of keys per worker: one SendFree per
        # worker for the cascade, not a command (and a list) per key. Only frees are sent
        # in a cascade, so merging them keeps every worker's order of commands.
        self._frees = {}
        try:
            self._tidy_steps(stack, budget)
        finally:
            self._frees = None
        if stack:
            self._resume_later()

    def _tidy_steps(self, stack: list[TaskState], budget: int) -> None:
        while stack and budget > 0:
            budget -= 1
            ts = stack.pop()
            if ts.state == "forgotten" or self._needed(ts):
                continue
            if ts.state in ACTIVE:
                self._go(ts, "released", tell_worker=True)
                stack.extend(ts.dependencies)
            elif ts.state == "memory":
                self._memory_released(ts)  # the move, as _go would (a release's common case)
            if ts.state in ("released", "erred") and not ts.dependents:
                self._forget(ts)
                stack.extend(ts.dependencies)
        self._tidy_budget = budget

    def _resume_later(self) -> None:
        """Ask the shell for a :class:`WorkResumed` (once until it comes)."""
        if not self._resuming:
            self._resuming = True
            self._out.append(ContinueWork())

    def count_new(self, ts: TaskState) -> None:
        """Count a task just made (released) in its group's row."""
        group = task_group(ts)
        counts = self.group_counts.get(group)
        if counts is None:
            counts = self.group_counts[group] = dict.fromkeys(STATES, 0)
            self.group_prefix[group] = ts.prefix
        counts["released"] += 1

    def _forget(self, ts: TaskState) -> None:
        group = task_group(ts)
        counts = self.group_counts.get(group)
        if counts is not None and ts.state in counts:
            left = counts[ts.state] = counts[ts.state] - 1
            if not left and not any(counts.values()):  # the group's last task: drop its row
                del self.group_counts[group]
                del self.group_prefix[group]
        self._log.append((ts.key, ts.state, "forgotten", self._cause, self._now))
        ts.state = "forgotten"
        self.tasks.pop(ts.key, None)
        if self.spans.by_key:  # some task was submitted in a ``span`` block
            self.spans.forgotten(ts.key)
        if ts.key in self._forget_watch:  # rare: a key with metadata (one set lookup else)
            self._forget_watch.discard(ts.key)
            self._out.append(WatchedKeysForgotten([ts.key]))
        if ts.rare is not None and ts.rare.actor:
            self._actors.discard(ts)
        if ts.fids:
            self.functions.release(ts.fids)
        if self._storing and ts.key in self._storing:
            self._abandon_scatter(ts.key)
        if self.replicas_wanted:  # a scatter that never settled
            self.replicas_wanted.pop(ts, None)
        for dep in ts.dependencies:
            drop_dependent(dep, ts)


# queue_key's layout: see _tasks._A_BIAS.


def queue_key(priority: Any) -> int | None:
    """One int ordered as the priority tuples are (lexicographically), which tasks keep as
    their ``prio`` and the scheduler's queue orders by (entries ``(ts.prio, ts)``): a heap of
    nested tuples, compared item by item, cost about 2 µs per pop of a
    20,000-task queue, ints a third of that. Packs a tuple of one to three ints, the first
    in [-2048, 2048), the second in [0, 2**26 - 1), the third in [0, 2**22 - 1): the
    priorities clients make, ``(-priority, generation, order)``, for priorities, submit
    counts and graph sizes short of those bounds. None for anything else."""
    if type(priority) is not tuple:
        return None
    n = len(priority)
    if n == 3:
        a, b, c = priority
        if (type(a) is int and type(b) is int and type(c) is int and -_A_BIAS <= a < _A_BIAS
                and 0 <= b < _B_SLOT - 1 and 0 <= c < _C_SLOT - 1):
            return (((a + _A_BIAS) * _B_SLOT + b + 1) * _C_SLOT) + c + 1
        return None
    if not 1 <= n <= 2:
        return None
    a = priority[0]
    if type(a) is not int or not -_A_BIAS <= a < _A_BIAS:
        return None
    key = (a + _A_BIAS) * _B_SLOT
    if n == 2:
        b = priority[1]
        if type(b) is not int or not 0 <= b < _B_SLOT - 1:
            return None
        key += b + 1
    return key * _C_SLOT


def _upstream(roots: Iterable[TaskState], state: str) -> list[TaskState]:
    """``roots`` in ``state`` and, transitively, their inputs in that state (no recursion:
    chains of thousands of tasks are common). Roots come out in their order, each followed
    by those of its inputs not out yet: a graph's rows arrive in priority order, and queued
    in that order each push onto the scheduler's queue is O(1), where reversed each sifted
    up the whole heap (log2 of its size in comparisons)."""
    out: list[TaskState] = []
    stack = [ts for ts in roots if ts.state == state]
    stack.reverse()
    seen: set[TaskState] = set()
    while stack:
        ts = stack.pop()
        if ts in seen or ts.state != state:
            continue
        seen.add(ts)
        out.append(ts)
        if ts.dependencies:
            stack.extend([d for d in ts.dependencies if d.state == state])
    return out


_S = Transitions
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


