"""The one way tests wait: poll a condition until it holds, with a deadline (never a bare
sleep that hopes things have settled)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s.

    The default is generous: a condition that holds ends the wait at once, and a loaded CI
    machine (load 15-30 on 2 cores) can take many seconds to start a worker process."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"condition {name} still false after {timeout} s")
        time.sleep(interval)
