"""Dispatch in :class:`~shoal.scheduler._state.SchedulerState`: when a task whose inputs
are ready goes to which worker.

Owns: readiness (``_ready``), the scheduler's priority queue and its filling of workers with
room (``_fill``), restricted and over-cap tasks held in a worker's queue on the scheduler
(``_hold``, ``_drain_held``), actors, work stealing (``_steal``), and the per-prefix duration
estimates placement relies on. The policies themselves are pure functions elsewhere
(``_placement``, ``_room``, ``_stealing``); this module applies them to the state.
Must not know: how a move is booked (``_transitions``) or which event asked for it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from mypy_extensions import trait

from shoal.scheduler import _placement as placement
from shoal.scheduler._state_base import StateBase
from shoal.scheduler._stealing import find_victims, plan_steals
from shoal.scheduler._tasks import TaskState, WorkerState

# Held tasks whose resources are in use that a drain lets lower-priority ones pass, at most.
_HELD_PASSES = 64
# Queued tasks one ``handle`` call sends to workers, at most (then it asks to go on in a
# later loop step, ``_resume_later``): a report that opens room for thousands (a short
# prefix's estimate falling back after a slow run) sent 5,000 computes in one step, 40-60 ms
# of the scheduler's loop.
FILL_STEP = 1_000
# A measurement this many times above (or below) its prefix's estimate moves the estimate as
# if it were this far only, unless the next one is beyond it too (``_measured``): with the
# average's weight of a fifth, one outlier at most doubles the estimate. Durations spread
# wider than this, but often (a sixth of the runs or more), still average to their mean.
OUTLIER_FACTOR = 6.0
# Measured durations are kept for this many prefixes, least recently measured dropped first
# (every distinct key prefix ever seen would otherwise stay for good).
DURATIONS_KEPT = 4096


@trait  # a mixin of SchedulerState (a trait when compiled: see _state_base)
class Dispatch(StateBase):
    """Readiness, queues, placement and stealing."""

    def _reestimate(self, prefix: str, duration: float) -> None:
        """The first measured duration of a prefix replaces the guess its running tasks were
        assigned with; otherwise the workers that got the first tasks look busy for the
        guessed half second and every queued task goes to the others."""
        self._no_victims = False  # occupancies grow: a worker may now have a backlog
        for ws in self.workers.values():
            if ws.guessed:
                ws.guessed.pop(prefix, None)
            for t in ws.processing:
                if t.prefix == prefix and t not in ws.long_running:
                    ws.occupancy = max(0.0, ws.occupancy - t.est) + duration
                    t.est = duration
                    self._room.touch(ws)
            if ws.held:
                self._freed.add(ws)

    def _measured(self, prefix: str, duration: float) -> None:
        """A task of ``prefix`` computed for ``duration`` seconds: update the estimate.

        A moving average of the measurements (each weighs a fifth), in which a measurement
        more than :data:`OUTLIER_FACTOR` away from the estimate counts as if it were that
        far only: one slow run (a descheduled thread: milliseconds for a µs call) at most
        doubles the estimate, where it raised it a thousandfold and the tasks placed
        meanwhile, booked at that, kept their worker's room until they ran. The next
        measurement beyond the same bound confirms a change: the estimate jumps to the
        nearer of the two (a prefix that became 100x slower is followed in two runs).
        """
        durations = self._durations
        old = durations.pop(prefix, None)  # re-inserted last: the dict is an LRU
        if old is None:
            durations[prefix] = duration
            if len(durations) > DURATIONS_KEPT:
                evicted = next(iter(durations))
                del durations[evicted]
                self._outlying.pop(evicted, None)
            self._reestimate(prefix, duration)
            return
        high = old * OUTLIER_FACTOR
        if duration <= high and duration * OUTLIER_FACTOR >= old:  # (most measurements)
            if self._outlying:
                self._outlying.pop(prefix, None)
            durations[prefix] = 0.8 * old + 0.2 * duration
            return
        outlying = self._outlying
        before = outlying.pop(prefix, None)
        above = duration > high
        if before is not None and (before > high) == above:  # twice beyond: it changed
            durations[prefix] = min(before, duration) if above else max(before, duration)
            return
        outlying[prefix] = duration
        durations[prefix] = 0.8 * old + 0.2 * (high if above else old / OUTLIER_FACTOR)

    def _estimate(self, prefix: str) -> float:
        return self._durations.get(prefix, self.unknown_duration)

    def _ready(self, ts: TaskState) -> None:
        """All inputs are in memory: place the task now, or queue it."""
        workers: Iterable[WorkerState] = self.workers.values()
        if self._paused:
            workers = self._running()
        rare = ts.rare
        if rare is not None:  # (most tasks: one test for the three below)
            if rare.actor:
                self._place_actor(ts)
                return
            if rare.recompute_on is not None and self._place_where_needed(ts, rare.recompute_on):
                return
            if rare.workers is not None or rare.resources is not None:
                self._place_restricted(ts)
                return
        ws = placement.start_time_choice(ts, workers, self.bandwidth) if ts.dependencies else None
        if ws is not None:
            self._go(ts, "queued", push=False)
            if placement.over_cap(ws):  # it waits here for room rather than flood the worker
                self._hold(ts, ws)
                return
            self._go(ts, "processing", worker=ws)
            return
        if ts.state == "waiting":  # every caller's case: the move itself, as _go would
            self._waiting_queued(ts)
        else:
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

    def _place_where_needed(self, ts: TaskState, address: str) -> bool:
        """A key recomputed because ``address`` could not fetch it from its holder (cut off
        from it, the holder alive): queue it on ``address`` if it may run there (running,
        allowed or ``workers=`` loose, its resources offered), so the dependent waiting there gets its input
        without crossing the partition; else the usual placement. One time only."""
        ts.recompute_on = None
        ws = self.workers.get(address)
        may_run = placement.anywhere if ts.loose else placement.allowed
        if ws is None or ws.paused or not may_run(ts, [ws]):
            return False
        self._go(ts, "queued", push=False)
        self._hold(ts, ws)
        return True

    def _hold(self, ts: TaskState, ws: WorkerState) -> None:
        """Queue ``ts`` (state queued) for ``ws`` on the scheduler; sent at the next
        :meth:`_fill` if ``ws`` has room, else when it has."""
        ts.held_on = ws
        ws.held_live += 1
        heapq.heappush(ws.held, (ts.prio, next(self._seq), ts))
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
        pick = self._room.picker()
        budget = FILL_STEP
        heappop = heapq.heappop
        # A fill's tasks mostly share a prefix (a map's): its estimate, looked up once per
        # run of them (only a result's measurement changes it, never a placement).
        prefix, est = None, 0.0
        # ends: each pass pops a task off the queue, or returns
        while queue:
            ts = queue[0][1]  # (ts.prio, ts)
            if ts.state != "queued":
                heappop(queue)
                continue
            if ts.prefix is not prefix:
                prefix = ts.prefix
                est = self._estimate(prefix)
            ws = pick(est)
            if ws is None:
                return
            if not budget:  # the rest in a later step (picked again then: nothing assigned)
                self._resume_later()
                return
            budget -= 1
            heappop(queue)
            self._queued_processing(ts, ws)  # queued (checked above): the move, as _go would

    def _steal(self) -> None:
        """Workers that ran dry (or joined) take tasks queued on busy ones (``_stealing``).
        Only on that change, and once a second (Tick), so a backlog that cannot move (its
        inputs too big to fetch) is not looked at again on every event."""
        workers = self.workers
        idle = [ws for ws in self._went_idle
                if workers.get(ws.address) is ws and not ws.paused
                and len(ws.processing) - len(ws.long_running) < ws.nthreads]
        self._went_idle.clear()
        if idle and not self._queue and not self._no_victims:  # else the queue feeds them
            victims = find_victims(workers.values())
            if not victims:
                # None appears before a task is assigned or re-estimated: until then,
                # workers running dry (a whole cluster's, as a computation ends) skip
                # the scan over every worker.
                self._no_victims = True
                return
            for ts, thief in plan_steals(idle, victims, self.bandwidth):
                self._go(ts, "processing", worker=thief)

    def _running(self) -> list[WorkerState]:
        """The workers new work may go to: all but the paused ones."""
        return [ws for ws in self.workers.values() if not ws.paused]
