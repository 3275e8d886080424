"""``cluster.adapt()``: a periodic loop that applies the adaptive policy to a cluster.

Owns: the loop (a task on shoal's loop, owned by this object and ended by ``stop()``,
which the cluster's ``close()`` calls), reading dask's ``distributed.adaptive.*`` defaults,
and carrying out each recommendation with the cluster's own scale-up and graceful retire.
Every decision is the pure ``scheduler._scaling.AdaptivePolicy``'s.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from typing import Any

from shoal import _loop
from shoal.scheduler._scaling import AdaptivePolicy, ScaleDown, ScaleUp

logger = logging.getLogger("shoal.adaptive")


def _config(name: str, default: Any) -> Any:
    import dask.config

    return dask.config.get(f"distributed.adaptive.{name}", default)


def _seconds(value: Any, what: str) -> float:
    from dask.utils import parse_timedelta

    try:
        out = parse_timedelta(value, default="seconds")
    except (ValueError, KeyError, TypeError):
        out = None
    if out is None or not out > 0:
        raise ValueError(f"adapt({what}=) must be a positive duration like 1, '1s' or "
                         f"'500ms', got {value!r}")
    return float(out)


class Adaptive:
    """Keeps a cluster's worker count following its load (dask's ``Adaptive``).

    Args:
        minimum, maximum: bounds on the number of workers (default 0 and unbounded).
        wait_count: consecutive suggestions before an idle worker is retired (default 3).
        interval: seconds between decisions (default 1 s).
        target_duration: how long the queued work should take (default 5 s); less asks
            for more workers.
    """

    def __init__(self, cluster: Any, minimum: int | None = None, maximum: float | None = None,
                 wait_count: int | None = None, interval: Any = None,
                 target_duration: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(
                f"adapt() got unexpected arguments {sorted(kwargs)}; it takes minimum, "
                "maximum, wait_count, interval and target_duration"
            )
        maximum = _config("maximum", math.inf) if maximum is None else maximum
        self.policy = AdaptivePolicy(
            minimum=int(_config("minimum", 0)) if minimum is None else minimum,
            maximum=float(maximum),
            wait_count=int(_config("wait-count", 3)) if wait_count is None else wait_count,
            target_duration=_seconds(_config("target-duration", "5s")
                                     if target_duration is None else target_duration,
                                     "target_duration"),
        )
        self.interval = _seconds(_config("interval", "1s") if interval is None else interval,
                                 "interval")
        self.cluster = cluster
        # (what, detail) of each change made, the latest 10,000 (as dask's Adaptive.log)
        self.log: collections.deque[tuple[str, Any]] = collections.deque(maxlen=10_000)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        # Not waited for: adapt() must not block an asynchronous cluster's caller (whose
        # event loop is not shoal's), nor fail when called on shoal's loop itself.
        _loop.call_soon(self._begin)

    @property
    def minimum(self) -> int:
        return self.policy.minimum

    @property
    def maximum(self) -> float:
        return self.policy.maximum

    @property
    def wait_count(self) -> int:
        return self.policy.wait_count

    @property
    def target_duration(self) -> float:
        return self.policy.target_duration

    def _begin(self) -> None:
        """On shoal's loop: start adapting, unless stopped already."""
        if not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Not ``while True``: a cancel arriving as a step's wait ends is lost inside
        # asyncio.wait_for on Python 3.11, and the loop would go on; the flag ends it.
        while not self._stopped:
            try:
                await self.adapt()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed step must not end adapting; the next may work
                logger.exception("adaptive scaling step failed; trying again in %s s",
                                 self.interval)
            await asyncio.sleep(self.interval)  # ends when stop() cancels this task

    async def adapt(self) -> None:
        """One decision: take the load, ask the policy, carry out its answer."""
        from shoal.scheduler._views import load

        if self.cluster.status != "running":
            return
        rec = self.policy.recommend(load(self.cluster.scheduler))
        if isinstance(rec, ScaleUp):
            logger.info("adaptive: scaling up to %d workers", rec.n)
            self.log.append(("up", rec.n))
            await self.cluster._scale(rec.n)
        elif isinstance(rec, ScaleDown):
            logger.info("adaptive: retiring %s", rec.workers)
            self.log.append(("down", list(rec.workers)))
            await self.cluster._retire(list(rec.workers))

    def stop(self) -> None:
        """Stop adapting (the workers stay as they are)."""
        self._stopped = True
        _loop.call_soon(self._cancel)

    def _cancel(self) -> None:
        """On shoal's loop (after ``_begin``: the loop keeps their order)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    def __repr__(self) -> str:
        return (f"<Adaptive minimum={self.minimum} maximum={self.maximum} "
                f"wait_count={self.wait_count} interval={self.interval}s>")
