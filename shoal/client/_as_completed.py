"""Iterating futures as they finish (``as_completed``) and waiting for them (``wait``)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from shoal.client._future import Future

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"


class as_completed:
    """Yield futures in the order they finish; more can be ``add``-ed while iterating.

    Args:
        futures: initial futures.
        with_results: yield ``(future, result)`` pairs.
        raise_errors: with ``with_results``, raise a failed future's exception (True) or
            yield ``(future, exception)`` (False).
        timeout: seconds after which iteration raises ``TimeoutError``.
    """

    def __init__(self, futures: Iterable[Future] | None = None, loop: Any = None,
                 with_results: bool = False, raise_errors: bool = True,
                 timeout: float | None = None) -> None:
        self._cond = threading.Condition()
        self._pending: set[Future] = set()
        self._ready: collections.deque[Future] = collections.deque()
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        if futures is not None:
            self.update(futures)

    def add(self, future: Future) -> None:
        """Track one more future (a Future, or the ActorFuture of an actor's method call)."""
        from shoal.client._actor import ActorFuture

        if isinstance(future, ActorFuture):
            with self._cond:
                self._pending.add(future)  # type: ignore[arg-type]
            future._when_done(self._on_done)
            return
        if not isinstance(future, Future):
            raise TypeError(f"as_completed tracks shoal Futures, got {type(future).__name__}")
        with self._cond:
            self._pending.add(future)
        future._client._add_callback(future, self._on_done)

    def update(self, futures: Iterable[Future]) -> None:
        """Track several more futures."""
        for f in futures:
            self.add(f)

    def _on_done(self, future: Future) -> None:
        with self._cond:
            if future in self._pending:
                self._pending.discard(future)
                self._ready.append(future)
                self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._ready)

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        with self._cond:
            return bool(self._ready)

    def clear(self) -> None:
        with self._cond:
            self._pending.clear()
            self._ready.clear()

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[Any]:
        return self

    def _wait_ready(self) -> None:
        with self._cond:
            while not self._ready:
                if not self._pending:
                    raise StopIteration
                remaining = None
                if self._deadline is not None:
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"as_completed: {len(self._pending)} future(s) not done after "
                            f"{self._timeout} s"
                        )
                self._cond.wait(remaining)

    def _emit(self, f: Future) -> Any:
        if not self.with_results:
            return f
        if not isinstance(f, Future):  # an ActorFuture
            try:
                return f, f.result()
            except Exception as exc:
                if self.raise_errors:
                    raise
                return f, (type(exc), exc, exc.__traceback__)
        if f.status == "error" or f.status == "cancelled":
            exc = f.exception() if f.status == "error" else f._client._exception_of(f)
            assert exc is not None
            if self.raise_errors:
                raise exc  # type: ignore[misc]
            return f, (type(exc), exc, exc.__traceback__)  # like sys.exc_info(), as dask does
        return f, f.result()

    def __next__(self) -> Any:
        self._wait_ready()
        with self._cond:
            f = self._ready.popleft()
        return self._emit(f)

    def next_batch(self, block: bool = True) -> list[Any]:
        if block:
            self._wait_ready()
        with self._cond:
            batch = list(self._ready)
            self._ready.clear()
        return [self._emit(f) for f in batch]

    def batches(self) -> Iterator[list[Any]]:
        """Yield lists of all futures that finished since the last batch."""
        while True:
            try:
                yield self.next_batch(block=True)
            except StopIteration:
                return


class DoneAndNotDoneFutures(NamedTuple):
    done: set[Future]
    not_done: set[Future]


def wait(fs: Any, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDoneFutures:
    """Wait until futures finish (``ALL_COMPLETED``, ``FIRST_COMPLETED`` or
    ``FIRST_EXCEPTION``); a single future or a persisted collection is fine too.

    Raises:
        TimeoutError: not done within ``timeout`` seconds.
    """
    from shoal.client._structure import futures_of

    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"unknown return_when {return_when!r}")
    futures = [fs] if isinstance(fs, Future) else futures_of(fs)
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    if return_when == ALL_COMPLETED:
        for f in futures:
            if not f._state.wait(left()):
                raise TimeoutError(f"wait: future {f.key!r} not done after {timeout} s")
    elif futures:
        ac = as_completed(futures, timeout=timeout)
        for f in ac:
            if return_when == FIRST_COMPLETED or f.status == "error":
                break
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, set(futures) - done)
