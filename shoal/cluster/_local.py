"""LocalCluster: a scheduler in this process plus worker processes on this machine.

Owns: dask-compatible defaults for splitting cores into workers and threads, memory
limits, starting and stopping everything (no leftover processes, ever), and the reprs.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import math
import os
import weakref
from typing import Any

import psutil
from dask.utils import parse_bytes

from shoal import _logs, _loop
from shoal.scheduler._server import Scheduler
from shoal.worker._nanny import Nanny
from shoal.worker._resources import check_resources

logger = logging.getLogger("shoal.cluster")

_live: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def split_cores(n_workers: int | None, threads_per_worker: int | None, cores: int) -> tuple[int, int]:
    """dask's rule: up to 4 cores → one single-threaded worker per core; more → about
    sqrt(cores) workers; a given count fixes the other by dividing the cores."""
    if n_workers is None and threads_per_worker is None:
        if cores <= 4:
            return cores, 1
        procs = min(f for f in range(1, cores + 1) if cores % f == 0 and f >= math.sqrt(cores))
        return procs, cores // procs
    if n_workers is None:
        assert threads_per_worker is not None
        return max(1, cores // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cores // max(n_workers, 1))
    return n_workers, threads_per_worker


def parse_memory_limit(value: Any, nthreads: int, cores: int | None = None,
                       total: int | None = None) -> int:
    """A worker's memory limit in bytes, 0 for none, as dask's ``parse_memory_limit``
    reads it: None or 0 → no limit; "auto" → this machine's memory times the worker's share
    of its cores; a number up to 1 → that fraction of the machine's memory; bytes or a size
    like "4GB" otherwise; never more than the machine has.

    Raises:
        ValueError: not a size, or negative.
    """
    if value is None:
        return 0
    total = psutil.virtual_memory().total if total is None else total
    cores = _cpu_count() if cores is None else cores
    orig = value
    if value == "auto":
        value = int(total * min(1.0, nthreads / max(cores, 1)))
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                value = parse_bytes(value)
            except ValueError:
                raise ValueError(
                    f"memory_limit {orig!r} is not a size like '4GB', a fraction, 'auto' or "
                    "0/None for no limit") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"memory_limit must be bytes, a size like '4GB', a fraction, 'auto' "
                         f"or 0/None for no limit, got {orig!r}")
    if isinstance(value, float) and value <= 1:
        value = value * total
    return min(int(value), total)


class LocalCluster:
    """A scheduler in this process and ``n_workers`` worker processes.

    Args:
        n_workers, threads_per_worker: how to split this machine (dask's defaults).
        processes: workers in their own processes (True) or as threads here (False).
        memory_limit: per worker: bytes, "4GB", a fraction of the machine's memory, "auto"
            (the machine's memory split by cores, the default) or 0/None for no limit.
        local_directory: where each worker makes its own directory, for spilled values and
            uploaded files (dask's ``temporary-directory`` config, else the system's
            temporary directory).
        host: interface to bind (loopback by default: nothing is exposed).
        scheduler_port: 0 picks a free port.
        dashboard_address: ":8787" like dask; ":0" any free port; None for no dashboard.
        security: a :class:`shoal.Security` (TLS certificates, token), e.g.
            ``Security.temporary()``; binding off loopback without one makes up a token.
        protocol: "tcp://" or "tls://" (default: tls when ``security`` has certificates).
        resources: abstract resources of each worker, like ``{"GPU": 1}`` (default: dask's
            config ``distributed.worker.resources``); tasks submitted with
            ``resources={"GPU": 1}`` run only where that much is free.

    Raises:
        ValueError: an argument is out of range; the message says which.
    """

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        memory_limit: Any = "auto",
        host: str = "127.0.0.1",
        scheduler_port: int = 0,
        dashboard_address: str | None = ":8787",
        silence_logs: Any = None,
        timeout: float = 60.0,
        name: str | None = None,
        local_directory: str | None = None,
        security: Any = None,
        protocol: str | None = None,
        resources: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"LocalCluster got unexpected arguments {sorted(kwargs)}; it takes n_workers, "
                "threads_per_worker, processes, memory_limit, host, scheduler_port, "
                "dashboard_address, local_directory, security, protocol, resources"
            )
        for label, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
        if threads_per_worker == 0:
            raise ValueError("threads_per_worker must be at least 1")
        if not isinstance(scheduler_port, int) or not 0 <= scheduler_port < 65536:
            raise ValueError(f"scheduler_port must be a port number (0 for any), got {scheduler_port!r}")
        if dashboard_address is not None and not isinstance(dashboard_address, str):
            raise TypeError(f"dashboard_address must be like ':8787' or None, got {dashboard_address!r}")
        self.n_workers, self.threads_per_worker = split_cores(n_workers, threads_per_worker, _cpu_count())
        self.processes = processes
        self.memory_limit = parse_memory_limit(memory_limit, self.threads_per_worker)
        self.local_directory = local_directory
        self.host = host
        self.resources = check_resources(resources)  # per worker
        self.name = name or "LocalCluster"
        self.status = "starting"
        length = _logs.configured_length()  # distributed.admin.log-length, as the others
        _logs.ring("shoal.cluster", length)  # recent records, for get_logs()
        _logs.ring("shoal.adaptive", length)
        if protocol is not None and protocol.rstrip(":/") not in ("tcp", "tls"):
            raise ValueError(f"protocol must be 'tcp://' or 'tls://', got {protocol!r}")
        self.scheduler = Scheduler(host, scheduler_port, dashboard_address=dashboard_address,
                                   security=security, protocol=protocol, **_scheduler_config())
        self.nannies: list[Nanny] = []
        self._inproc_workers: list[Any] = []
        self._names = itertools.count()  # worker names: "0", "1"... never reused
        self._adaptive: Any = None
        self._timeout = timeout  # bounds start-up and each scale()
        _live.add(self)
        try:
            _loop.run_sync(self._start(), timeout)
        except BaseException:
            self.close()
            raise
        self.status = "running"

    async def _start(self) -> None:
        await self.scheduler.start()
        await self._add_workers(self.n_workers)

    async def _add_workers(self, n: int) -> None:
        """Start ``n`` more workers (in parallel) and wait until they have registered."""
        target = len(self.scheduler.state.workers) + n
        if self.processes:
            new = [
                Nanny(self.scheduler.address, nthreads=self.threads_per_worker,
                      name=str(next(self._names)), memory_limit=self.memory_limit, host=self.host,
                      local_directory=self.local_directory,
                      security=self.scheduler.security, resources=self.resources)
                for _ in range(n)
            ]
            self.nannies.extend(new)
            await asyncio.gather(*(nanny.start() for nanny in new))
        else:
            from shoal.worker._server import Worker

            for _ in range(n):
                w = Worker(self.scheduler.address, nthreads=self.threads_per_worker,
                           name=str(next(self._names)), memory_limit=self.memory_limit,
                           host=self.host, local_directory=self.local_directory,
                           security=self.scheduler.security, resources=self.resources)
                self._inproc_workers.append(w)
                await w.start()
        # Bounded: a worker that cannot start must not hang scale() or adapt() for good.
        await self.scheduler.wait_for_workers(target, self._timeout)

    # --- scaling -----------------------------------------------------------------------------

    def scale(self, n: int | None = None, *, cores: int | None = None,
              memory: Any = None) -> None:
        """Run ``n`` workers (or enough for ``cores`` threads / ``memory`` bytes): start
        new ones, or retire the extra ones gracefully (results still needed are first
        moved to the workers that stay). Returns once the cluster has that many workers.

        Raises:
            ValueError: ``n`` is negative or not an integer.
        """
        n = self._count_for(n, cores, memory)
        if self.status != "running":
            raise RuntimeError(f"this LocalCluster is {self.status}; scale() needs a running one")
        _loop.run_sync(self._scale(n), self._timeout)

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
        return [*self.nannies, *self._inproc_workers]

    def adapt(self, minimum: int | None = None, maximum: float | None = None,
              wait_count: int | None = None, interval: Any = None,
              target_duration: Any = None, **kwargs: Any) -> Any:
        """Scale with the load from now on (dask's ``Adaptive``): more workers when tasks
        queue, fewer (retired gracefully) when idle, between ``minimum`` and ``maximum``.
        Defaults come from dask's ``distributed.adaptive.*`` config. Replaces an earlier
        ``adapt``; ``scale()`` or ``close()`` does not stop it, ``.stop()`` on the returned
        object does (``close()`` too).

        Raises:
            ValueError: a bound or duration is out of range (the message says which).
        """
        from shoal.cluster._adaptive import Adaptive

        if self._adaptive is not None:
            self._adaptive.stop()
        self._adaptive = Adaptive(self, minimum=minimum, maximum=maximum,
                                  wait_count=wait_count, interval=interval,
                                  target_duration=target_duration, **kwargs)
        return self._adaptive

    # --- dask-compatible surface -------------------------------------------------------------

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        return self.scheduler.dashboard_link

    @property
    def workers(self) -> dict[str, Any]:
        """Worker name → its nanny (or in-process worker), as dask's ``cluster.workers``."""
        return {str(w.name): w for w in self._live_workers()}

    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> None:
        _loop.run_sync(self.scheduler.wait_for_workers(n_workers, timeout))

    @property
    def asynchronous(self) -> bool:
        """False: a LocalCluster's methods block (an asynchronous *Client* may start one:
        ``await Client(n_workers=..., asynchronous=True)``)."""
        return False

    def scale_up(self, n: int = 0, memory: Any = None, cores: int | None = None) -> None:
        """dask's ``Cluster.scale_up``: ``scale(n, memory=, cores=)``."""
        self.scale(n, cores=cores, memory=memory)

    def scale_down(self, workers: Any) -> None:
        """Retire these workers gracefully and stop them (``workers``: worker names, as
        ``cluster.workers`` keys them, or addresses); returns once they are gone.

        Raises:
            ValueError: a worker that is not in this cluster.
        """
        if isinstance(workers, (str, int)):
            workers = [workers]
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
        if self.status != "running":
            raise RuntimeError(f"this LocalCluster is {self.status}; scale_down needs a running one")
        if addresses:
            _loop.run_sync(self._retire(addresses), self._timeout)

    def get_logs(self, cluster: bool = True, scheduler: bool = True,
                 workers: Any = True) -> dict[str, str]:
        """Recent log lines, newest first, as text per source: ``"Cluster"`` (this object,
        its adaptive scaling), ``"Scheduler"`` and each worker's address (``workers``: True
        for all, or a list of addresses).

        Raises:
            RuntimeError: the cluster is closed.
        """
        from shoal._run import pickle_code
        from shoal.protocol._errors import error_to_exception
        from shoal.protocol._serialize import Serialized, loads
        from shoal.worker._introspect import worker_logs

        if self.status != "running":
            raise RuntimeError(f"this LocalCluster is {self.status}; get_logs needs a running one")
        fmt = _logs.configured_format()
        out: dict[str, str] = {}
        if cluster:
            rows = _logs.merged_newest([_logs.ring("shoal.cluster"), _logs.ring("shoal.adaptive")],
                                       fmt=fmt)
            out["Cluster"] = "\n".join(line for _lv, line in rows)
        if scheduler:
            out["Scheduler"] = "\n".join(line for _lv, line in self.scheduler.logs.newest(fmt=fmt))
        if workers:
            chosen = None if workers is True else [workers] if isinstance(workers, str) else list(workers)

            async def ask() -> dict[str, Any]:
                return await self.scheduler.start_run(None, pickle_code(worker_logs),  # type: ignore[arg-type]
                                                      chosen)

            for address, (ok, value) in _loop.run_sync(ask(), self._timeout).items():
                if not ok:
                    out[address] = f"<no logs: {error_to_exception(value)}>"
                    continue
                rows = loads(value) if isinstance(value, Serialized) else value
                out[address] = "\n".join(line for _lv, line in rows)
        return out

    def get_client(self) -> Any:
        """The open Client connected to this cluster in this process, else a new one."""
        from shoal.client._client import Client, _current

        for ref in reversed(_current):
            c = ref()
            if c is not None and c.status == "running" and c.cluster is self:
                return c
        return Client(self)

    def close(self, timeout: float = 20.0) -> None:
        """Stop the workers and the scheduler; waits for the processes to exit."""
        if self.status == "closed":
            return
        self.status = "closed"
        if self._adaptive is not None:
            self._adaptive.stop()

        async def stop() -> None:
            closed = await asyncio.gather(*(n.close() for n in self.nannies),
                                          return_exceptions=True)
            closed += await asyncio.gather(*(w.close() for w in self._inproc_workers),
                                           return_exceptions=True)
            for outcome in closed:  # each closes even if another failed; failures are said
                if isinstance(outcome, Exception):
                    logger.warning("closing a worker of the local cluster failed: %r", outcome)
            await self.scheduler.close()

        try:
            _loop.run_sync(stop(), timeout)
        except Exception as exc:
            logger.warning("closing the local cluster failed (%r); killing its workers", exc)
            for n in self.nannies:
                n.kill_nowait()

    def _kill_now(self) -> None:
        for n in self.nannies:
            n.kill_nowait()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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
    }


@_loop.at_exit
def _kill_leftovers() -> None:
    for cluster in list(_live):
        cluster._kill_now()
