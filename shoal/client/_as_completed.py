"""Iterating futures as they finish (``as_completed``, also ``async for``) and waiting for
them (``wait``, awaitable with an asynchronous client)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from shoal import _gc, _interrupts
from shoal.client._faces import answer
from shoal.client._future import Future, FutureState, settled
from shoal.client._results import exception_of, failure_of, when_done
from shoal.client._timeouts import duration

logger = logging.getLogger("shoal.client")

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
                 timeout: float | str | None = None) -> None:
        timeout = duration(timeout)
        self._cond = threading.Condition()
        # id(future) -> times it was added and not yet done. Counted, as dask's: a future
        # given twice (or a map's futures of repeated pure inputs) is yielded each time.
        self._pending: collections.Counter[int] = collections.Counter()
        self._tracked: dict[int, Any] = {}  # id -> the future: keeps each id its future's
        self._ready: collections.deque[Future] = collections.deque()
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        # Coroutines of ``async for`` waiting for a future to finish: (their loop, waker).
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        if futures is not None:
            self.update(futures)

    def add(self, future: Future) -> None:
        """Track one more future (a Future, or the ActorFuture of an actor's method call)."""
        from shoal.client._actor import ActorFuture

        if isinstance(future, ActorFuture):
            with self._cond:
                self._track(future)
            future._when_done(self._on_done)
            return
        if not isinstance(future, Future):
            raise TypeError(f"as_completed tracks shoal Futures, got {type(future).__name__}")
        with self._cond:
            self._track(future)
        # (not through the future's client: a released future has none, and still ends)
        when_done(future, self._on_done)  # one call per add

    def _track(self, future: Any) -> None:
        self._pending[id(future)] += 1
        self._tracked[id(future)] = future

    def update(self, futures: Iterable[Future]) -> None:
        """Track several more futures."""
        for f in futures:
            self.add(f)

    def _on_done(self, future: Future) -> None:
        with self._cond:
            if self._tracked.get(id(future)) is not future:  # cleared since it was added
                return
            self._pending[id(future)] -= 1
            if not self._pending[id(future)]:
                del self._pending[id(future)], self._tracked[id(future)]
            self._ready.append(future)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            if waiter.done():  # its ``async for`` was cancelled or timed out
                continue
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop is closed: nobody is left to wake
                logger.debug("as_completed: a waiter's event loop closed before it was woken")

    def count(self) -> int:
        with self._cond:
            return self._pending.total() + len(self._ready)

    def is_empty(self) -> bool:
        return self.count() == 0

    def has_ready(self) -> bool:
        with self._cond:
            return bool(self._ready)

    def clear(self) -> None:
        with self._cond:
            self._pending.clear()
            self._tracked.clear()
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
                            f"as_completed: {self._pending.total()} future(s) not done after "
                            f"{self._timeout} s"
                        )
                _interrupts.blocking_wait(self._cond.wait, remaining)

    def _emit(self, f: Future) -> Any:
        if not self.with_results:
            return f
        # ends: ``f`` is done; fetching a value on a worker ends with that fetch or with
        # the client's connection (a lost one settles every future)
        return self._failed(f) or (f, f.result())

    def _failed(self, f: Any) -> tuple[Any, Any] | None:
        """A failed future as ``(future, exc_info)`` (dask's ``sys.exc_info()`` form), or its
        exception raised with ``raise_errors``; a cancelled one as ``(future,
        CancelledError)``, as dask's; None if it succeeded."""
        exc: BaseException | None = None
        if not isinstance(f, Future):  # an ActorFuture (done): its result() raises its failure
            try:
                f.result(timeout=0)  # ends at once: ``f`` is done (0: no wait if not)
            except Exception as failure:  # not swallowed: returned or raised below
                exc = failure
        elif f.status == "error" or f.status == "cancelled":
            exc = failure_of(f, "exception") if f.status == "error" else exception_of(f)
        if exc is None:
            return None
        if isinstance(f, Future) and f.status == "cancelled":
            return f, exc  # as dask: the CancelledError itself, never raised here
        if self.raise_errors:
            raise exc
        return f, (type(exc), exc, exc.__traceback__)

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        """``async for``: the next future to finish (with ``with_results``, with its result),
        waiting without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._ready:
                    f = self._ready.popleft()
                    break
                if not self._pending:
                    raise StopAsyncIteration
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            remaining = None
            if self._deadline is not None:
                remaining = max(0.0, self._deadline - time.monotonic())
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                raise TimeoutError(
                    f"as_completed: {self._pending.total()} future(s) not done after {self._timeout} s"
                ) from None
        if not self.with_results:
            return f
        return self._failed(f) or (f, await f)

    def __next__(self) -> Any:
        self._wait_ready()
        with self._cond:
            f = self._ready.popleft()
        return self._emit(f)

    next = __next__  # dask's name for it

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


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class DoneAndNotDoneFutures(NamedTuple):
    done: set[Future]
    not_done: set[Future]


def wait(fs: Any, timeout: float | str | None = None, return_when: str = ALL_COMPLETED) -> Any:
    """Wait until futures finish (``ALL_COMPLETED``, ``FIRST_COMPLETED`` or
    ``FIRST_EXCEPTION``); a single future or a persisted collection is fine too. Returns
    ``(done, not_done)`` sets; with an asynchronous client, an awaitable of them.

    Raises:
        TimeoutError: not done within ``timeout`` seconds.
        NotImplementedError: ``return_when`` is none of those (dask's type).
        concurrent.futures.CancelledError: a future done was cancelled (as dask's
            ``FuturesCancelledError``).
    """
    from shoal.client._structure import futures_of

    timeout = duration(timeout)  # "10s" too, as dask's
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise NotImplementedError(  # dask's type
            f"unknown return_when {return_when!r}; use ALL_COMPLETED, FIRST_COMPLETED or "
            "FIRST_EXCEPTION")
    futures = [fs] if isinstance(fs, Future) else futures_of(fs)
    _gc.settle()  # a million futures' list: frozen now in bulk mode, not walked later
    client = next((f._client for f in futures if f._client is not None), None)
    if client is None:  # none given, or all released: in the default client's face
        client = _default_client()
        if client is None or not futures:  # (released, with their client closed: cancelled)
            got = _done_and_not_done(futures)
            _raise_cancelled(got.done)
            return answer(client, got)
        # else released ones are waited for as any: their keys' states end cancelled
    if return_when == ALL_COMPLETED and not client.asynchronous:
        # A blocking caller waits on its own thread's events: no loop wake-ups.
        deadline = None if timeout is None else time.monotonic() + timeout
        for f in futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not f._state.wait(left):
                raise TimeoutError(f"wait: future {f.key!r} not done after {timeout} s")
        _raise_cancelled(futures)
        return DoneAndNotDoneFutures(set(futures), set())  # all done: nothing to sort
    # Checked here, not in _wait: a CancelledError leaving shoal's loop would turn into
    # asyncio's (a BaseException) on the way.
    got = client.sync(_wait, futures, timeout, return_when)
    if inspect.isawaitable(got):
        return _checked(got)
    _raise_cancelled(got.done)
    return got


async def _checked(waiting: Any) -> DoneAndNotDoneFutures:
    got: DoneAndNotDoneFutures = await waiting
    _raise_cancelled(got.done)
    return got


def _raise_cancelled(done: Iterable[Future]) -> None:
    """As dask's ``wait``: a cancelled future among those done is an error, not a result.

    Raises:
        concurrent.futures.CancelledError: naming how many were cancelled and some keys.
    """
    cancelled = [f.key for f in done if f._state.status == "cancelled"]
    if cancelled:
        shown = ", ".join(repr(k) for k in cancelled[:5]) + (", ..." if len(cancelled) > 5 else "")
        raise concurrent.futures.CancelledError(
            f"wait: {len(cancelled)} future(s) cancelled: {shown} (by cancel(), restart() or "
            "their client closing); submit them again or leave them out")


async def _wait(futures: list[Future], timeout: float | None, return_when: str
                ) -> DoneAndNotDoneFutures:
    first: Callable[[FutureState], bool] | None = None
    if return_when == FIRST_COMPLETED:
        first = _any
    elif return_when == FIRST_EXCEPTION:
        first = _failed
    try:
        await asyncio.wait_for(settled((f._state for f in futures), first), timeout)
    except TimeoutError:
        left = sum(not f.done() for f in futures)
        raise TimeoutError(f"wait: {left} future(s) not done after {timeout} s") from None
    return _done_and_not_done(futures)


def _default_client() -> Any:
    """The newest open client, if the client module is loaded and one is open (else None,
    which ``answer`` takes as synchronous)."""
    from shoal.client._current import newest_client

    return newest_client()


def _any(st: FutureState) -> bool:
    return True


def _failed(st: FutureState) -> bool:
    return st.status == "error"


def _done_and_not_done(futures: list[Future]) -> DoneAndNotDoneFutures:
    done = {f for f in futures if f.done()}
    result = DoneAndNotDoneFutures(done, set(futures) - done)
    _gc.settle()
    return result
