"""Futures that follow shoal's public Future interface, completed by the test."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FakeFuture:
    def __init__(self, key: Any, status: str = "pending") -> None:
        self.key = key
        self.status = status
        self._callbacks: list[Callable[[FakeFuture], None]] = []
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self.status != "pending"  # as shoal's Future: 'lost' is done too

    def add_done_callback(self, fn: Callable[[FakeFuture], None]) -> None:
        with self._lock:
            if not self.done():
                self._callbacks.append(fn)
                return
        fn(self)  # like shoal/distributed: a finished future calls back at once

    def complete(self, status: str = "finished") -> None:
        with self._lock:
            self.status = status
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def __repr__(self) -> str:
        return f"<FakeFuture {self.key!r} {self.status}>"
