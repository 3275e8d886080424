"""LocalCluster: a scheduler in this process plus worker processes on this machine.

Owns: starting and stopping everything (no leftover processes, ever), scaling, and the
reprs. Its defaults (workers, threads, memory limits) are ``_sizing``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import html
import itertools
import logging
import math
import warnings
import weakref
from collections.abc import Coroutine, Generator
from typing import Any

from dask.utils import parse_bytes

from shoal import _logs, _loop
from shoal._status import Status
from shoal.client._faces import Ready
from shoal.cluster import _local_options as options
from shoal.cluster._sizing import cpu_count, local_memory_limit, local_shape, wait_arguments
from shoal.scheduler._server import Scheduler
from shoal.worker._nanny import Nanny
from shoal.worker._resources import check_resources

logger = logging.getLogger("shoal.cluster")

_live: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


class LocalCluster:
    """A scheduler in this process and ``n_workers`` worker processes.

    The arguments are dask's, in dask's positional order: the first is ``name``, so
    ``LocalCluster(4)`` is a cluster named 4 with the default workers, as in dask (shoal
    warns: ``n_workers=4`` was probably meant). ``memory_limit``, ``timeout``,
    ``local_directory`` and ``resources`` are keyword-only (dask's worker keywords).

    Args:
        n_workers, threads_per_worker: how to split this machine (dask's defaults: up to
            4 cores a single-threaded worker per core, more about sqrt(cores) workers;
            with processes=False one worker with every core as a thread).
        processes: workers in their own processes (True, the default) or as threads here
            (False); dask's ``worker_class`` (``Nanny`` or ``Worker``) decides it too.
        memory_limit: per worker: bytes, "4GB", a fraction of the machine's memory, "auto"
            (the machine's memory shared out between the workers, the default) or 0/None
            for no limit.
        local_directory: where each worker makes its own directory, for spilled values and
            uploaded files (dask's ``temporary-directory`` config, else the system's
            temporary directory).
        host: address to bind (loopback by default: nothing is exposed); ``ip`` is dask's
            old name for it; ``interface`` (like ``"eth0"``) binds that network
            interface's IPv4 address instead.
        scheduler_port: 0 picks a free port.
        dashboard_address: ":8787" like dask; ":0" any free port; None for no dashboard.
        silence_logs: a logging level (dask's default ``logging.WARN``): while the cluster
            is open, shoal's loggers here and in its worker processes hand on only records
            at that level and above; False or None leaves logging alone.
        timeout: seconds that start-up and each ``scale`` may take.
        name: the cluster's name (``cluster.name``).
        security: a :class:`shoal.Security` (TLS certificates, token), e.g.
            ``Security.temporary()``; binding off loopback without one makes up a token.
        protocol: "tcp://" or "tls://" (default: tls when ``security`` has certificates).
        resources: abstract resources of each worker, like ``{"GPU": 1}`` (default: dask's
            config ``distributed.worker.resources``); tasks submitted with
            ``resources={"GPU": 1}`` run only where that much is free.
        asynchronous: for use in a coroutine: ``await LocalCluster(..., asynchronous=True)``
            (or ``async with``) waits for it to start, and ``scale``, ``scale_up``,
            ``scale_down``, ``wait_for_workers``, ``get_logs`` and ``close`` return
            awaitables. The scheduler and workers run on shoal's own loop thread either
            way, so your event loop is never blocked by the cluster's work.
        loop: accepted for dask's signature and ignored (the cluster runs on shoal's loop,
            ``cluster.loop``).
        start: dask's deprecated argument, without effect (as in dask).
        worker_dashboard_address: accepted; shoal's workers serve no dashboard of their
            own (a value other than None warns): the scheduler's dashboard shows each one.
        scheduler_kwargs: dask's ``Scheduler`` arguments shoal honours: ``port``,
            ``dashboard_address``, ``allowed_failures``, ``worker_ttl``, ``bandwidth``.
        scheduler_sync_interval: accepted; the cluster reads its scheduler (in this
            process) directly, so ``scheduler_info`` is always current.

    Raises:
        ValueError: an argument is out of range; the message says which.
        TypeError: an argument shoal does not take (``services``, ``worker_services``,
            ``service_kwargs``, ``blocked_handlers``, another ``worker_class``, an unknown
            keyword): the message names it and what to do.
    """

    def __init__(
        self,
        name: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = None,
        loop: Any = None,
        start: Any = None,
        host: str | None = None,
        ip: str | None = None,
        scheduler_port: int = 0,
        silence_logs: Any = logging.WARN,
        dashboard_address: str | None = ":8787",
        worker_dashboard_address: str | None = None,
        services: Any = None,
        worker_services: Any = None,
        service_kwargs: Any = None,
        asynchronous: bool = False,
        security: Any = None,
        protocol: str | None = None,
        blocked_handlers: Any = None,
        interface: str | None = None,
        worker_class: Any = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        scheduler_sync_interval: Any = 1,
        *,
        memory_limit: Any = "auto",
        timeout: float = 60.0,
        local_directory: str | None = None,
        resources: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(name, int) and not isinstance(name, bool):
            warnings.warn(f"LocalCluster({name!r}): the first positional argument is the "
                          "cluster's name, as in dask.distributed; for that many workers "
                          f"pass n_workers={name!r}", UserWarning, stacklevel=2)
        if kwargs:
            raise TypeError(
                f"LocalCluster got unexpected arguments {sorted(kwargs)}; it takes n_workers, "
                "threads_per_worker, processes, memory_limit, host, scheduler_port, "
                "dashboard_address, silence_logs, timeout, name, local_directory, security, "
                "protocol, resources and dask's asynchronous, loop, ip, interface, "
                "worker_dashboard_address, scheduler_kwargs, worker_class"
            )
        options.refuse_unsupported({"services": services, "worker_services": worker_services,
                                    "service_kwargs": service_kwargs,
                                    "blocked_handlers": blocked_handlers})
        if start is not None:
            warnings.warn("The `start` parameter has been deprecated and has no effect.",
                          DeprecationWarning, stacklevel=2)
        if worker_dashboard_address is not None:
            warnings.warn(f"LocalCluster(worker_dashboard_address={worker_dashboard_address!r}): "
                          "shoal's workers serve no dashboard of their own; the scheduler's "
                          "dashboard (cluster.dashboard_link) shows each worker", UserWarning,
                          stacklevel=2)
        for label, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
        if threads_per_worker == 0:
            raise ValueError("threads_per_worker must be at least 1")
        if not isinstance(scheduler_port, int) or not 0 <= scheduler_port < 65536:
            raise ValueError(f"scheduler_port must be a port number (0 for any), got {scheduler_port!r}")
        if dashboard_address is not None and not isinstance(dashboard_address, str):
            raise TypeError(f"dashboard_address must be like ':8787' or None, got {dashboard_address!r}")
        if isinstance(scheduler_sync_interval, bool) or not isinstance(
                scheduler_sync_interval, (int, float, str)):
            raise TypeError(f"scheduler_sync_interval must be seconds (or like '1s'), got "
                            f"{scheduler_sync_interval!r}")
        host = options.resolve_host(host, ip, interface)
        level = options.log_level(silence_logs)
        self.processes = options.choose_processes(processes, worker_class)
        self.n_workers, self.threads_per_worker = local_shape(
            n_workers, threads_per_worker, self.processes, cpu_count())
        self.memory_limit = local_memory_limit(memory_limit, self.n_workers,
                                               self.threads_per_worker)
        self.local_directory = local_directory
        self.host = host
        self.resources = check_resources(resources)  # per worker
        self.name = name or "LocalCluster"
        self.status = Status.starting
        self._asynchronous = bool(asynchronous)
        length = _logs.configured_length()  # distributed.admin.log-length, as the others
        _logs.ring("shoal.cluster", length)  # recent records, for get_logs()
        _logs.ring("shoal.adaptive", length)
        if protocol is not None and protocol.rstrip(":/") not in ("tcp", "tls"):
            raise ValueError(f"protocol must be 'tcp://' or 'tls://', got {protocol!r}")
        settings = options.scheduler_options(scheduler_kwargs, scheduler_port, dashboard_address,
                                             _scheduler_config())
        self.scheduler = Scheduler(host, settings.pop("port"), security=security,
                                   protocol=protocol, **settings)
        self._worker_env = ({options.LOG_LEVEL_ENV: quiet}
                            if (quiet := options.worker_level(level)) else None)
        self._quiet = options.QuietLogs(level)
        self.nannies: list[Nanny] = []
        self._inproc_workers: list[Any] = []
        self._names = itertools.count()  # worker names: 0, 1... (ints, as dask), never reused
        self._adaptive: Any = None
        self._replaced_adaptives: list[Any] = []  # stopped, a step perhaps still under way
        self._timeout = timeout  # bounds start-up and each scale()
        self._stopping: asyncio.Future[None] | None = None  # the one close (see _stop)
        self._started: concurrent.futures.Future[None] | None = None  # asynchronous start
        _live.add(self)
        if self._asynchronous:
            # Started now on shoal's loop; ``await cluster`` waits for it (from any loop).
            self._started = asyncio.run_coroutine_threadsafe(self._start_or_close(),
                                                             _loop.get_loop())
            return
        try:
            _loop.run_sync(self._start(), timeout)
        except BaseException:  # not swallowed: closes what started, then re-raised
            self.close()
            raise
        self.status = Status.running

    async def _start(self) -> None:
        await self.scheduler.start()
        await self._add_workers(self.n_workers)

    async def _start_or_close(self) -> None:
        """An asynchronous cluster's start: running, or closed with the error raised."""
        try:
            await asyncio.wait_for(self._start(), self._timeout)
        except BaseException as exc:
            logger.debug("the local cluster failed to start: %r", exc)
            await self._stop(20.0)
            raise
        if self.status == "starting":  # (not if closed meanwhile)
            self.status = Status.running

    async def _until_started(self) -> None:
        """Wait (on shoal's loop) until an asynchronous cluster has started.

        Raises:
            what its start raised; RuntimeError if it was closed first.
        """
        if self._started is not None:
            await _start_of(self._started)
        if self.status != "running":
            raise RuntimeError(f"this LocalCluster is {self.status.value}")

    async def _add_workers(self, n: int) -> None:
        """Start ``n`` more workers (in parallel) and wait until they have registered."""
        target = len(self.scheduler.state.workers) + n
        if self.processes:
            new = [
                Nanny(self.scheduler.address, nthreads=self.threads_per_worker,
                      name=next(self._names), memory_limit=self.memory_limit, host=self.host,
                      local_directory=self.local_directory,
                      security=self.scheduler.security, resources=self.resources,
                      env=self._worker_env)
                for _ in range(n)
            ]
            self.nannies.extend(new)
            await asyncio.gather(*(nanny.start() for nanny in new))
        else:
            from shoal.worker._server import Worker

            for _ in range(n):
                w = Worker(self.scheduler.address, nthreads=self.threads_per_worker,
                           name=next(self._names), memory_limit=self.memory_limit,
                           host=self.host, local_directory=self.local_directory,
                           security=self.scheduler.security, resources=self.resources)
                self._inproc_workers.append(w)
                await w.start()
        # Bounded: a worker that cannot start must not hang scale() or adapt() for good.
        await self.scheduler.wait_for_workers(target, self._timeout)
        if self.processes:
            # ... and until each nanny has its worker's address too (written to its pipe
            # right after registering): what the cluster counts (``_stopped``: retired by
            # address) is then what the scheduler has. Ends: each wait is over once its
            # worker registered (done above) or its process ended.
            await asyncio.wait_for(
                asyncio.gather(*(nanny.worker_registered() for nanny in new)), self._timeout)

    # --- scaling -----------------------------------------------------------------------------

    def scale(self, n: int = 0, memory: Any = None, cores: int | None = None) -> Any:
        """Run ``n`` workers (or enough for ``cores`` threads / ``memory`` bytes): start
        new ones, or retire the extra ones gracefully (results still needed are first
        moved to the workers that stay). Returns once the cluster has that many workers;
        for an asynchronous cluster, returns an awaitable at once (the scaling goes ahead
        whether or not it is awaited; awaiting it waits for the workers).

        Raises:
            ValueError: ``n`` is negative or not an integer.
            RuntimeError: the cluster is closed.
        """
        n = self._count_for(n, cores, memory)
        self._check_usable("scale()")
        return self._face(self._scale(n), self._timeout, "scale")

    def _check_usable(self, what: str) -> None:
        """Raise unless running (or, asynchronous, still starting: the operation waits)."""
        if self.status == "running" or (self._asynchronous and self.status == "starting"):
            return
        raise RuntimeError(f"this LocalCluster is {self.status.value}; {what} needs a running one")

    def _face(self, work: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        """Run ``work`` on shoal's loop: blocking the caller for a synchronous cluster; for
        an asynchronous one started now (after the cluster's own start) and handed back as
        an awaitable, so the caller's event loop is never blocked."""
        if not self._asynchronous:
            return _loop.run_sync(work, timeout)
        return Pending(asyncio.run_coroutine_threadsafe(self._after_start(work, timeout),
                                                        _loop.get_loop()), what)

    async def _after_start(self, work: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
        try:
            await self._until_started()
        except BaseException:  # not swallowed: the unstarted work is dropped, then re-raised
            work.close()
            raise
        return await asyncio.wait_for(work, timeout)

    def _count_for(self, n: Any, cores: Any, memory: Any) -> int:
        if cores is not None:
            n = max(n or 0, math.ceil(cores / self.threads_per_worker))
        if memory is not None:
            per = self.memory_limit or 1
            n = max(n or 0, math.ceil(parse_bytes(memory) / per))
        if n is None:
            raise TypeError("scale() needs a number of workers (or cores= / memory=)")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(
                f"scale(n) takes a non-negative integer number of workers, got {n!r}; "
                "scale(0) removes every worker"
            )
        return n

    async def _scale(self, n: int) -> None:
        # Workers that stopped for good (retired by the client, or dead too often) count
        # no more: closed and dropped, as dask's SpecCluster forgets them.
        stopped = [nanny for nanny in self.nannies if self._nanny_gone(nanny)]
        gone = [w for w in self._inproc_workers if self._inproc_gone(w)]
        await asyncio.gather(*(nanny.close() for nanny in stopped),
                             *(w.close() for w in gone), return_exceptions=True)
        self.nannies = [nanny for nanny in self.nannies if nanny not in stopped]
        self._inproc_workers = [w for w in self._inproc_workers if w not in gone]
        have = len(self._live_workers())
        if n > have:
            await self._add_workers(n - have)
        elif n < have:
            from shoal.scheduler._scaling import choose_to_retire
            from shoal.scheduler._views import load

            await self._retire(choose_to_retire(load(self.scheduler).workers, have - n))
        self.n_workers = len(self._live_workers())

    async def _retire(self, addresses: list[str]) -> None:
        """Retire these workers gracefully, then stop them for good (even one whose data
        no other worker could take: scaling down is an order)."""
        from shoal.scheduler import _membership

        names = {str(ws.name) for a, ws in self.scheduler.state.workers.items() if a in addresses}
        await _membership.retire_workers(self.scheduler, addresses, None, True, 30.0)
        nannies = [nanny for nanny in self.nannies if str(nanny.name) in names]
        workers = [w for w in self._inproc_workers if str(w.name) in names]
        await asyncio.gather(*(nanny.close() for nanny in nannies),
                             *(w.close() for w in workers), return_exceptions=True)
        self.nannies = [nanny for nanny in self.nannies if nanny not in nannies]
        self._inproc_workers = [w for w in self._inproc_workers if w not in workers]
        self.n_workers = len(self._live_workers())

    def _live_workers(self) -> list[Any]:
        return [*(nanny for nanny in self.nannies if not self._nanny_gone(nanny)),
                *(w for w in self._inproc_workers if not self._inproc_gone(w))]

    # A worker the scheduler retired (and closed) is gone at once: ``retire_workers``
    # returns before its nanny has seen the process exit, and a ``scale(n)`` counting it
    # then retired one worker too many.
    def _nanny_gone(self, nanny: Any) -> bool:
        """It supervises no worker any more, or its worker was retired."""
        return nanny.stopped or nanny.worker_address in self.scheduler.retired

    def _inproc_gone(self, worker: Any) -> bool:
        """The in-process worker closed, or was retired."""
        return _closed(worker) or worker.address in self.scheduler.retired

    def adapt(self, Adaptive: Any = None, minimum: float = 0, maximum: float = math.inf,
              minimum_cores: int | None = None, maximum_cores: int | None = None,
              minimum_memory: Any = None, maximum_memory: Any = None,
              **kwargs: Any) -> Any:
        """Scale with the load from now on (dask's ``Adaptive``): more workers when tasks
        queue, fewer (retired gracefully) when idle, between ``minimum`` and ``maximum``
        workers (dask's defaults: 0 and no limit), which ``*_cores`` (threads) and
        ``*_memory`` (bytes or "100 GiB") narrow as in dask. Keywords ``wait_count``,
        ``interval`` and ``target_duration`` default to dask's ``distributed.adaptive.*``
        config. Replaces an earlier ``adapt``; ``scale()`` or ``close()`` does not stop it,
        ``.stop()`` on the returned object does (``close()`` too).

        Args:
            Adaptive: dask's first parameter, the class that adapts: ``shoal.Adaptive``
                (the default) or a subclass of it overriding ``target``,
                ``workers_to_close`` or ``recommendations``, as dask documents.

        Raises:
            TypeError: a number where dask takes the Adaptive class (``adapt(1, 4)``:
                pass ``minimum=``/``maximum=``), or a class not derived from
                ``shoal.Adaptive`` (dask's own drives dask's clusters).
            ValueError: a bound or duration is out of range (the message says which).
        """
        from shoal.cluster._adaptive import Adaptive as ShoalAdaptive

        if isinstance(Adaptive, (int, float)):
            raise TypeError(
                f"adapt({Adaptive!r}, ...): the first positional argument is the Adaptive "
                "class, as in dask.distributed; pass the bounds by keyword, like "
                "adapt(minimum=1, maximum=4)")
        if Adaptive is None:
            Adaptive = ShoalAdaptive
        elif not (isinstance(Adaptive, type) and issubclass(Adaptive, ShoalAdaptive)):
            raise TypeError(f"adapt(Adaptive={Adaptive!r}): shoal's LocalCluster adapts with "
                            "shoal.Adaptive or a subclass of it; derive your policy from "
                            "shoal.Adaptive (from shoal import Adaptive) instead")
        if minimum_cores is not None:
            minimum = max(minimum or 0, math.ceil(minimum_cores / self.threads_per_worker))
        if minimum_memory is not None:
            per = self.memory_limit or 1
            minimum = max(minimum or 0, math.ceil(parse_bytes(minimum_memory) / per))
        if maximum_cores is not None:
            maximum = min(maximum, maximum_cores // self.threads_per_worker)
        if maximum_memory is not None:
            per = self.memory_limit or 1
            maximum = min(maximum, parse_bytes(maximum_memory) // per)
        if self._adaptive is not None:
            self._adaptive.stop()  # (its step under way finishes: close still cuts it short)
            self._replaced_adaptives.append(self._adaptive)
        self._adaptive = Adaptive(self, minimum=minimum, maximum=maximum, **kwargs)
        return self._adaptive

    # --- dask-compatible surface -------------------------------------------------------------

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        return self.scheduler.dashboard_link

    @property
    def workers(self) -> dict[Any, Any]:
        """Worker name (0, 1, ...) → its nanny (or in-process worker), as dask's
        ``cluster.workers``."""
        return {w.name: w for w in self._live_workers()}

    @property
    def plan(self) -> set[Any]:
        """The names of the workers the cluster means to run (dask's ``Cluster.plan``):
        those started and those starting."""
        return set(self.workers)

    @property
    def requested(self) -> set[Any]:
        """The names of the workers asked for and started or starting (dask's
        ``Cluster.requested``; the same set as :attr:`plan` here, where a worker is asked for
        by starting it)."""
        return set(self.workers)

    @property
    def observed(self) -> set[Any]:
        """The names of the workers registered with the scheduler now (dask's
        ``Cluster.observed``)."""
        return {ws.name for ws in self.scheduler.state.workers.values()}

    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> Any:
        """Wait until at least ``n_workers`` workers have registered (an awaitable for an
        asynchronous cluster).

        Raises:
            ValueError: ``n_workers`` is not a positive integer.
            TimeoutError: not that many within ``timeout`` seconds (None: no limit).
        """
        timeout = wait_arguments(n_workers, timeout)
        self._check_usable("wait_for_workers()")
        return self._face(self._wait_for_workers(n_workers, timeout), None, "wait_for_workers")

    async def _wait_for_workers(self, n_workers: int, timeout: float | None) -> None:
        try:
            await self.scheduler.wait_for_workers(n_workers, timeout)
        except TimeoutError:
            raise TimeoutError(f"only {len(self.scheduler.state.workers)} of {n_workers} "
                               f"workers registered within {timeout} s") from None

    @property
    def asynchronous(self) -> bool:
        """Whether the methods return awaitables (``LocalCluster(asynchronous=True)``)."""
        return self._asynchronous

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """shoal's event loop, on which the scheduler and the nannies run (its own thread)."""
        return _loop.get_loop()

    @property
    def scheduler_info(self) -> dict[str, Any]:
        """dask's ``cluster.scheduler_info``: the scheduler's identity (``address``,
        ``services``...) and its ``workers`` by address, as of now."""
        from shoal.scheduler._views import scheduler_info

        if self.scheduler.address == "":
            return {"workers": {}}
        for _ in range(_READ_ATTEMPTS):
            try:  # read here, not on the loop: never waits (see _READ_ATTEMPTS)
                return scheduler_info(self.scheduler)
            except RuntimeError as exc:  # a dict changed size while it was read
                logger.debug("scheduler_info read again: %s", exc)
        return _loop.run_sync(_on_loop(scheduler_info, self.scheduler), self._timeout)

    def scale_up(self, n: int = 0, memory: Any = None, cores: int | None = None) -> Any:
        """dask's ``Cluster.scale_up``: ``scale(n, memory=, cores=)``."""
        return self.scale(n, cores=cores, memory=memory)

    def scale_down(self, workers: Any) -> Any:
        """Retire these workers gracefully and stop them (``workers``: worker names, as
        ``cluster.workers`` keys them, or addresses); returns once they are gone (an
        awaitable for an asynchronous cluster).

        Raises:
            ValueError: a worker that is not in this cluster.
        """
        if isinstance(workers, (str, int)):
            workers = [workers]
        workers = list(workers)
        self._check_usable("scale_down")
        return self._face(self._scale_down(workers), self._timeout, "scale_down")

    async def _scale_down(self, workers: list[Any]) -> None:
        by_name = {str(ws.name): a for a, ws in self.scheduler.state.workers.items()}
        live = self.scheduler.state.workers
        addresses, unknown = [], []
        for w in workers:
            if str(w) in by_name:
                addresses.append(by_name[str(w)])
            elif w in live:
                addresses.append(w)
            else:
                unknown.append(w)
        if unknown:
            raise ValueError(f"scale_down: no worker named {unknown} in this cluster; see "
                             f"cluster.workers (names) or scheduler_info() (addresses)")
        if addresses:
            await self._retire(addresses)

    def get_logs(self, cluster: bool = True, scheduler: bool = True,
                 workers: Any = True) -> Any:
        """Recent log lines, newest first, as text per source: ``"Cluster"`` (this object,
        its adaptive scaling), ``"Scheduler"`` and each worker's address (``workers``: True
        for all, or a list of addresses). An awaitable for an asynchronous cluster.

        Raises:
            RuntimeError: the cluster is closed.
        """
        self._check_usable("get_logs")
        return self._face(self._get_logs(cluster, scheduler, workers), self._timeout, "get_logs")

    async def _get_logs(self, cluster: bool, scheduler: bool, workers: Any) -> dict[str, str]:
        from shoal.cluster._cluster_logs import collect

        return await collect(self.scheduler, cluster, scheduler, workers)

    def get_client(self) -> Any:
        """The open Client connected to this cluster in this process, else a new one
        (asynchronous, to be awaited, for an asynchronous cluster)."""
        from shoal.client._client import Client
        from shoal.client._current import clients as _current

        for ref in reversed(_current):
            c = ref()
            if c is not None and c.status == "running" and c.cluster is self:
                return c
        return Client(self, asynchronous=self._asynchronous)

    def close(self, timeout: float | None = None) -> Any:
        """Stop the workers and the scheduler; waits for the processes to exit (an
        awaitable for an asynchronous cluster; a second close does nothing). ``timeout``
        bounds each of the two steps (None: 20 s); past it the worker processes are
        killed."""
        if timeout is None:
            timeout = 20.0
        if self.status == "closed":
            return Ready() if self._asynchronous else None
        self.status = Status.closed
        if self._asynchronous:
            return Pending(asyncio.run_coroutine_threadsafe(self._close_async(timeout),
                                                            _loop.get_loop()), "close")
        try:  # _stop bounds each of its two steps by ``timeout``; this is the backstop
            _loop.run_sync(self._stop(timeout), 2 * timeout + 5)
        except Exception as exc:  # the loop is gone, or called on it: kill what is left
            logger.warning("closing the local cluster failed (%r); killing its workers", exc)
            self._kill_now()
            self._quiet.release()
        return None

    async def _close_async(self, timeout: float = 20.0) -> None:
        """Close from shoal's loop (an asynchronous cluster's close, and its client's)."""
        self.status = Status.closed
        if self._started is not None and not self._started.done():
            self._started.cancel()  # its start closes what it made (see _start_or_close)
        await self._stop(timeout)

    async def _stop(self, timeout: float) -> None:
        """Stop adapting, the workers, then the scheduler, once (later calls wait for the
        first); past ``timeout`` the worker processes are killed."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_once(timeout))
        await asyncio.shield(self._stopping)

    async def _stop_once(self, timeout: float) -> None:
        self.status = Status.closed
        for adaptive in (*self._replaced_adaptives, self._adaptive):
            if adaptive is not None:
                adaptive._stop_now()

        async def stop_workers() -> None:
            closed = await asyncio.gather(*(n.close() for n in self.nannies),
                                          return_exceptions=True)
            closed += await asyncio.gather(*(w.close() for w in self._inproc_workers),
                                           return_exceptions=True)
            for outcome in closed:  # each closes even if another failed; failures are said
                if isinstance(outcome, Exception):
                    logger.warning("closing a worker of the local cluster failed: %r", outcome)

        try:
            # Bounded without waiting on the cancelled steps (see finish_within): past the
            # timeout the worker processes are killed and the scheduler still closes.
            if not await _loop.finish_within(stop_workers(), timeout,
                                             "closing the local cluster's workers"):
                self._kill_now()
            await _loop.finish_within(self.scheduler.close(), timeout,
                                      "closing the local cluster's scheduler")
        finally:
            self._quiet.release()

    def _kill_now(self) -> None:
        for n in self.nannies:
            n.kill_nowait()

    def __enter__(self) -> LocalCluster:
        if self._asynchronous:
            raise TypeError("an asynchronous LocalCluster is used with `async with`, not `with`")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __await__(self) -> Generator[Any, None, LocalCluster]:
        """``await LocalCluster(..., asynchronous=True)``: the cluster, once started.

        Raises:
            what its start raised (the cluster is then closed).
        """
        started = self._started

        async def ready() -> LocalCluster:
            if started is not None:
                await _start_of(started)
            return self

        return ready().__await__()

    async def __aenter__(self) -> LocalCluster:
        return await self

    async def __aexit__(self, *exc: Any) -> None:
        closing = self.close()
        if closing is not None:
            await closing

    def __repr__(self) -> str:
        return (
            f"LocalCluster({self.scheduler_address!r}, workers={self.n_workers}, "
            f"threads={self.n_workers * self.threads_per_worker}, "
            f"memory={self.memory_limit * self.n_workers / 2**30:.2f} GiB, "
            f"dashboard={self.dashboard_link})"
        )

    def _repr_html_(self) -> str:
        e = html.escape
        link = self.dashboard_link
        dash = f"<a href='{e(link)}' target='_blank'>{e(link)}</a>" if link else "off"
        return (
            f"<div><h3>shoal LocalCluster</h3><p>Scheduler: {e(self.scheduler_address)}<br>"
            f"Dashboard: {dash}<br>Workers: {self.n_workers} &middot; Threads per worker: "
            f"{self.threads_per_worker} &middot; Memory per worker: "
            f"{self.memory_limit / 2**30:.2f} GiB &middot; Using processes: {self.processes}</p></div>"
        )


# Reading the scheduler's dicts from another thread may meet one changing size: read again,
# this many times, before asking the loop (which may be busy) for a consistent copy.
_READ_ATTEMPTS = 5


async def _on_loop(fn: Any, *args: Any) -> Any:
    return fn(*args)


async def _start_of(started: concurrent.futures.Future[None]) -> None:
    """Wait for an asynchronous cluster's start from any loop. Shielded: a waiter
    cancelled (a timeout around ``await cluster``, a cancelled ``scale``) does not cancel
    the start; only ``close()`` does.

    Raises:
        RuntimeError: the cluster was closed before it had started.
    """
    try:
        await asyncio.shield(asyncio.wrap_future(started))
    except asyncio.CancelledError:
        if started.cancelled():
            raise RuntimeError("this LocalCluster was closed before it had started") from None
        raise


def _log_failure(what: str, future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("LocalCluster.%s failed (its awaitable was not awaited): %r", what,
                       future.exception())


class Pending:
    """An operation of an asynchronous cluster, already under way on shoal's loop (as
    dask's ``scale`` goes ahead without being awaited): ``await`` it, from any event loop,
    for its result; dropped unawaited, it still completes and a failure is logged."""

    __slots__ = ("_awaited", "_future", "_what")

    def __init__(self, future: concurrent.futures.Future[Any], what: str) -> None:
        self._future = future
        self._awaited = False
        self._what = what

    def __await__(self) -> Generator[Any, None, Any]:
        self._awaited = True
        return asyncio.wrap_future(self._future).__await__()

    def __del__(self) -> None:
        if not getattr(self, "_awaited", True):
            self._future.add_done_callback(functools.partial(_log_failure, self._what))


def _scheduler_config() -> dict[str, Any]:
    """The scheduler settings a dask.distributed user sets through dask's config."""
    import dask
    from dask.utils import parse_bytes, parse_timedelta

    ttl = dask.config.get("distributed.scheduler.worker-ttl", "5 minutes")
    bandwidth = dask.config.get("distributed.scheduler.bandwidth", 100_000_000)
    bandwidth = parse_bytes(bandwidth) if isinstance(bandwidth, str) else bandwidth
    if not isinstance(bandwidth, (int, float)) or bandwidth <= 0:
        raise ValueError(
            "distributed.scheduler.bandwidth must be a positive number of bytes per second "
            f"(like 100000000 or '100MB'), got {bandwidth!r}"
        )
    return {
        "allowed_failures": int(dask.config.get("distributed.scheduler.allowed-failures", 3)),
        "worker_ttl": float(parse_timedelta(ttl) if ttl is not None else 1e9),
        "bandwidth": float(bandwidth),
        "work_stealing": bool(dask.config.get("distributed.scheduler.work-stealing", True)),
    }


@_loop.at_exit
def _kill_leftovers() -> None:
    for cluster in list(_live):
        cluster._kill_now()


def _closed(worker: Any) -> bool:
    """An in-process worker that closed (retired by the client, or its scheduler gone)."""
    return worker.status in (Status.closing, Status.closed)
