"""How much of one loop turn the scheduler gives to its workers' reports.

Owns: the time budget of a loop turn (:class:`Turn`) and the round-robin over workers whose
reports wait for a turn (used by ``_server_messages``). uvloop runs every ready read and
then every ready callback before it looks at timers and new I/O again; workers running a
large graph of small tasks report thousands of finished tasks a second, and handling all
that arrived in one turn held the loop for 100-160 ms at a time (a million-task array: four
or five worker reads of 30-50 ms each in one turn) while the dashboard, heartbeats, the
client and timers waited. Reports past the budget wait for the next turn, in order per
worker, each waiting worker a step at a time in turn.

Must not know: what a report means (the state machine's), sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# Seconds of a loop turn for workers' reports: past it, reports wait for the next turn (a
# step already begun ends first, so a turn's share is this plus one step).
TURN_BUDGET = 0.02


class Turn:
    """The time taken in the current loop turn by those who ask: the window opens at the
    first :meth:`spent` of a turn and closes at the start of the next turn's callbacks (a
    callback queued during a turn runs in the next one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start: float | None = None

    def spent(self) -> float:
        now = self._clock()
        if self._start is None:
            self._start = now
            asyncio.get_running_loop().call_soon(self._close)
            return 0.0
        return now - self._start

    def over(self) -> bool:
        """Whether this turn's budget for reports is spent."""
        return self.spent() > TURN_BUDGET

    def _close(self) -> None:
        self._start = None
