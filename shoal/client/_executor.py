"""``client.get_executor()``: a ``concurrent.futures.Executor`` running its calls on the
cluster (dask's ``ClientExecutor``), for code written against the standard library's
executor interface.

Owns: the executor and the link from each shoal Future to the ``concurrent.futures.Future``
it hands out (settled from the shoal future's done-callback on shoal's loop; a result too
big to ride inline is fetched there, without blocking the loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from shoal.client import _results

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client
    from shoal.client._future import Future

# What get_executor(**kwargs) passes on to every submit (dask's list).
ALLOWED = frozenset({"pure", "workers", "resources", "allow_other_workers", "retries"})


class ClientExecutor(cf.Executor):
    """Runs ``submit``/``map`` calls on the client's cluster; see ``Client.get_executor``."""

    def __init__(self, client: Client, **kwargs: Any) -> None:
        unknown = set(kwargs) - ALLOWED
        if unknown:
            raise TypeError(f"unsupported arguments to get_executor: {sorted(unknown)}; it "
                            f"takes {sorted(ALLOWED)}")
        self._client = client
        self._kwargs = kwargs
        self._futures: weakref.WeakSet[Future] = weakref.WeakSet()
        self._shutdown = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the cluster; a ``concurrent.futures.Future``.

        Raises:
            RuntimeError: the executor was shut down.
        """
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self._client.submit(fn, *args, **self._kwargs, **kwargs)  # type: ignore[attr-defined]
            self._futures.add(future)
        return _linked(self._client, future)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, **kwargs: Any) -> Iterator[Any]:
        """``fn`` over the iterables (as ``concurrent.futures.Executor.map``); the results
        in order, each waited for within what is left of ``timeout``.

        Raises:
            TypeError: other keyword arguments.
            TimeoutError: a result not ready by the deadline.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments to map(): {sorted(kwargs)}")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, got {chunksize!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        futures = [self.submit(fn, *args) for args in zip(*iterables, strict=False)]

        def results() -> Iterator[Any]:
            try:
                for fut in futures:
                    left = None if deadline is None else max(deadline - time.monotonic(), 0)
                    yield fut.result(left)
            finally:
                for fut in futures:
                    fut.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls from now on; with ``wait`` (default) return once the calls made
        finished, else (or with ``cancel_futures``) cancel them."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            futures = list(self._futures)
        if not futures:
            return
        if wait and not cancel_futures:
            from shoal.client._as_completed import wait as wait_for_all

            wait_for_all(futures)
        else:
            self._client.cancel(futures)


def _linked(client: Client, future: Future) -> cf.Future[Any]:
    """A ``concurrent.futures.Future`` settled as ``future`` settles."""
    out: cf.Future[Any] = cf.Future()

    def settle(fut: Future) -> None:  # on shoal's loop thread
        st = fut._state
        if out.done():
            return
        if st.status == "finished":
            task = asyncio.ensure_future(_results.result_within(client, fut, None))
            task.add_done_callback(lambda t: _deliver(out, t))
        elif st.status == "cancelled":
            out.cancel()
        else:
            out.set_exception(_results.exception_of(fut))

    def cancelled(done: cf.Future[Any]) -> None:  # the caller cancelled: so is the task
        if done.cancelled() and not future.done():
            client.cancel([future])

    future.add_done_callback(settle)
    out.add_done_callback(cancelled)
    return out


def _deliver(out: cf.Future[Any], task: asyncio.Task[Any]) -> None:
    if out.done():
        return
    if task.cancelled():
        out.set_exception(cf.CancelledError("fetching the result was cancelled"))
    elif task.exception() is not None:
        out.set_exception(task.exception())
    else:
        out.set_result(task.result())


def CompatibleExecutor(*args: Any, **kwargs: Any) -> Any:
    """dask's ``distributed.CompatibleExecutor``, which only says where it went: use
    ``client.get_executor()`` (a ``concurrent.futures.Executor`` on the cluster).

    Raises:
        Exception: always, with dask's message (dask raises a plain ``Exception``).
    """
    raise Exception("This has been moved to the Client.get_executor() method")
