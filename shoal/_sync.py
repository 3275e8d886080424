"""``sync(loop, func, *args, callback_timeout=None, **kwargs)``: dask's helper that runs a
coroutine function on an event loop running in another thread and blocks for its result
(``distributed.sync``), for code that drives a loop of its own from synchronous code.

Owns: handing the call to the loop and waiting for it as every blocking shoal call waits
(``_loop.result_of``: Ctrl-C reaches it, and cancels the coroutine). Must not know: what
the coroutine does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _asyncio_loop(loop: Any) -> asyncio.AbstractEventLoop:
    """The asyncio loop of ``loop``: an asyncio loop, a tornado ``IOLoop`` (its
    ``asyncio_loop``), or None for shoal's own loop (``client.loop``)."""
    if loop is None:
        from shoal import _loop

        return _loop.get_loop()
    inner = getattr(loop, "asyncio_loop", loop)
    if not isinstance(inner, asyncio.AbstractEventLoop):
        raise TypeError(f"sync(loop=) takes an event loop (asyncio's, or a tornado IOLoop), "
                        f"got {type(loop).__name__}")
    return inner


def sync(loop: Any, func: Callable[..., Awaitable[T]], *args: Any,
         callback_timeout: Any = None, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` (a coroutine function) on ``loop``, which runs in
    another thread, and return its result (dask's ``distributed.sync``).

    Args:
        loop: the event loop to run it on (asyncio's or tornado's; ``client.loop`` is
            shoal's).
        callback_timeout: seconds (or ``"5s"``) it may take; None: no limit.

    Raises:
        RuntimeError: the loop is closed ("IOLoop is closed"), not running, or this is its
            own thread (the call would wait for itself).
        TimeoutError: not done within ``callback_timeout`` (the coroutine is cancelled).
        what the coroutine raised.
    """
    from dask.utils import parse_timedelta

    from shoal import _loop

    timeout = parse_timedelta(callback_timeout, "s") if callback_timeout is not None else None
    target = _asyncio_loop(loop)
    if target.is_closed():
        raise RuntimeError("IOLoop is closed")
    if _loop_thread_is_current(target):
        raise RuntimeError("sync() called from thread of running loop")
    if not target.is_running():
        raise RuntimeError("sync() runs a coroutine on a loop running in another thread; "
                           "this loop is not running (start it in a thread, or await "
                           "the coroutine instead)")

    async def call() -> T:
        return await func(*args, **kwargs)

    future = asyncio.run_coroutine_threadsafe(call(), target)
    try:
        return _loop.result_of(future, timeout)
    except concurrent.futures.TimeoutError:
        if future.done() and not future.cancelled():
            return future.result()  # (its own TimeoutError, raised inside, passes through)
        future.cancel()
        raise TimeoutError(f"timed out after {timeout} s.") from None
    except BaseException:  # a Ctrl-C: the coroutine is cancelled too, then re-raised
        future.cancel()
        raise


def _loop_thread_is_current(target: asyncio.AbstractEventLoop) -> bool:
    """Whether this thread is running ``target`` (a coroutine or a callback of it)."""
    try:
        return asyncio.get_running_loop() is target
    except RuntimeError:  # no loop runs in this thread
        return False
