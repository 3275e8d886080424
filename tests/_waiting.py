"""The one way tests wait: poll a condition until it holds, with a deadline (never a bare
sleep that hopes things have settled)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 10, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"condition {name} still false after {timeout} s")
        time.sleep(interval)
