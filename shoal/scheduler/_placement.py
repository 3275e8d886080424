"""Where a task should run. Pure functions over worker and task records.

Policy: a task whose inputs are big goes to the worker where it would start soonest: the
worker's backlog (occupancy per thread) plus the time to fetch the inputs it lacks at the
cluster's bandwidth (dask's rule), so a busy holder loses work to idle workers once moving the
input is cheaper than waiting. A task whose big inputs are its own does not count the guessed
durations of its never-measured siblings (see :func:`start_time_choice`). Tasks with no (or only tiny) inputs wait in the scheduler's
queue and go to the least-busy worker with a free slot. A worker's "slots" are measured in expected seconds of work, so short
tasks are sent in deep batches (throughput) while long tasks are sent one per thread (no
task waits behind another on a busy worker while a thread elsewhere is idle).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from shoal.scheduler._tasks import TaskState, WorkerState

# Below this many bytes of inputs, a task is placed for balance, not locality.
LOCALITY_BYTES = 256 * 1024
# Expected seconds of queued work per thread a worker may hold beyond its running tasks.
SATURATION_SECONDS = 0.05
# Duration assumed for a task prefix never seen before.
UNKNOWN_DURATION = 0.5
# Upper bound of tasks sent ahead to one worker thread.
MAX_AHEAD_PER_THREAD = 5_000
# Bytes per second between workers when nothing better is known (dask's
# ``distributed.scheduler.bandwidth``).
BANDWIDTH = 100e6


def has_room(ws: WorkerState, est: float) -> bool:
    """May ``ws`` take one more task expected to last ``est`` seconds? Never while it is
    paused (memory past its pause threshold)."""
    return est <= room_left(ws)


def room_left(ws: WorkerState) -> float:
    """The longest task ``ws`` has room for (:func:`has_room` is ``est <= room_left(ws)``):
    ``inf`` while it runs fewer tasks than threads, ``-inf`` while it may take none (paused,
    or :data:`MAX_AHEAD_PER_THREAD` sent ahead), else what :data:`SATURATION_SECONDS` per
    thread leaves beside its occupancy."""
    if ws.paused:
        return -math.inf
    n = len(ws.processing) - len(ws.long_running)  # seceded tasks use no slot
    if n < ws.nthreads:
        return math.inf
    if n >= ws.nthreads * MAX_AHEAD_PER_THREAD:
        return -math.inf
    return ws.nthreads * SATURATION_SECONDS - ws.occupancy


def over_cap(ws: WorkerState) -> bool:
    """Has ``ws`` as many tasks sent ahead as it may ever hold? Locality-placed tasks
    beyond that wait on the scheduler (its queue of held tasks), never flood it."""
    return len(ws.processing) - len(ws.long_running) >= ws.nthreads * MAX_AHEAD_PER_THREAD


def input_bytes_by_worker(ts: TaskState) -> dict[WorkerState, int]:
    out: dict[WorkerState, int] = {}
    for dep in ts.dependencies:
        nb = max(dep.nbytes, 0)
        for ws in dep.who_has:
            out[ws] = out.get(ws, 0) + nb
    return out


def allowed(ts: TaskState, workers: Iterable[WorkerState]) -> list[WorkerState]:
    """The workers ``ts`` may run on: those its ``workers=`` names (by address, name or host,
    as dask matches them) that offer at least the resources it needs."""
    restrict, need = ts.workers, ts.resources
    if restrict is None and need is None:
        return list(workers)
    return [
        ws for ws in workers
        if (restrict is None or ws.address in restrict or ws.name in restrict
            or ws.host in restrict or _named_as_text(ws, restrict))
        and (need is None or offers(ws, need))
    ]


def _named_as_text(ws: WorkerState, restrict: frozenset[str | int]) -> bool:
    """A worker named by an int (LocalCluster's 0, 1, ...) also answers to its name as
    text (``workers=["0"]``, what shoal's names were before): dask would leave such a task
    waiting for a worker that never comes."""
    return isinstance(ws.name, int) and str(ws.name) in restrict


def anywhere(ts: TaskState, workers: Iterable[WorkerState]) -> list[WorkerState]:
    """The workers a loosely restricted task may fall back to: any offering its resources
    (``allow_other_workers`` relaxes ``workers=``, never ``resources=``)."""
    need = ts.resources
    return [ws for ws in workers if need is None or offers(ws, need)]


def offers(ws: WorkerState, need: dict[str, float]) -> bool:
    """Does ``ws`` have at least ``need`` of each resource in total?"""
    total = ws.resources
    return all(total.get(r, 0.0) >= q for r, q in need.items())


def fits(ws: WorkerState, ts: TaskState, est: float) -> bool:
    """May ``ts`` start being sent to ``ws`` now: a slot free and its resources unused?"""
    if not has_room(ws, est):
        return False
    need = ts.resources
    if need is None:
        return True
    free = ws.free
    return all(free.get(r, 0.0) >= q for r, q in need.items())


def least_held(candidates: Iterable[WorkerState]) -> WorkerState | None:
    """Where to queue a restricted task none of ``candidates`` has room for: the one with
    the shortest backlog (tasks sent plus tasks waiting on the scheduler) per thread."""
    best: WorkerState | None = None
    best_load = 0.0
    for ws in candidates:
        load = (len(ws.processing) + len(ws.held)) / ws.nthreads
        if best is None or load < best_load:
            best, best_load = ws, load
    return best


def least_busy(candidates: Iterable[WorkerState]) -> WorkerState | None:
    best: WorkerState | None = None
    best_load = 0.0
    for ws in candidates:
        load = (ws.occupancy + (len(ws.processing) - len(ws.long_running)) * 1e-6) / ws.nthreads
        if best is None or load < best_load:
            best, best_load = ws, load
    return best


def fewest_actors(
    candidates: Iterable[WorkerState], actors: dict[WorkerState, int]
) -> WorkerState | None:
    """For a new actor: the worker holding the fewest actors (``actors`` counts them), the
    least busy among equals. Actors stay where they are built and run their methods on one
    thread per worker, so spreading them is what gives them parallelism (dask's rule)."""
    best: WorkerState | None = None
    best_key: tuple[int, float] = (0, 0.0)
    for ws in candidates:
        key = (actors.get(ws, 0), (ws.occupancy + len(ws.processing) * 1e-6) / ws.nthreads)
        if best is None or key < best_key:
            best, best_key = ws, key
    return best


def start_time_choice(
    ts: TaskState, workers: Iterable[WorkerState], bandwidth: float
) -> WorkerState | None:
    """The worker among ``workers`` (the caller filters restrictions) where ``ts`` would
    start soonest, counting the transfer of the inputs it lacks; None when its inputs are
    too small for locality to matter."""
    if not ts.dependencies:
        return None
    total = 0
    for d in ts.dependencies:
        total += max(d.nbytes, 0)
    if total < LOCALITY_BYTES:
        return None
    held = input_bytes_by_worker(ts)
    if not held:
        return None
    # Inputs read by this task alone, all on one worker: moving them costs a whole
    # transfer per task that would otherwise move nothing. The guessed durations of this
    # task's own never-measured prefix (its siblings, placed in the same batch) are then
    # no reason to move it: the batch would pile up guesses on each holder and send a
    # share of the inputs across (a sum over persisted chunks moved a third of them).
    # Measured durations, other prefixes' guesses, shared inputs (a replica serves every
    # reader there) and inputs spread over workers (they move wherever it runs, and the
    # guesses spread the batch) keep the start-time rule.
    own = ts.prefix
    one_off = len(held) == 1 and all(len(d.dependents) <= 1 for d in ts.dependencies)
    best: WorkerState | None = None
    best_key = (0.0, 0)
    for ws in workers:
        have = held.get(ws, 0)
        busy = ws.occupancy
        if one_off and ws.guessed:
            busy -= ws.guessed.get(own, 0.0)
        key = (busy / ws.nthreads + (total - have) / bandwidth, -have)
        if best is None or key < best_key:
            best, best_key = ws, key
    return best


def missing_bytes(ts: TaskState, ws: WorkerState) -> int:
    """Input bytes ``ws`` would have to fetch to run ``ts``."""
    out = 0
    for d in ts.dependencies:
        if ws not in d.who_has:
            out += max(d.nbytes, 0)
    return out


def no_worker_reason(ts: TaskState, workers: Iterable[WorkerState]) -> str:
    """Why ``ts`` (in state no-worker) cannot run on any of ``workers``: for the user."""
    pool = list(workers)
    wants = []
    if ts.workers is not None:
        wants.append(f"workers={sorted(ts.workers)!r}")
    if ts.resources is not None:
        wants.append(f"resources={ts.resources!r}")
    offered = {ws.address: ws.resources for ws in pool}
    return (
        f"task {ts.key!r} is waiting in state 'no-worker': it needs {' and '.join(wants) or 'a worker'}, "
        f"and none of the {len(pool)} worker(s) qualifies (their resources: {offered!r}). "
        "Start a worker that does (e.g. shoal worker --resources \"GPU=1\"), or submit it "
        "without that restriction."
    )
