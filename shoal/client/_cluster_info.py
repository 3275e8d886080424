"""What the Client can ask about the cluster: run a function on every worker, who holds
what, worker details, the task stream and a key's story.

Each is a coroutine taking the client as its first argument, run on shoal's loop; the Client
exposes it through ``sync`` (blocking, or awaitable when asynchronous)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.client._future import Future
from shoal.client._structure import collect_futures
from shoal.protocol._errors import error_to_exception
from shoal.protocol._serialize import dumps, loads

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade


async def run(self: Client, function: Callable[..., Any], *args: Any, workers: Any = None,
        wait: bool = True, nanny: bool = False, on_error: str = "raise", **kwargs: Any) -> dict[str, Any]:
    """Run ``function(*args, **kwargs)`` once on every worker (or ``workers``);
    returns ``{worker address: result}``."""

    wl = self._check_workers(workers)
    ser = dumps(functools.partial(function, *args, **kwargs))
    results = await self._request_within("run", None, function=ser, workers=wl)
    out = {}
    for addr, (ok, value) in results.items():
        if ok:
            out[addr] = loads(value)
        elif on_error == "raise":
            raise error_to_exception(value)
        else:
            out[addr] = error_to_exception(value)
    return out

async def scheduler_info(self: Client, **kwargs: Any) -> dict[str, Any]:
    """Scheduler address and per-worker details (threads, memory, pid...)."""
    info: dict[str, Any] = await self._request_within("scheduler_info", self._timeout)
    return info

async def nthreads(self: Client, workers: Any = None) -> dict[str, int]:
    """The number of threads of each worker."""
    return {a: w["nthreads"] for a, w in (await scheduler_info(self))["workers"].items()}

ncores = nthreads

async def who_has(self: Client, futures: Any = None) -> dict[Any, tuple[str, ...]]:
    """Which workers hold each future's data (every key on the cluster by default)."""
    keys: list[Any] | None = None
    if futures is not None:
        flat: list[Future] = []
        collect_futures(futures, flat)
        keys = [f.key for f in flat]
    rows = await self._request_within("who_has", self._timeout, keys=keys)
    return {k: tuple(v) for k, v in rows}

async def has_what(self: Client, workers: Any = None) -> dict[str, tuple[Any, ...]]:
    """The keys each worker holds in memory."""
    wl = self._check_workers(workers)
    got = await self._request_within("has_what", self._timeout)
    return {w: tuple(ks) for w, ks in got.items() if wl is None or w in wl}

async def wait_for_workers(self: Client, n_workers: int, timeout: float | None = None) -> None:
    """Wait until at least ``n_workers`` workers are connected."""
    if not isinstance(n_workers, int) or n_workers < 0:
        raise ValueError(f"n_workers must be a non-negative integer, got {n_workers!r}")
    await self._request_within("wait_for_workers", None, n=n_workers, timeout=timeout)

async def task_stream_since(self: Client, cursor: int) -> tuple[int, list[dict[str, Any]]]:
    cursor2, records = await self._request_within("task_stream", self._timeout, cursor=cursor)
    return cursor2, list(records)

async def story(self: Client, key: Any) -> list[tuple[Any, ...]]:
    """Every transition the scheduler recorded for ``key`` (or a future's key)."""
    key = key.key if isinstance(key, Future) else key
    return [tuple(r) for r in await self._request_within("story", self._timeout, key=key)]

def dashboard_link(self: Client) -> str | None:
    if self.cluster is not None:
        link: str | None = self.cluster.dashboard_link
        return link
    info = self.sync(scheduler_info, self, asynchronous=False)
    return info.get("dashboard")

