"""A nanny watching its worker process: waiting for its exit, and killing it past its
terminate threshold (dask's ``distributed.worker.memory.terminate``).

Owns: the memory samples, the SIGUSR1 warning (the worker tells the scheduler why it dies,
and exits), the SIGKILL after ``MEMORY_KILL_GRACE``, and the order of the kill after the
nanny's own word to the scheduler (given as a callable: this module does not know the
scheduler). Must not know what the exit means (``_nanny_exits``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import psutil

logger = logging.getLogger("shoal.nanny")

# A worker past its terminate threshold gets SIGUSR1 first: it tells the scheduler why it
# dies (KilledWorker says so) and exits; SIGKILL follows after this many seconds if not.
MEMORY_KILL_GRACE = 0.2


def _warn_of_memory_kill(pid: int) -> bool:
    """SIGUSR1 to a worker past its terminate threshold: it tells the scheduler why it dies
    and exits (``__main__``). False when that cannot be sent (no such signal, or gone)."""
    sig = getattr(signal, "SIGUSR1", None)
    if sig is None:
        return False
    try:
        os.kill(pid, sig)
    except OSError:
        return False
    return True


def _kill(pid: int) -> None:
    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        pass  # gone already: what the kill was for


def _past_terminate(pid: int, limit: int, fraction: float, name: Any) -> int | None:
    """The memory of worker process ``pid`` when it is past ``fraction`` of ``limit``
    (logged), else None."""
    try:
        rss = psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None
    if rss <= fraction * limit:
        return None
    logger.warning("worker %s uses %d bytes, over %.0f%% of its %d-byte limit; restarting it",
                   name, rss, fraction * 100, limit)
    return rss


async def watch(proc: asyncio.subprocess.Process, *, interval: float, memory_limit: int,
                terminate_fraction: float, name: Any,
                tell_scheduler: Callable[[int], asyncio.Future[bool] | None]) -> int:
    """Wait for worker process ``proc`` to exit and return its status, killing it past
    ``terminate_fraction`` of ``memory_limit`` (sampled every ``interval`` seconds; 0:
    never): SIGUSR1 (it tells the scheduler why and exits), then SIGKILL after
    ``MEMORY_KILL_GRACE`` if it is still there, and not before ``tell_scheduler(rss)``
    (the nanny's own word: the worker may be unable to say it, and its loss must come
    after the scheduler noted why) ended."""
    waiter = asyncio.ensure_future(proc.wait())
    kill_at: float | None = None  # warned for memory: SIGKILL then unless gone
    notice: asyncio.Future[bool] | None = None  # the scheduler being told why
    killed = False  # SIGKILL sent: only its exit is awaited
    try:
        # ends: the process exits: on its own, killed at kill_at (once the notice
        # ended: NOTICE_TIMEOUT at most), or by close() (terminate, then kill)
        while not waiter.done():
            wait = interval
            if kill_at is not None:
                wait = max(0.0, kill_at - time.monotonic())
            await asyncio.wait([waiter], timeout=wait)
            if waiter.done():
                break
            if kill_at is not None:
                if time.monotonic() < kill_at:
                    continue
                if notice is not None and not notice.done():
                    pending: list[asyncio.Future[Any]] = [waiter, notice]
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    continue
                _kill(proc.pid)
                kill_at, killed = None, True
            elif memory_limit and terminate_fraction and not killed:
                rss = _past_terminate(proc.pid, memory_limit, terminate_fraction, name)
                if rss is None:
                    continue
                kill_at = time.monotonic() + MEMORY_KILL_GRACE
                notice = tell_scheduler(rss)
                if not _warn_of_memory_kill(proc.pid):
                    kill_at = time.monotonic()  # at once, once the notice ended
        return waiter.result()  # ends at once: the loop above left only once it was done
    finally:
        if notice is not None and not notice.done():
            notice.cancel()
        if not waiter.done():  # cancelled (close): the close waits for the exit itself
            waiter.cancel()
