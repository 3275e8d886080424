"""What the Client can ask about the cluster: run a function on every worker, who holds
what, worker details, the task stream and a key's story.

Each is a coroutine taking the client as its first argument, run on shoal's loop; the Client
exposes it through ``sync`` (blocking, or awaitable when asynchronous)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal._run import pickle_code
from shoal.client._future import Future
from shoal.client._repr import HasWhat, SchedulerInfo, WhoHas
from shoal.client._structure import collect_futures
from shoal.protocol._errors import error_to_exception
from shoal.protocol._serialize import Serialized, loads

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

logger = logging.getLogger("shoal.client")


_ON_ERROR = ("raise", "return", "ignore")


async def run(self: Client, function: Callable[..., Any], *args: Any, workers: Any = None,
              wait: bool = True, nanny: bool = False, on_error: str = "raise",
              **kwargs: Any) -> dict[str, Any] | None:
    """Run ``function(*args, **kwargs)`` once on every worker (or ``workers``), outside
    the task graph; returns ``{worker address: result}``.

    A function with a ``dask_worker`` parameter is given the worker. An async function is
    awaited on the worker's event loop; with ``wait=False`` it is only started, and None
    is returned (a plain function with ``wait=False`` is refused, as dask's workers do:
    it runs nowhere, and None is returned unless ``on_error="raise"``). ``on_error``:
    "raise" the first failure, "return" exceptions as results, or "ignore" failed
    workers. ``nanny=True`` runs it in the nanny (only for a ``LocalCluster`` of this
    process: shoal's nannies are not servers of their own).

    Raises:
        ValueError: a bad ``on_error``; ``wait=False`` with a function that is not async
            (with "raise").
        The function's own exception, with "raise".
    """
    self._check_open()
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'raise', 'return' or 'ignore', got {on_error!r}")
    if not callable(function):
        raise TypeError(f"run takes a function, got {type(function).__name__}")
    if not wait and not inspect.iscoroutinefunction(function):
        if on_error == "raise":
            raise ValueError(
                f"run(..., wait=False) only starts async functions; {function!r} is not one: "
                "call run() without wait=False to run it and wait, or make it `async def`")
        return None  # dask: each worker refuses it, and the refusals are ignored/returned
    wl = self._check_workers(workers)
    call = functools.partial(function, *args, **kwargs)
    if nanny:
        results = await _run_on_nannies(self, call, wl, wait)
    else:
        results = await self._request("run", function=pickle_code(call), workers=wl, wait=wait)
    out = {}
    for addr, (ok, value) in results.items():
        if ok:
            out[addr] = loads(value) if isinstance(value, Serialized) else value
        elif on_error == "raise":
            raise error_to_exception(value)
        elif on_error == "return":
            out[addr] = error_to_exception(value)
    return out if wait else None


async def _run_on_nannies(self: Client, call: Callable[..., Any], workers: list[str | int] | None,
                          wait: bool) -> dict[str, Any]:
    """``run(nanny=True)``: the nannies of a LocalCluster live in this process, on this
    loop; each runs the function with ``dask_worker=`` the nanny, keyed by its worker."""
    from shoal._run import in_background, inject
    from shoal.protocol._errors import exception_to_error

    cluster = self.cluster
    nannies = list(getattr(cluster, "nannies", None) or [])
    if not nannies and getattr(cluster, "processes", None) is False:
        return {}  # in-process workers have no nanny: none to run on, as in dask
    if not nannies:
        raise NotImplementedError(
            "run(nanny=True) needs the client's own LocalCluster with processes=True: shoal's "
            "nannies are not reachable through the scheduler; run it on the workers instead")
    info = await self._request("scheduler_info")
    by_pid = {w["pid"]: a for a, w in info["workers"].items()}
    out: dict[str, Any] = {}
    for nanny in nannies:
        addr = by_pid.get(nanny.pid)
        if addr is None or (workers is not None and addr not in workers
                            and info["workers"][addr]["name"] not in workers):
            continue
        fn = inject(call, "dask_worker", nanny)
        try:
            if inspect.iscoroutinefunction(fn):
                if not wait:
                    asyncio.get_running_loop().create_task(in_background(fn, "nanny"))
                    value = None
                else:
                    value = await fn()
            else:
                value = fn()
            out[addr] = (True, value)
        except Exception as exc:
            out[addr] = (False, exception_to_error(exc, exc.__traceback__, "run", addr,
                                                   time.time()))
    return out


async def run_on_scheduler(self: Client, function: Callable[..., Any], *args: Any,
                           wait: bool = True, **kwargs: Any) -> Any:
    """Run ``function(*args, **kwargs)`` in the scheduler's process and return its result.
    A function with a ``dask_scheduler`` parameter is given the scheduler; an async
    function is awaited on the scheduler's loop (``wait=False``: only started).

    Raises:
        The function's own exception, with the scheduler's traceback.
    """
    self._check_open()
    if not callable(function):
        raise TypeError(f"run_on_scheduler takes a function, got {type(function).__name__}")
    call = functools.partial(function, *args, **kwargs)
    ok, value = await self._request("run_on_scheduler", function=pickle_code(call), wait=wait)
    if not ok:
        raise error_to_exception(value)
    return loads(value)



def futures(self: Client) -> dict[Any, Any]:
    """dask's ``client.futures``: each key this client holds futures of, with its state
    (``.status``: 'pending', 'finished', 'error', 'cancelled' or 'lost'); a snapshot."""
    return dict(self._states)  # one C-level copy under the GIL: no lock needed


async def scheduler_info(self: Client, n_workers: int = -1, **kwargs: Any) -> dict[str, Any]:
    """dask's ``scheduler_info()``: the scheduler (``type``, ``id``, ``address``,
    ``services``, ``started``...) and, under ``workers``, each worker's details
    (``nthreads``, ``memory_limit``, ``name``, ``host``, ``metrics``, ``pid``...); only
    the first ``n_workers`` of them unless -1."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < -1:
        raise ValueError(f"n_workers must be -1 (all) or a non-negative integer, got {n_workers!r}")
    info: dict[str, Any] = await self._request_within("scheduler_info", self._timeout,
                                                      n_workers=n_workers)
    return SchedulerInfo(info)

