"""What a nanny does when its worker process exits: the nanny's restart policy.

Owns: reading an exit status (the statuses a worker process declares on its intent pipe,
``shoal.worker.__main__._declared``, are requests; any other is a crash or a kill) and the
failure budget (at most ``MAX_RESTARTS_PER_MINUTE`` unasked restarts a minute of a worker
that had not registered). Pure: no processes, no clock (the time arrives as an argument);
the nanny's supervisor carries the verdicts out.
"""

from __future__ import annotations

import enum

# The statuses of shoal.worker.__main__ (not imported: keeps the nanny's imports light).
EXIT_SCHEDULER_GONE = 3  # closed by its scheduler, or no scheduler within its death timeout
EXIT_PLUGIN_RESTART = 4  # a nanny plugin asked for a fresh process
EXIT_RESTART = 5  # client.restart asked for a fresh process
EXIT_LIFETIME = 6  # retired at the end of its lifetime
EXIT_PRELOAD_FAILED = 7  # a --preload failed
EXIT_MEMORY = 8  # killed past its terminate threshold (a crash, restarted)
# The statuses read as requests: honoured only when the worker declared them first.
_REQUESTS = frozenset({EXIT_SCHEDULER_GONE, EXIT_PLUGIN_RESTART, EXIT_RESTART,
                       EXIT_LIFETIME, EXIT_PRELOAD_FAILED})
# A worker that dies before registering this often in a minute cannot start (a broken
# environment, an unreachable scheduler): its nanny gives up. Deaths after registering are
# not counted, as dask's nanny counts none: a task that kills its workers ends as
# KilledWorker after allowed-failures, and a map of such tasks must not outlast the nanny.
MAX_RESTARTS_PER_MINUTE = 10


class Exit(enum.Enum):
    """Why a worker process exited, as its nanny acts on it."""

    SCHEDULER_GONE = "scheduler gone"  # leave it gone
    PRELOAD_FAILED = "preload failed"  # leave it gone (restarting would fail again)
    LIFETIME_OVER = "lifetime over"  # a fresh one with lifetime_restart, else leave it gone
    RESTART = "restart asked"  # a fresh one at once, not a failure
    PLUGIN_RESTART = "plugin restart"  # a fresh one at once, without the standby
    UNASKED = "unasked"  # a crash or a kill: restarted unless the scheduler retired it


_ASKED = {EXIT_SCHEDULER_GONE: Exit.SCHEDULER_GONE, EXIT_PRELOAD_FAILED: Exit.PRELOAD_FAILED,
          EXIT_LIFETIME: Exit.LIFETIME_OVER, EXIT_RESTART: Exit.RESTART,
          EXIT_PLUGIN_RESTART: Exit.PLUGIN_RESTART}


def read_exit(code: int | None, declared: bytes) -> tuple[Exit, bool]:
    """Why a worker process that exited with ``code``, having declared ``declared`` (the
    bytes it wrote on its intent pipe, in order), exited; and whether ``code`` is a request
    it did not declare (a task calling ``os._exit(5)`` is a crash, not "restart me").

    A process that declared its lifetime over (as its retirement began) and then ended
    otherwise than by a later declared request (killed, crashed, past its memory) ended
    its lifetime: its retirement is what it was doing (dask's lifetime restart brings a
    fresh worker then, though the scheduler, asked, would say the worker was retired)."""
    last = declared[-1] if declared else None
    if code in _REQUESTS and code == last:
        return _ASKED[code], False
    if EXIT_LIFETIME in declared:
        return Exit.LIFETIME_OVER, False
    return Exit.UNASKED, code in _REQUESTS


def failures_within_a_minute(restarts: list[float], now: float) -> list[float]:
    """The times of unasked restarts within the minute before ``now``, ``now`` included;
    more than ``MAX_RESTARTS_PER_MINUTE`` of them before registering: the worker is not
    restarted again."""
    return [t for t in restarts if now - t < 60] + [now]
