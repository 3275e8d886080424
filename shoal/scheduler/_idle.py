"""The scheduler's idle timeout (dask's ``distributed.scheduler.idle-timeout``, ``shoal
scheduler --idle-timeout``): a scheduler with no work for that long closes itself.

Owns the decision only, from facts the shell passes in at each tick (the time, whether any
task waits or runs, a mark that changes whenever work happened): pure, no clock, no config.
As in dask, connected clients do not count as work: an idle client does not keep the
scheduler up; a task waiting, queued, without a worker, or running does, and so does any
activity (a finished task, a graph or client arriving) since the last tick.
"""

from __future__ import annotations

from typing import Any


def is_busy(state: Any) -> bool:
    """Whether any task of ``state`` (a ``SchedulerState``) waits, is queued, has no worker,
    or runs, or a graph is still arriving: O(task groups)."""
    if state._arriving:
        return True
    for counts in state.group_counts.values():
        if counts["waiting"] or counts["queued"] or counts["no-worker"] or counts["processing"]:
            return True
    return False


def activity_mark(state: Any) -> tuple[int, int, int]:
    """Changes whenever work happened between two ticks (tasks finished, added or
    forgotten, clients came or went), even when none was running at either tick."""
    return (state.completed_total, len(state.tasks), len(state.clients))


class IdleTimeout:
    """Whether the scheduler has been idle for ``timeout`` seconds (None: never closes).
    ``timeout`` may change between two observations (dask's ``Scheduler.idle_timeout`` is
    read at each check)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.idle_since: float | None = None
        self._mark: Any = None

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, timeout: float | None) -> None:
        """Raises:
            ValueError: not positive (None is no timeout)."""
        if timeout is not None and timeout <= 0:
            raise ValueError(f"the idle timeout must be positive (or None for none), got "
                             f"{timeout!r}")
        self._timeout = timeout

    def observe(self, now: float, busy: bool, mark: Any) -> bool:
        """Note the scheduler's state at ``now``; True once it has been idle (not busy, the
        same mark) for the timeout."""
        if self.timeout is None:
            return False
        if busy or mark != self._mark:
            self._mark = mark
            self.idle_since = None if busy else now
            return False
        if self.idle_since is None:
            self.idle_since = now
            return False
        return now - self.idle_since >= self.timeout