def cached_scheduler_info(self: Client) -> SchedulerInfo:
    """An asynchronous client's ``scheduler_info()``, as dask's: its latest copy (totals,
    no workers: ``n_workers=0``), at once; a fetch of the next one starts on shoal's loop
    unless one is under way (it ends with its request's timeout, or the connection)."""
    if self.status == "running" and not self._identity_fetching:
        self._identity_fetching = True
        _loop.call_soon(_start_identity_fetch, self)
    return self._scheduler_identity


def _start_identity_fetch(self: Client) -> None:
    self._identity_task = asyncio.get_running_loop().create_task(_fetch_identity(self))


async def _fetch_identity(self: Client) -> None:
    try:
        self._scheduler_identity = await scheduler_info(self, n_workers=0)
    except Exception as exc:  # closed or lost meanwhile: the copy stays as it was
        logger.debug("refreshing the scheduler_info of %s: %r", self.id, exc)
    finally:
        self._identity_fetching = False


async def nthreads(self: Client, workers: Any = None) -> dict[str, int]:
    """The number of threads of each worker (``workers``: an address or name, or a list of
    them, to ask about those only, as dask's)."""
    wanted = self._check_workers(workers)
    info = (await scheduler_info(self))["workers"]
    return {a: w["nthreads"] for a, w in info.items()
            if wanted is None or a in wanted or w.get("name") in wanted}

ncores = nthreads

async def who_has(self: Client, futures: Any = None) -> dict[Any, tuple[str, ...]]:
    """Which workers hold each future's data (every key on the cluster by default)."""
    keys: list[Any] | None = None
    if futures is not None:
        flat: list[Future] = []
        collect_futures(futures, flat, collections=True)
        keys = [f.key for f in flat]
    rows = await self._request_within("who_has", self._timeout, keys=keys)
    return WhoHas((k, tuple(v)) for k, v in rows)

async def addresses(self: Client, wanted: list[Any] | None) -> list[Any] | None:
    """``wanted`` workers (``_check_workers``'s list: addresses or names) as addresses, as
    dask's scheduler reads them (names as the scheduler matches them: by their text)."""
    if wanted is None:
        return None
    info = (await scheduler_info(self))["workers"]
    by_name = {str(w.get("name")): a for a, w in info.items()}
    return [w if w in info else by_name.get(str(w), w) for w in wanted]

async def has_what(self: Client, workers: Any = None) -> dict[str, tuple[Any, ...]]:
    """The keys each worker holds in memory (``workers``: addresses or names; all by
    default)."""
    wl = await addresses(self, self._check_workers(workers))
    got = await self._request_within("has_what", self._timeout)
    return HasWhat((w, tuple(ks)) for w, ks in got.items() if wl is None or w in wl)

