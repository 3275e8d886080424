"""A worker's lifetime (dask's ``--lifetime``, ``distributed.worker.lifetime.*``): after it,
the worker retires gracefully and, with ``restart``, its nanny starts a fresh one.

Owns: the staggered duration each worker process gets (chosen by its nanny, which reads
dask's config) and the worker's end of life (ask the scheduler to retire it, then leave).
The scheduler's side is ``scheduler/_membership.retire_asked``; the nanny decides whether
to start a fresh worker. Must stay light: the nanny imports it to start workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

logger = logging.getLogger("shoal.worker")

# How long a worker whose lifetime is over waits for the scheduler to move its data and
# close it before it closes itself (the scheduler gives copies 30 s).
RETIRE_GRACE = 60.0


def staggered(duration: float, stagger: float, rng: random.Random) -> float:
    """``duration`` moved by a uniform amount in ``[-stagger, +stagger]`` (never below 0),
    so that workers started together do not all leave together (dask's stagger).

    Raises:
        ValueError: a negative duration or stagger.
    """
    if duration < 0 or stagger < 0:
        raise ValueError(f"a worker lifetime and its stagger must not be negative, got "
                         f"{duration:g} s and {stagger:g} s")
    return max(0.0, duration + rng.uniform(-stagger, stagger)) if stagger else duration


def configured_lifetime(duration: Any = None, stagger: Any = None,
                        restart: bool | None = None) -> tuple[float | None, float, bool]:
    """``(duration or None, stagger, restart)`` from the arguments, else dask's
    ``distributed.worker.lifetime.{duration,stagger,restart}`` config; durations as seconds
    or strings like ``"1 hour"``.

    Raises:
        ValueError: a duration that is not a time span, or a negative one.
    """
    import dask.config
    from dask.utils import parse_timedelta

    def seconds(value: Any, what: str) -> float | None:
        if value is None:
            return None
        try:
            out = float(parse_timedelta(value, default="seconds"))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{what} must be a duration like 3600, '60s' or '1 hour', got "
                             f"{value!r}") from None
        if out < 0:
            raise ValueError(f"{what} must not be negative, got {value!r}")
        return out

    if duration is None:
        duration = dask.config.get("distributed.worker.lifetime.duration", None)
    if stagger is None:
        stagger = dask.config.get("distributed.worker.lifetime.stagger", 0)
    if restart is None:
        restart = bool(dask.config.get("distributed.worker.lifetime.restart", False))
    return (seconds(duration, "the worker lifetime (distributed.worker.lifetime.duration)"),
            seconds(stagger, "the lifetime stagger (distributed.worker.lifetime.stagger)") or 0.0,
            bool(restart))


async def end_of_life(worker: Any, lifetime: float) -> None:
    """Wait ``lifetime`` seconds, then have ``worker`` retire: ask the scheduler to move
    its data and close it (``RetireAsked``); close it here if that has not happened within
    :data:`RETIRE_GRACE` (a scheduler gone or unable to answer). Sets
    ``worker.lifetime_ended``, which ``python -m shoal.worker`` turns into its exit status
    (the nanny restarts the worker or not), and calls ``worker.on_lifetime_over`` first
    (the process tells its nanny at once: it may die while retiring). Cancelled when the
    worker closes first."""
    from shoal.protocol._messages import RetireAsked

    await asyncio.sleep(lifetime)
    worker.lifetime_ended = True
    if worker.on_lifetime_over is not None:
        worker.on_lifetime_over()
    logger.info("worker %s: its lifetime (%g s) is over; retiring", worker.address, lifetime)
    sched = worker._scheduler
    if sched is not None and not sched.closed:
        sched.send(RetireAsked(f"lifetime of {lifetime:g} s over"))
        try:
            await asyncio.wait_for(worker.wait_closed(), RETIRE_GRACE)
            return
        except (asyncio.TimeoutError, TimeoutError):
            logger.warning("worker %s: the scheduler did not retire it within %g s; closing",
                           worker.address, RETIRE_GRACE)
    await worker.close()
