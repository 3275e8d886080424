"""dask's ``distributed.scheduler.no-workers-timeout``: tasks that no worker can run fail
after waiting that long, rather than hang their users forever.

Owns the decision, made at each ``Tick`` from the time it carries (pure: no clock, no
config; the setting is ``SchedulerState(no_workers_timeout=)``, None: wait forever). Two
waits count, as in dask:

- a task in state no-worker (restrictions no current worker meets, or no running worker
  at all) for longer than the timeout fails with ``NoValidWorkerError``, or with
  ``NoWorkerError`` when the cluster had no running worker the whole time;
- tasks queued on the scheduler (no restriction) fail with ``NoWorkerError`` once the
  cluster has had no running worker (none, or all paused), with tasks waiting, for longer
  than the timeout: all of them, as in dask, however recently each came. The clock then
  restarts, and stops whenever no task waits.

Failures reach the dependents as any failure does. The hot path pays nothing: a task is
stamped here, at the first Tick that finds it in no-worker, not when it moves there; so a
task never fails early, and at most one Tick interval late. Must not know: sockets, the
shell's tick interval.
"""

from __future__ import annotations

from typing import Any

from shoal.protocol._errors import NoValidWorkerError, NoWorkerError, scheduler_error
from shoal.protocol._serialize import dumps
from shoal.scheduler._events import LogEvent
from shoal.scheduler._tasks import TaskState


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` if it is a valid setting (seconds, 0 or more; None for none)."""
    if timeout is not None and not timeout >= 0:
        raise ValueError("distributed.scheduler.no-workers-timeout must be seconds, 0 or more "
                         f"(or None to wait forever), got {timeout!r}")
    return timeout


def expire(state: Any, now: float) -> None:
    """Fail the tasks of ``state`` (a ``SchedulerState`` with ``no_workers_timeout`` set)
    that waited too long for a worker, as of ``now`` (a Tick's time)."""
    timeout: float = state.no_workers_timeout
    no_worker: dict[TaskState, float | None] = state._no_worker
    if len(state.workers) > len(state._paused) or not (no_worker or _queued(state)):
        state._no_workers_since = None
    elif state._no_workers_since is None:
        state._no_workers_since = now
    none_since: float | None = state._no_workers_since
    late: list[tuple[TaskState, float]] = []
    for ts, since in no_worker.items():
        if since is None:
            no_worker[ts] = now  # a value changed, not the keys: the iteration goes on
        elif now - since > timeout:
            late.append((ts, since))
    failed = []
    for ts, since in late:
        if ts.state != "no-worker":  # failed already, as a dependent of another
            continue
        if none_since is None or none_since >= since:  # workers there were, none valid
            error = _no_valid_worker_error(ts, timeout)
        else:
            error = _no_worker_error(ts, timeout)
        state._err(ts, error)
        failed.append(ts.key)
    if none_since is not None and now - none_since > timeout:
        for _, ts in list(state._queue):  # stale entries (tasks gone on) are skipped
            if ts.state == "queued" and ts.held_on is None:
                state._err(ts, _no_worker_error(ts, timeout))
                failed.append(ts.key)
        state._no_workers_since = None  # tasks submitted from now on get their own wait
    if failed:
        state._out.append(LogEvent(["scheduler"], {
            "action": "no-workers-timeout-exceeded", "keys": failed}))


def _queued(state: Any) -> bool:
    """Whether any task is queued: O(task groups), as the queue keeps entries of tasks
    that left it until they are popped, and with no worker running nothing pops them."""
    return any(counts["queued"] for counts in state.group_counts.values())


def _no_valid_worker_error(ts: TaskState, timeout: float) -> dict[str, Any]:
    # shoal's workers= matches addresses, names and hosts alike (dask splits hosts out).
    exc = NoValidWorkerError(ts.key, set(), set(ts.workers or ()), dict(ts.resources or {}),
                             timeout)
    return scheduler_error("no-valid-worker", "shoal.scheduler.NoValidWorkerError", str(exc),
                           ts.key, exception=dumps(exc))


def _no_worker_error(ts: TaskState, timeout: float) -> dict[str, Any]:
    exc = NoWorkerError(ts.key, timeout)
    return scheduler_error("no-worker", "shoal.scheduler.NoWorkerError", str(exc), ts.key,
                           exception=dumps(exc))
