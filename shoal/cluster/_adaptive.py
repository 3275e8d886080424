"""``cluster.adapt()``: a periodic loop that applies the adaptive policy to a cluster.

Owns: the loop (a task on shoal's loop, owned by this object and ended by ``stop()``,
which the cluster's ``close()`` calls), reading dask's ``distributed.adaptive.*`` defaults,
dask's hooks for custom policies (``target``, ``workers_to_close``, ``recommendations``,
``scale_up``, ``scale_down``: a subclass overrides them, as dask documents), and carrying
out each recommendation with the cluster's own scale-up and graceful retire. The default
decisions are the pure ``scheduler._scaling`` functions'.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import math
import time
from collections.abc import Callable, Hashable
from typing import Any

from shoal import _loop
from shoal.scheduler._scaling import (
    AdaptivePolicy,
    Load,
    ScaleDown,
    ScaleUp,
    choose_groups_to_retire,
    choose_to_retire,
    target_workers,
)

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
    """Keeps a cluster's worker count following its load (dask's ``Adaptive``), made by
    ``cluster.adapt(Adaptive=..., minimum=..., maximum=...)``.

    Every ``interval`` it asks ``safe_target()`` (``target()`` within the bounds), then
    ``recommendations(target)``, and carries the answer out with ``scale_up(n)`` or
    ``scale_down(workers)``. For a policy of your own subclass it and override ``target``
    (how many workers), ``workers_to_close`` (which ones to let go) or ``recommendations``
    (the whole answer), as in dask; each may be a coroutine function or a plain one.

    Args:
        cluster: the cluster to scale (``adapt()`` passes it).
        interval: seconds between decisions (default 1 s).
        minimum, maximum: bounds on the number of workers (default 0 and unbounded).
        wait_count: consecutive suggestions before an idle worker is retired (default 3).
        target_duration: how long the queued work should take (default 5 s); less asks
            for more workers.
        worker_key: groups workers that must leave together (``worker_key(ws)`` of the
            scheduler's worker state, e.g. ``lambda ws: ws.host``): a group is retired
            whole, and only while the workers left still meet the target, as dask's.

    Raises:
        TypeError: an argument dask's ``Adaptive`` does not take here.
        ValueError: a bound or duration out of range (the message says which).
    """

    def __init__(self, cluster: Any, interval: Any = None, minimum: int | None = None,
                 maximum: float | None = None, wait_count: int | None = None,
                 target_duration: Any = None,
                 worker_key: Callable[[Any], Hashable] | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(
                f"adapt() got unexpected arguments {sorted(kwargs)}; it takes minimum, "
                "maximum, wait_count, interval, target_duration and worker_key"
            )
        if worker_key is not None and not callable(worker_key):
            raise TypeError(f"adapt(worker_key=) takes a function of a worker's state, got "
                            f"{worker_key!r}")
        self.worker_key = worker_key
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
        # (time, recommendation) of each change made, as dask's Adaptive.log, the latest
        # distributed.admin.low-level-log-length of them
        import dask.config

        self.log: collections.deque[tuple[float, dict[str, Any]]] = collections.deque(
            maxlen=dask.config.get("distributed.admin.low-level-log-length", 1000))
        self._load: Load | None = None  # this step's snapshot (see _snapshot)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._stepping = False  # a step is deciding or scaling (see _cancel)
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
        try:
            await self._steps()
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _steps(self) -> None:
        # Not ``while True``: a cancel arriving as a step's wait ends is lost inside
        # asyncio.wait_for on Python 3.11, and the loop would go on; the flag ends it.
        while not self._stopped:
            self._stepping = True
            try:
                await self.adapt()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed step must not end adapting; the next may work
                logger.exception("adaptive scaling step failed; trying again in %s s",
                                 self.interval)
            finally:
                self._stepping = False
            if not self._stopped:
                await asyncio.sleep(self.interval)  # ends when stop() cancels this task

    @property
    def close_counts(self) -> dict[Any, int]:
        """How many steps in a row each worker was proposed for retiring (dask's name)."""
        return self.policy.close_counts

    @property
    def observed(self) -> set[Any]:
        """The names of the workers the scheduler has now (dask's ``observed``)."""
        return {ws.name for ws in _server(self.cluster).state.workers.values()}

    @property
    def plan(self) -> set[Any]:
        """The names of the workers the cluster runs or is starting (dask's ``plan``: the
        cluster's; a SpecCluster's group entry names each of its workers)."""
        return set(self.cluster.plan)

    @property
    def requested(self) -> set[Any]:
        """The names of the workers asked for and started (dask's ``requested``: the
        cluster's; shoal's clusters start what they plan at once)."""
        return set(self.cluster.requested)

    def _snapshot(self) -> Load:
        """The load this step decides on (taken once a step; a fresh one outside a step)."""
        from shoal.scheduler._views import load

        return self._load if self._load is not None else load(_server(self.cluster))

    async def target(self) -> int:
        """How many workers the load calls for, before the bounds: the expected seconds of
        work queued and running over ``target_duration``, no more than there are tasks,
        more when memory is filling (dask's ``Scheduler.adaptive_target``). Override it
        for a policy of your own."""
        return target_workers(self._snapshot(), self.target_duration)

    async def safe_target(self) -> int:
        """``target()`` within ``minimum`` and ``maximum``."""
        n = await _answer(self.target())
        return int(max(self.minimum, min(n, self.maximum)))

    async def workers_to_close(self, target: int) -> list[Any]:
        """Which workers to let go to come down to ``target``: idle ones only, those
        holding the least data first (their addresses; a subclass may answer names, as
        dask's ``cluster.workers`` keys them)."""
        scheduler = _server(self.cluster)
        every = self._snapshot().workers
        # The scheduler plugins' valid_workers_downscaling narrows the choice, as in dask:
        # the others stay, and count towards ``target``.
        workers = scheduler.plugin_host.downscalable(scheduler, every)
        staying = len(every) - len(workers)
        key = self.worker_key
        if key is None:
            return choose_to_retire(workers, len(every) - target, idle_only=True)
        states = scheduler.state.workers
        groups = {w.address: key(states[w.address]) for w in workers if w.address in states}
        return choose_groups_to_retire([w for w in workers if w.address in groups], groups,
                                       max(0, target - staying))

    async def recommendations(self, target: int) -> dict[str, Any]:
        """dask's answer for ``target`` workers: ``{"status": "same"}``, ``{"status":
        "up", "n": target}``, or ``{"status": "down", "workers": [...]}`` with the workers
        ``workers_to_close`` proposed ``wait_count`` times in a row."""
        n = len(self._snapshot().workers)
        proposed = list(await _answer(self.workers_to_close(target))) if target < n else []
        rec = self.policy.decide(n, target, proposed)
        if isinstance(rec, ScaleUp):
            return {"status": "up", "n": rec.n}
        if isinstance(rec, ScaleDown):
            return {"status": "down", "workers": list(rec.workers)}
        return {"status": "same"}

    async def scale_up(self, n: int) -> None:
        """Grow the cluster to ``n`` workers."""
        logger.info("adaptive: scaling up to %d workers", n)
        await self.cluster._scale(n)

    async def scale_down(self, workers: list[Any]) -> None:
        """Retire these workers (addresses or names) gracefully, then stop them."""
        if not workers:
            return
        logger.info("adaptive: retiring %s", workers)
        await self.cluster._retire(self._addresses(workers))

    def _addresses(self, workers: list[Any]) -> list[str]:
        wanted = set(workers)
        by_name = {str(w) for w in workers}
        return [address for address, ws in _server(self.cluster).state.workers.items()
                if address in wanted or str(ws.name) in by_name]

    async def adapt(self) -> None:
        """One decision: take the load, ask the policy, carry out its answer."""
        from shoal.scheduler._views import load

        if self.cluster.status != "running":
            return
        self._load = load(_server(self.cluster))
        try:
            rec = dict(await _answer(self.recommendations(await self.safe_target())))
        finally:
            self._load = None
        status = rec.get("status", "same")
        if status != "same":
            self.log.append((time.time(), dict(rec)))
        rec.pop("status", None)
        if status == "up":
            await _answer(self.scale_up(**rec))
        elif status == "down":
            await _answer(self.scale_down(**rec))
        elif status != "same":
            raise ValueError(f"{type(self).__name__}.recommendations() answered status "
                             f"{status!r}; dask's are 'up', 'down' and 'same'")

    def stop(self, reason: str = "unknown") -> None:
        """Stop adapting (the workers stay as they are); a step under way finishes first.
        ``reason`` is logged, as dask's."""
        logger.info("adaptive: stopping (%s)", reason)
        self._stopped = True
        _loop.call_soon(self._cancel, False)

    def _stop_now(self) -> None:
        """Stop adapting and cut a step under way short (the cluster is closing, and closes
        every worker itself: none may be started after it looked)."""
        self._stopped = True
        _loop.call_soon(self._cancel, True)

    def _cancel(self, now: bool) -> None:
        """On shoal's loop (after ``_begin``: the loop keeps their order). Unless ``now``,
        a step under way is not cut short (a retire cancelled between the scheduler's
        goodbye and the worker's close left a worker nobody knew of): the flag ends the
        loop after it."""
        task = self._task
        if task is None or task.done():
            self._task = None
        elif now or not self._stepping:
            self._task = None
            task.cancel()
        # else the step finishes and the flag ends the loop; the task is kept, so that a
        # later _stop_now (the cluster's close) still cuts the step short

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} minimum={self.minimum} maximum={self.maximum} "
                f"wait_count={self.wait_count} interval={self.interval}s>")


def _server(cluster: Any) -> Any:
    """The cluster's scheduler server: a LocalCluster's ``scheduler``, a SpecCluster's
    shoal ``Scheduler``'s (``_scheduler_server``)."""
    server = getattr(cluster, "_scheduler_server", None)
    if server is None:
        server = cluster.scheduler
    if not hasattr(server, "state"):
        raise TypeError(f"adapt() needs shoal's own Scheduler running in this process; "
                        f"{type(cluster).__name__}'s scheduler is {server!r}")
    return server


async def _answer(value: Any) -> Any:
    """What a hook answered: dask's are coroutines, a subclass's may be plain methods."""
    return await value if inspect.isawaitable(value) else value
