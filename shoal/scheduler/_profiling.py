"""The scheduler's part of the statistical profiler: its own event loop's sampler
(``client.profile(scheduler=True)``) and the ``profile`` request, which asks the workers for
their trees (``ProfileAsk``) and merges them. Joined to the request table (``_requests``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from shoal import _profile_tree as trees
from shoal._profiler import Sampler, loop_settings, loop_thread
from shoal.comm import Connection
from shoal.protocol._messages import ProfileAsk

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler


def loop_sampler() -> Sampler:
    """A sampler of the calling thread (the scheduler's event loop)."""
    return Sampler(loop_thread(), settings=loop_settings, name="shoal-profile-scheduler")


async def worker_profiles(scheduler: Scheduler, start: float | None, stop: float | None,
                          key: str | None, workers: list[str] | None,
                          server: bool) -> dict[str, dict[str, Any] | None]:
    """Each worker's tree (those of ``workers`` when given); a worker that left while
    asked is left out. With ``server``, None for a worker whose loop is not sampled."""
    targets = [w for w in scheduler._workers if workers is None or w in workers]
    asks = {w: (lambda rid: ProfileAsk(rid, start, stop, key, server)) for w in targets}
    answers = await scheduler.ask_workers(None, asks)
    return {w: tree for w, (ok, tree) in answers.items() if ok}


async def _profile(scheduler: Scheduler, conn: Connection, start: float | None,
                   stop: float | None, key: str | None, workers: list[str] | None,
                   merge_workers: bool, server: bool, on_scheduler: bool) -> Any:
    """``{"profile": ..., "off": [...]}``: the scheduler's own tree (``on_scheduler``), else
    the workers' trees, merged into one or per worker address; ``off`` names what was
    asked for but is not sampled ("scheduler", or worker addresses: their event loops
    are sampled only with ``shoal.profile.event-loops``)."""
    if on_scheduler:
        sampler = scheduler.profiler
        if sampler is None or sampler.off:
            return {"profile": trees.new(), "off": ["scheduler"]}
        # the loop runs no task: ``key`` does not apply (as in dask)
        return {"profile": sampler.profile(start, stop), "off": []}
    per_worker = await worker_profiles(scheduler, start, stop, key, workers, server)
    off = sorted(w for w, tree in per_worker.items() if tree is None)
    found = {w: (trees.new() if tree is None else tree) for w, tree in per_worker.items()}
    if merge_workers:
        return {"profile": trees.merge(*found.values()), "off": off}
    return {"profile": found, "off": off}


OPS: dict[str, Callable[..., Awaitable[Any]]] = {"profile": _profile}
