"""``Scheduler.loop`` as plugins use dask's (a tornado ``IOLoop``): ``call_later``,
``add_callback``, ``call_at``, ``add_timeout``/``remove_timeout``, ``time``,
``run_in_executor``, ``add_future``, over the asyncio loop shoal's scheduler runs on.

Owns: those methods' meanings as tornado documents them (a callback that returns an
awaitable has it awaited; what a callback raises is logged, not lost). Must not know the
scheduler: it gets the loop, and spawns nothing it does not log. The scheduler owns its
loop: starting, stopping or closing it through this raises.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("shoal.scheduler")


def _run(callback: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Call ``callback``; await what it returns if awaitable; log what it raises."""
    try:
        done = callback(*args, **kwargs)
    except Exception:
        logger.exception("callback %r on the scheduler's loop failed", callback)
        return
    if inspect.isawaitable(done):
        task = asyncio.ensure_future(done)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("callback on the scheduler's loop failed", exc_info=task.exception())


class LoopView:
    """The scheduler's event loop with tornado ``IOLoop``'s scheduling methods."""

    __slots__ = ("asyncio_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.asyncio_loop = loop  # (tornado's AsyncIOLoop names it so)

    def time(self) -> float:
        """The loop's clock (monotonic seconds), which ``call_at`` deadlines are on."""
        return self.asyncio_loop.time()

    def add_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``callback(*args, **kwargs)`` on the loop soon; safe from any thread."""
        self.asyncio_loop.call_soon_threadsafe(_run, callback, args, kwargs)

    spawn_callback = add_callback

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> asyncio.TimerHandle:
        """Call ``callback`` after ``delay`` seconds; returns a handle for
        ``remove_timeout``."""
        return self.asyncio_loop.call_later(delay, _run, callback, args, kwargs)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                **kwargs: Any) -> asyncio.TimerHandle:
        """Call ``callback`` at ``when`` on the loop's clock (``time()``)."""
        return self.asyncio_loop.call_at(when, _run, callback, args, kwargs)

    def add_timeout(self, deadline: float | datetime.timedelta, callback: Callable[..., Any],
                    *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        """tornado's: ``deadline`` on the loop's clock, or a ``timedelta`` from now."""
        if isinstance(deadline, datetime.timedelta):
            return self.call_later(deadline.total_seconds(), callback, *args, **kwargs)
        return self.call_at(deadline, callback, *args, **kwargs)

    def remove_timeout(self, timeout: asyncio.TimerHandle) -> None:
        timeout.cancel()

    def run_in_executor(self, executor: Any, func: Callable[..., Any],
                        *args: Any) -> asyncio.Future[Any]:
        return self.asyncio_loop.run_in_executor(executor, func, *args)

    def add_future(self, future: Any, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(future)`` on the loop once ``future`` is done."""
        future = asyncio.ensure_future(future) if inspect.isawaitable(future) else future
        future.add_done_callback(
            lambda f: self.asyncio_loop.call_soon_threadsafe(_run, callback, (f,), {}))

    def __getattr__(self, name: str) -> Any:
        if name in ("start", "stop", "close", "run_sync", "make_current", "clear_current",
                    "install", "add_handler", "update_handler", "remove_handler"):
            raise AttributeError(
                f"shoal's scheduler loop has no {name!r}: the scheduler owns its asyncio "
                "loop (scheduler.loop.asyncio_loop) and runs, stops and closes it itself; "
                "schedule work on it with add_callback / call_later")
        raise AttributeError(f"'LoopView' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<scheduler loop {self.asyncio_loop!r}>"

