"""The life of a server started by hand for the user's event loop (the public ``Scheduler``,
``Worker`` and ``Nanny`` of ``_servers.py``): one start on shoal's loop thread, one close,
``finished()``, ``async with``; whatever a failed or cancelled start left is closed.

Owns: the order of start and close across two event loops (the user's awaits, shoal's
runs). Must not know: which server it runs (a subclass says how to start, close and see
it end).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import Any

from shoal import _loop

logger = logging.getLogger("shoal.cluster")

# How often a dict the loop thread changes is copied again when it changed size meanwhile.
_READ_ATTEMPTS = 5


class ServerHandle:
    """What the three share: one start on shoal's loop (``await server``, ``async with``),
    one close (``await server.close()``), and ``await server.finished()``.

    ``status`` is dask's ``Status`` (a ``str`` too): ``init``, ``running``, ``closing``,
    ``closed`` or ``failed`` (the start raised); a kind may answer more (the public
    ``Worker``: the running worker's own ``Status``).
    """

    _kind = "Server"

    def __init__(self) -> None:
        self._phase = "init"  # of the start and close (see status)
        self._server: Any = None  # the shoal server, made at construction or at start
        # All three live on shoal's loop (asyncio objects bind to it on first use).
        self._start_task: asyncio.Task[None] | None = None
        self._start_ended = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._close_called = asyncio.Event()

    @property
    def status(self) -> Any:
        """Where it is in its life, as dask's ``Status``: ``init``, ``running``,
        ``closing``, ``closed`` or ``failed`` (``== "running"`` holds too)."""
        from shoal._status import Status

        return Status(self._phase)

    # --- what each kind does, on shoal's loop ------------------------------------------------

    async def _start_server(self) -> None:
        raise NotImplementedError

    async def _close_server(self, timeout: float | None) -> None:
        raise NotImplementedError

    async def _server_ended(self) -> None:
        """Return once the server has closed by itself (or was never started)."""
        raise NotImplementedError

    # --- the user's side ---------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        """Start the server (once; awaiting again returns it at once) and return it.

        Raises:
            what the start raised (everything it started is closed first). Cancelling the
            await cancels the start and closes what it started.
        """

        async def started() -> Any:
            await _loop.run_async(self._start_here())
            return self

        return started().__await__()

    async def start(self) -> Any:
        """dask's ``Server.start()``: what ``await server`` does (start once, return it)."""
        return await self

    async def __aenter__(self) -> Any:
        return await self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self, timeout: float | None = None, reason: str = "") -> None:
        """Close the server (once: a second call waits for the first). Cancelling the await
        does not stop the close, which goes on on shoal's loop. ``timeout`` bounds each step
        of it; ``reason`` is logged."""
        if reason:
            logger.info("closing %s: %s", self, reason)
        await asyncio.shield(_loop.run_async(self._close_here(timeout)))

    async def finished(self) -> None:
        """Return once the server has closed: by ``close()``, or by itself (a scheduler's
        idle timeout; a worker told to close by its scheduler, or retired; a nanny whose
        worker is gone for good)."""
        await _loop.run_async(self._finished_here())

    # --- on shoal's loop ---------------------------------------------------------------------

    async def _start_here(self) -> None:
        if self._closing is not None:
            raise RuntimeError(f"this {self._kind} cannot start again (status: {self.status}); "
                               f"make a new {self._kind}")
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start_or_close())
        # Not shielded: cancelling the caller cancels the start, which then closes. (A
        # cancelled caller in the user's loop has its answer already: what is raised here
        # then goes nowhere.)
        try:
            await self._start_task
        except asyncio.CancelledError:
            if self._close_called.is_set():  # close() cancelled the start
                raise RuntimeError(f"this {self._kind} was closed before it had started; "
                                   f"make a new {self._kind}") from None
            raise

    async def _start_or_close(self) -> None:
        try:
            await self._start_server()
        except BaseException:  # not swallowed: what started is closed, then re-raised
            self._start_ended.set()
            await self._close_here(None)
            self._phase = "failed"
            raise
        self._start_ended.set()
        if self._phase == "init":
            self._phase = "running"

    async def _close_here(self, timeout: float | None) -> None:
        if self._closing is None:
            self._close_called.set()
            self._closing = asyncio.ensure_future(self._close_once(timeout))
        await asyncio.shield(self._closing)

    async def _close_once(self, timeout: float | None) -> None:
        self._phase = "closing"
        start = self._start_task
        if start is not None and not start.done() and not self._start_ended.is_set():
            start.cancel()
            ended = asyncio.ensure_future(self._start_ended.wait())
            # Ends: the start unwinds (its except sets the event), or it was cancelled
            # before it ran at all (the task is done).
            await asyncio.wait([start, ended], return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
        if self._server is not None:
            try:
                if not await _loop.finish_within(self._close_server(timeout),
                                                 timeout or 30.0, f"closing {self!r}"):
                    self._kill_now()
            except Exception:  # logged: the close still ends, and status says closed
                logger.exception("closing %r failed", self)
        self._phase = "closed"

    async def _finished_here(self) -> None:
        start = self._start_task
        if start is not None:  # (asyncio.wait: a cancelled caller must not cancel the start)
            await asyncio.wait([start])  # ends: the start's own bound
        if self._closing is None and self._server is not None and start is not None:
            ended = asyncio.ensure_future(self._server_ended())
            closing = asyncio.ensure_future(self._close_called.wait())
            try:
                # Ends: the server closes by itself, or someone calls close().
                await asyncio.wait([ended, closing], return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                closing.cancel()
        await self._close_here(None)

    def _kill_now(self) -> None:
        """Last resort when a close did not finish in time (a nanny kills its process)."""


def copy_live(mapping: Any) -> dict[Any, Any]:
    """A copy of a dict the loop thread may be changing (or of the scheduler's task shards,
    by their ``copy``, a dict copied per part): copied again if it changed size."""
    for _ in range(_READ_ATTEMPTS):
        try:
            return mapping.copy()  # type: ignore[no-any-return]
        except RuntimeError:  # it changed size while copied; the next copy sees it settled
            continue
    return _loop.run_sync(_copy_on_loop(mapping), 10.0)


async def _copy_on_loop(mapping: Any) -> dict[Any, Any]:
    return mapping.copy()  # type: ignore[no-any-return]