async def wait_for_workers(self: Client, n_workers: int, timeout: float | None = None) -> None:
    """Wait until at least ``n_workers`` workers are connected.

    Raises:
        WorkerStartTimeoutError: (a TimeoutError, dask's) fewer arrived within ``timeout``
            (seconds, or a dask duration such as ``"10s"``; None waits as long as it takes).
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0:
        raise ValueError(f"n_workers must be a non-negative integer, got {n_workers!r}")
    if isinstance(timeout, str):
        from dask.utils import parse_timedelta

        timeout = parse_timedelta(timeout)
    # ends: the scheduler answers once n_workers have come or timeout has passed
    arrived = await self._request_within("wait_for_workers", None, n=n_workers, timeout=timeout)
    if arrived < n_workers:
        from shoal.protocol._errors import WorkerStartTimeoutError

        raise WorkerStartTimeoutError(arrived, n_workers,
                                      float("inf") if timeout is None else timeout)

# Records per request: each page is built on the scheduler's loop, so a long history is
# fetched in several short steps rather than one that freezes the scheduler.
TASK_STREAM_PAGE = 5_000


async def task_stream_since(self: Client, cursor: int) -> tuple[int, list[dict[str, Any]]]:
    """Every retained task-stream record after ``cursor``, fetched page by page."""
    out: list[dict[str, Any]] = []
    while True:
        nxt, page = await self._request_within("task_stream", self._timeout, cursor=cursor,
                                               limit=TASK_STREAM_PAGE)
        out.extend(page)
        if len(page) < TASK_STREAM_PAGE or nxt <= cursor:
            return nxt, out
        cursor = nxt

async def story(self: Client, *keys: Any, on_error: str = "raise") -> list[tuple[Any, ...]]:
    """Every transition the scheduler and the workers recorded for ``keys`` (keys, futures
    or stimulus ids), as dask merges them: the scheduler's rows first, oldest first for
    each key, ``("scheduler", key, start, finish, recommendations, stimulus_id,
    timestamp)``; then each worker's, ``(address, key, start, finish, final,
    recommendations, stimulus_id, timestamp)`` (its last
    ``distributed.admin.low-level-log-length`` moves). ``stimulus_id`` names the event
    that made the move and when it arrived (``"task-finished-1796232193.38"``): the
    scheduler's and a worker's are their own (shoal's messages carry no stimulus ids).
    shoal's moves cascade directly, so ``recommendations`` is always ``{}``.

    ``on_error="ignore"`` leaves out the rows of whoever cannot answer instead of raising
    (dask's argument)."""
    if on_error not in ("raise", "ignore"):
        raise ValueError(f"on_error must be 'raise' or 'ignore', got {on_error!r}")
    from shoal.worker._introspect import worker_story

    wanted = [key.key if isinstance(key, Future) else key for key in keys]

    async def scheduler_rows() -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for key in wanted:
            got = await self._request_within("story", self._timeout, key=key)
            rows.extend(("scheduler", k, start, finish, dict(recs), sid, when)
                        for k, start, finish, recs, sid, when in got)
        return rows

    async def answered(coro: Any, who: str, empty: Any) -> Any:
        """What ``coro`` answers; with on_error="ignore", ``empty`` when it fails (dask's
        "no story" rather than an error), logged."""
        try:
            return await coro
        except Exception as exc:  # reported: raised, or logged with on_error="ignore"
            if on_error == "raise":
                raise
            logger.warning("story(%d key(s)): %s gave no story (%s: %s); on_error='ignore' "
                           "leaves its rows out", len(wanted), who, type(exc).__name__, exc)
            return empty

    rows = await answered(scheduler_rows(), "the scheduler", [])
    answers = await answered(run(self, worker_story, wanted, on_error=on_error), "the workers",
                             None) or {}
    for address, got in answers.items():
        rows.extend((address, *row) for row in got)
    return rows

def dashboard_link(self: Client) -> str | None:
    if self.cluster is not None and hasattr(self.cluster, "dashboard_link"):
        link: str | None = self.cluster.dashboard_link
        return link
    from shoal._dashboard_link import format_dashboard_link

    info = self.sync(scheduler_info, self, asynchronous=False)
    return format_dashboard_link(info.get("dashboard"))



class SchedulerHandle:
    """``client.scheduler``: dask's is the client's RPC connection to the scheduler; shoal's
    carries its ``address`` only (what programs pass on), and says what to use for the rest."""

    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"client.scheduler.{name}: shoal's client.scheduler carries only the address, "
            "not dask's RPC calls to scheduler handlers; use client.run_on_scheduler(fn) "
            "(fn may take dask_scheduler=) or the Client's own methods"
        )

    def __repr__(self) -> str:
        return f"<scheduler at {self.address}>"


def scheduler(self: Client) -> SchedulerHandle | None:
    """``client.scheduler`` while the client is connected, else None (as dask's)."""
    address = getattr(self, "scheduler_address", None)
    if self.status != "running" or not isinstance(address, str):
        return None
    return SchedulerHandle(address)
