"""The one background event loop per process that clients and local clusters share.

Owns: starting it (uvloop when installed) on a daemon thread, running coroutines on it from
user threads with timeouts, and stopping it at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from shoal import _interrupts

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_exiting = False  # set by the exit hook: no new loop is started while the interpreter ends

# How long the exit hook waits for the loop thread to finish its current callback and stop.
STOP_DEADLINE = 5.0

logger = logging.getLogger("shoal")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use.

    Raises:
        RuntimeError: the interpreter is exiting (the loop was stopped for good).
    """
    global _loop, _thread
    with _lock:
        # Running, not ``_thread.is_alive()``: Python 3.11's is_alive, interrupted by a
        # Ctrl-C at the end of its lock call, releases the live thread's lock and marks it
        # ended, and the next call here started a second loop (the client's messages then
        # went to it, away from its connection). is_running reads a flag, in one C call.
        if _loop is not None and _loop.is_running():
            return _loop
        if _exiting:
            raise RuntimeError("shoal's event loop was stopped because the interpreter is exiting")
        loop = new_event_loop()
        # Named, so a thread of the shared loop's executor (to_thread, blocking file work) is
        # told apart from a thread some caller leaked.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(thread_name_prefix="shoal-loop-executor"))
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="shoal-loop", daemon=True)
        thread.start()
        ready.wait()  # ends: the new loop's first step sets it (the thread does nothing before)
        _loop, _thread = loop, thread
        return loop


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the shared loop and wait for its result from a user thread.

    Raises:
        TimeoutError: it did not finish within ``timeout`` seconds (it is cancelled).
        RuntimeError: called from the loop thread itself (that would deadlock).
    """
    if in_loop_thread():
        coro.close()
        raise RuntimeError(
            "a blocking shoal call was made from inside shoal's event loop (for example in a "
            "done-callback); call it from another thread or use the asynchronous API"
        )
    fut = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        _interrupts.blocking_wait(lambda t: _settles(fut, t), timeout)
    except asyncio.CancelledError:  # a coroutine's blocking call: Ctrl-C cancels its task
        fut.cancel()  # ... and so what it waited for
        raise
    try:
        return fut.result(0)  # done, or its time is up: read it at once
    except concurrent.futures.TimeoutError:
        if fut.done():  # the operation's own TimeoutError (one class since Python 3.11)
            return fut.result()  # done: no wait
        fut.cancel()
        raise TimeoutError(f"operation did not finish within {timeout} s") from None


def result_of(fut: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """``fut.result(timeout)``, waited for as every blocking call of the API waits
    (``_interrupts.blocking_wait``: a Ctrl-C reaches a main thread waiting here).

    Raises:
        concurrent.futures.TimeoutError: not done within ``timeout`` seconds.
    """
    _interrupts.blocking_wait(lambda t: _settles(fut, t), timeout)
    return fut.result(0)


def _settles(fut: concurrent.futures.Future[Any], timeout: float | None) -> bool:
    """Whether ``fut`` is done, waiting up to ``timeout`` seconds on its own condition (as
    ``fut.result`` does: ``concurrent.futures.wait`` builds a waiter per call, ~10 µs more
    on every request made from the main thread)."""
    if fut.done():
        return True
    try:
        fut.exception(timeout)
    except concurrent.futures.CancelledError:
        return True
    except concurrent.futures.TimeoutError:
        return fut.done()
    return True


def run_async(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> Any:
    """Run ``coro`` on the shared loop and return an awaitable of its result for the
    caller's own event loop (which is never blocked). From the shared loop itself the
    coroutine is returned as is (wrapped in a timeout when one is given).

    Raises (when awaited):
        TimeoutError: it did not finish within ``timeout`` seconds (it is cancelled).
    """
    if timeout is not None:
        coro = asyncio.wait_for(coro, timeout)
    if in_loop_thread():
        return coro
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        raise RuntimeError(
            "an asynchronous shoal call was made outside a running event loop; await it "
            "inside a coroutine, or use a Client(asynchronous=False)"
        ) from None
    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, get_loop()))


async def finish_within(coro: Coroutine[Any, Any, Any], timeout: float, what: str) -> bool:
    """Run ``coro`` for at most ``timeout`` seconds; True if it finished (its exception, if
    any, logged). Past the timeout it is cancelled but *not* waited for: unlike
    ``asyncio.wait_for``, a step that ignores its cancellation (a wait on a process that
    never ends) cannot hold the caller past the deadline."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait([task], timeout=timeout)  # ends: done or the timeout
    if not done:
        task.cancel()
        logger.warning("%s did not finish within %s s; gave up on it", what, timeout)
        return False
    if not task.cancelled() and task.exception() is not None:
        logger.warning("%s failed: %r", what, task.exception())
    return True


def call_soon(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` on the loop thread soon (thread-safe)."""
    # Once per submission from a user thread (the client's drain): the running loop is
    # taken as is, without ``get_loop``'s lock.
    loop = _loop
    if loop is None or not loop.is_running():
        loop = get_loop()
    if threading.current_thread() is _thread:
        loop.call_soon(fn, *args)
    else:
        loop.call_soon_threadsafe(fn, *args)


_cleanups: list[Any] = []


def at_exit(fn: Any) -> Any:
    """Register ``fn`` to run at interpreter exit, before the loop stops."""
    _cleanups.append(fn)
    return fn


@atexit.register
def _shutdown() -> None:
    """Run the cleanups, then stop the loop thread and wait for it to end.

    Waiting matters: a daemon thread still inside uvloop when the interpreter finalises is woken
    by the stop request after the interpreter state is gone, and crashes the process (exit status
    139) when it tries to take the GIL. Registered with ``atexit`` (not threading's earlier hook)
    so the user's non-daemon threads, which may still use a client, have ended first."""
    global _exiting
    for fn in reversed(_cleanups):
        try:
            fn()
        except Exception:  # the others still run; what failed is said
            logger.exception("shoal: cleanup %r at interpreter exit failed", fn)
    with _lock:
        _exiting = True
        loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return
    if thread is threading.current_thread():  # exit() called from a loop callback
        loop.stop()
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(STOP_DEADLINE)
    if thread.is_alive():
        logger.warning("shoal: the event loop thread did not stop within %s s at interpreter "
                       "exit (a callback is blocking it); the process may not exit cleanly",
                       STOP_DEADLINE)


def run_main(main: Any, prog: str) -> int:
    """Run ``main()`` (a coroutine function) on a new event loop in this thread, as a
    command's main program: 0 when it returns, 1 with the error on stderr for an OSError
    (a port in use, a scheduler not answering)."""
    import sys

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0
