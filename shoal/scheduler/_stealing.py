"""Work stealing: which tasks queued on busy workers should move to idle ones. A pure policy
over worker and task records; :class:`SchedulerState` carries the moves out.

A worker holds tasks beyond its threads when locality placed them there or when they were
sent ahead in a batch. When another worker runs dry, tasks the busy worker would run last
move to it while that makes them start sooner, counting the transfer of their inputs.

Safe by construction: only tasks the victim has not reported starting are taken, and the
victim is told to drop each one. If it had started or even finished it meanwhile (its
report crossing the steal), it drops the task or its result, and the thief's run is the one
that counts: at worst some work is done twice, never a result lost or reported twice.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from shoal.scheduler._placement import missing_bytes
from shoal.scheduler._tasks import TaskState, WorkerState

# A worker's backlog (expected seconds of queued work per thread) below which nothing is
# stolen from it: short tasks sent ahead in batches are there for throughput, not by mistake.
MIN_BACKLOG = 0.2


def _load(ws: WorkerState) -> float:
    return ws.occupancy / ws.nthreads


def find_victims(workers: Iterable[WorkerState]) -> list[WorkerState]:
    """The workers tasks may be stolen from: more tasks than threads, some of them free to
    move, and more than :data:`MIN_BACKLOG` of expected work per thread. A worker becomes
    one only when a task is assigned to it or its tasks' expected durations change."""
    return [
        ws for ws in workers
        if ws.stealable and len(ws.processing) - len(ws.long_running) > ws.nthreads
        and _load(ws) > MIN_BACKLOG
    ]


def plan_steals(
    idle: list[WorkerState], victims: list[WorkerState], bandwidth: float
) -> list[tuple[TaskState, WorkerState]]:
    """(task, thief) moves from the busy ``victims`` (:func:`find_victims`) to the
    ``idle`` workers that balance their backlogs. Tasks restricted with ``workers=`` or
    holding ``resources=`` stay where they are (the scheduler sends those only where they
    fit)."""
    if not idle or not victims:
        return []
    load = {ws: _load(ws) for ws in idle + victims}
    moves: list[tuple[TaskState, WorkerState]] = []
    for victim in sorted(victims, key=load.__getitem__, reverse=True):
        # The tasks it would run last go first; its threads keep enough to stay busy.
        spare = len(victim.processing) - len(victim.long_running) - victim.nthreads
        queued = heapq.nlargest(
            spare,
            (t for t in victim.processing
             if t.workers is None and t.resources is None and not t.started and not t.actor),
            key=lambda t: t.prio,
        )
        for ts in queued:
            thief = min(idle, key=load.__getitem__)
            cost = missing_bytes(ts, thief) / bandwidth
            start_here = load[victim] - ts.est / victim.nthreads
            start_there = load[thief] + cost
            if start_there >= start_here:
                break
            moves.append((ts, thief))
            load[victim] -= ts.est / victim.nthreads
            load[thief] += ts.est / thief.nthreads
    return moves
