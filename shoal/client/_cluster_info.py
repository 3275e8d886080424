"""What the Client can ask about the cluster: run a function on every worker, who holds
what, worker details, the task stream and a key's story. Methods attached to Client."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.client._future import Future
from shoal.client._structure import collect_futures
from shoal.protocol._errors import error_to_exception
from shoal.protocol._serialize import dumps, loads

if TYPE_CHECKING:
    from shoal.client._client import Client


def run(self: Client, function: Callable[..., Any], *args: Any, workers: Any = None,
        wait: bool = True, nanny: bool = False, on_error: str = "raise", **kwargs: Any) -> dict[str, Any]:
    """Run ``function(*args, **kwargs)`` once on every worker (or ``workers``);
    returns ``{worker address: result}``."""

    wl = self._check_workers(workers)
    ser = dumps(functools.partial(function, *args, **kwargs))
    results = self._sync_request("run", timeout=None, function=ser, workers=wl)
    out = {}
    for addr, (ok, value) in results.items():
        if ok:
            out[addr] = loads(value)
        elif on_error == "raise":
            raise error_to_exception(value)
        else:
            out[addr] = error_to_exception(value)
    return out

def scheduler_info(self: Client, n_workers: int = -1, **kwargs: Any) -> dict[str, Any]:
    """dask's ``scheduler_info()``: the scheduler (``type``, ``id``, ``address``,
    ``services``, ``started``...) and, under ``workers``, each worker's details
    (``nthreads``, ``memory_limit``, ``name``, ``host``, ``metrics``, ``pid``...); only
    the first ``n_workers`` of them unless -1."""
    if not isinstance(n_workers, int) or n_workers < -1:
        raise ValueError(f"n_workers must be -1 (all) or a non-negative integer, got {n_workers!r}")
    info: dict[str, Any] = self._sync_request("scheduler_info", timeout=self._timeout,
                                              n_workers=n_workers)
    return info

def nthreads(self: Client, workers: Any = None) -> dict[str, int]:
    return {a: w["nthreads"] for a, w in self.scheduler_info()["workers"].items()}

ncores = nthreads

def who_has(self: Client, futures: Any = None) -> dict[Any, tuple[str, ...]]:
    """Which workers hold each future's data (every key on the cluster by default)."""
    keys: list[Any] | None = None
    if futures is not None:
        flat: list[Future] = []
        collect_futures(futures, flat)
        keys = [f.key for f in flat]
    rows = self._sync_request("who_has", timeout=self._timeout, keys=keys)
    return {k: tuple(v) for k, v in rows}

def has_what(self: Client, workers: Any = None) -> dict[str, tuple[Any, ...]]:
    """The keys each worker holds in memory."""
    wl = self._check_workers(workers)
    got = self._sync_request("has_what", timeout=self._timeout)
    return {w: tuple(ks) for w, ks in got.items() if wl is None or w in wl}

def wait_for_workers(self: Client, n_workers: int, timeout: float | None = None) -> None:
    """Block until at least ``n_workers`` workers are connected."""
    if not isinstance(n_workers, int) or n_workers < 0:
        raise ValueError(f"n_workers must be a non-negative integer, got {n_workers!r}")
    self._check_open()
    _loop.run_sync(self._request("wait_for_workers", n=n_workers, timeout=timeout))

# Records per request: each page is built on the scheduler's loop, so a long history is
# fetched in several short steps rather than one that freezes the scheduler.
TASK_STREAM_PAGE = 5_000


def task_stream_since(self: Client, cursor: int) -> tuple[int, list[dict[str, Any]]]:
    """Every retained task-stream record after ``cursor``, fetched page by page."""
    out: list[dict[str, Any]] = []
    while True:
        nxt, page = self._sync_request("task_stream", timeout=self._timeout, cursor=cursor,
                                       limit=TASK_STREAM_PAGE)
        out.extend(page)
        if len(page) < TASK_STREAM_PAGE or nxt <= cursor:
            return nxt, out
        cursor = nxt

def story(self: Client, key: Any) -> list[tuple[Any, ...]]:
    """Every transition the scheduler recorded for ``key`` (or a future's key)."""
    key = key.key if isinstance(key, Future) else key
    return [tuple(r) for r in self._sync_request("story", timeout=self._timeout, key=key)]

def dashboard_link(self: Client) -> str | None:
    if self.cluster is not None and hasattr(self.cluster, "dashboard_link"):
        link: str | None = self.cluster.dashboard_link
        return link
    info = self.scheduler_info()
    return info.get("dashboard")

