"""The two faces of a client operation: each is written once, as a coroutine run on
shoal's loop, and :meth:`Client.sync` gives it to the caller either as a blocking call or as
an awaitable for the caller's own event loop (``asynchronous=True``, per client or per call).

Owns: turning such a coroutine function into a Client method (``two_faced``), and the
already-finished awaitable (``Ready``) that operations which only queue a message (cancel,
retry, log_event...: ``queued``) return to an asynchronous caller; and ``Client.sync``
itself, with ``Client.loop`` (the ``TwoFaces`` mixin of ``Client``). Knows nothing of the
Client beyond its ``sync`` and ``asynchronous``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import inspect
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from shoal import _loop
from shoal.client._timeouts import duration


def two_faced(coro_fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Client method running ``coro_fn(client, *args, **kwargs)`` through
    ``client.sync``: blocking, or an awaitable when the client (or the call's
    ``asynchronous=True``) is asynchronous. Signature and docstring are ``coro_fn``'s."""

    @functools.wraps(coro_fn)
    def method(self: Any, *args: Any, asynchronous: bool | None = None, **kwargs: Any) -> Any:
        return self.sync(coro_fn, self, *args, asynchronous=asynchronous, **kwargs)

    return method


def as_coroutine(work: Any) -> Coroutine[Any, Any, Any]:
    """``work`` (what ``Client.sync``'s function returned) as a coroutine to schedule on
    shoal's loop: a coroutine as is; another awaitable awaited there; a value returned."""
    if asyncio.iscoroutine(work):
        return work
    return _resolve(work)


async def _resolve(work: Any) -> Any:
    return await work if inspect.isawaitable(work) else work


def queued(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Client method for an operation that only queues a message (it never waits):
    ``fn(client, ...)`` runs now, in the caller's thread; an asynchronous caller gets its
    value as a ``Ready`` awaitable, as dask's methods return awaitables."""

    @functools.wraps(fn)
    def method(self: Any, *args: Any, asynchronous: bool | None = None, **kwargs: Any) -> Any:
        return answer(self, fn(self, *args, **kwargs), asynchronous)

    return method


async def _awaiting(work: Any) -> Any:
    return await work


class Ready(collections.abc.Coroutine):  # type: ignore[type-arg]
    """An awaitable that is already done (dask returns coroutines from every method of an
    asynchronous client; not awaiting this one is harmless, unlike a coroutine). It is a
    coroutine as ``asyncio.iscoroutine`` sees it (``send``/``throw``/``close``), so
    ``asyncio.create_task`` takes it as it takes dask's."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator: nothing to wait for

    def send(self, value: Any) -> Any:
        raise StopIteration(self.value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        raise typ if val is None else val

    def close(self) -> None:
        pass


def answer(client: Any, value: Any, asynchronous: bool | None = None) -> Any:
    """``value`` as the caller's face expects it: as is, or ``Ready(value)`` for an
    asynchronous caller (``client`` None: synchronous)."""
    if asynchronous is None:
        asynchronous = client is not None and client.asynchronous
    return Ready(value) if asynchronous else value


class TwoFaces:
    """``Client.sync``, which gives every operation its two faces, and ``Client.loop``,
    where operations run. A mixin of ``Client``."""

    asynchronous: bool

    def sync(self, func: Callable[..., Any], *args: Any, asynchronous: bool | None = None,
             callback_timeout: float | str | None = None, **kwargs: Any) -> Any:
        """Run the coroutine function ``func(*args, **kwargs)`` on shoal's loop (a function
        returning another awaitable, or a plain value, is fine too).

        Every client operation is written once, as a coroutine; this is its two faces (as
        dask's ``Client.sync``): for an asynchronous client (or ``asynchronous=True``) it
        returns an awaitable for the caller's event loop, which is never blocked; otherwise
        it blocks the calling thread until the result is there.

        Raises:
            TimeoutError: not done within ``callback_timeout`` seconds.
            RuntimeError: a blocking call from inside shoal's own loop (it would deadlock).
        """
        if asynchronous is None:
            asynchronous = self.asynchronous
        if callback_timeout is not None and isinstance(callback_timeout, str):  # "10s", as dask's parse_timedelta reads it
            callback_timeout = duration(callback_timeout)
        work = as_coroutine(func(*args, **kwargs))
        if asynchronous:
            # Started now, handed over as a coroutine, as dask's are: programs give them
            # to asyncio.create_task, which takes nothing else.
            return _awaiting(_loop.run_async(work, callback_timeout))
        return _loop.run_sync(work, callback_timeout)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """shoal's event loop, on which every client operation runs (its own thread)."""
        return _loop.get_loop()
