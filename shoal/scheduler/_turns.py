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


# A step shorter than this does not start counting a turn: a lone report (a round trip's)
# costs no callback; a large graph's steps take milliseconds each.
SMALL_STEP = 0.001


class Turn:
    """The time taken in the current loop turn by the steps of reports: counting starts at
    the first step of a turn that was not small (or at :meth:`open`) and stops at the start
    of the next turn's callbacks (a callback queued during a turn runs in the next one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.now = clock
        self._start: float | None = None

    def open(self, since: float) -> None:
        """Count this turn's time from ``since`` (unless it is counted already)."""
        if self._start is None:
            self._start = since
            asyncio.get_running_loop().call_soon(self._close)

    def took(self, since: float) -> None:
        """A step that began at ``since`` has ended: count from it unless it was small."""
        if self._start is None and self.now() - since > SMALL_STEP:
            self.open(since)

    def over(self) -> bool:
        """Whether this turn's budget for reports is spent."""
        start = self._start
        return start is not None and self.now() - start > TURN_BUDGET

    def _close(self) -> None:
        self._start = None
