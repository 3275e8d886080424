"""dask's ``Scheduler``, ``Worker`` and ``Nanny``, for setting a cluster up by hand in Python
(dask's "Python API (advanced)"): ``async with Scheduler() as s``, ``await Worker(s.address)``,
``await w.close()``, ``await s.finished()``.

Owns: running shoal's servers (``scheduler/_server.py``, ``worker/_server.py``,
``worker/_nanny.py``) for the user's event loop. Each starts, lives and closes on shoal's own
loop thread (``shoal/_loop.py``), as a LocalCluster's do; the user's loop only awaits, so it
is never blocked by a server's work. Also: bounding each start (a worker with no scheduler
to register with raises instead of waiting for ever), and closing what a failed or
cancelled start left. Must not know: task logic, the wire protocol, dask's argument rules
(``_server_options.py`` reads those).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.cluster import _server_options as opts
from shoal.cluster._server_lifecycle import ServerHandle, copy_live
from shoal.cluster._sizing import parse_memory_limit
from shoal.worker._name import check_worker_name

logger = logging.getLogger("shoal.cluster")

# How long ``await Nanny(...)`` waits, without a death_timeout, for its worker process to
# start and register once a scheduler answered at the address: LocalCluster's start-up
# timeout (Python's start-up on a loaded machine takes seconds).
NANNY_START_TIMEOUT = 60.0

_live_nannies: weakref.WeakSet[Nanny] = weakref.WeakSet()


# --- Scheduler --------------------------------------------------------------------------------

_SCHEDULER_TAKES = ("host, port, interface, protocol, security, dashboard_address, dashboard, "
                    "http_prefix, scheduler_file, allowed_failures, worker_ttl, idle_timeout, "
                    "preload and preload_argv")


class Scheduler(ServerHandle):
    """dask's ``Scheduler``, to start by hand: ``s = await Scheduler()`` or ``async with
    Scheduler() as s``; workers join at ``s.address``.

    Args:
        host: address to bind and advertise (default ``127.0.0.1``: nothing is exposed;
            dask binds every interface). Off loopback, peers authenticate: with no
            ``security`` a token is made up (``s.security``; pass it to workers and
            clients).
        port: 0 (the default) picks a free port.
        interface: a network interface (like ``"eth0"``) whose address to bind instead.
        protocol: ``"tcp"`` or ``"tls"`` (default: tls when ``security`` has certificates).
        security: a :class:`shoal.Security` or a dict of its arguments.
        dashboard_address: where to serve the dashboard (default ``":8787"``, another free
            port when taken; ``":0"`` any free port). ``dashboard=False``: none.
        http_prefix: the dashboard's pages under this path (like ``"/dask"``; default
            ``"/"``, the root).
        scheduler_file: write the address (and token) to this file for workers and clients.
        allowed_failures, worker_ttl, idle_timeout: as dask's (default: dask's config).
        preload, preload_argv: modules whose ``dask_setup(scheduler)`` runs at start.

    Raises:
        TypeError: a dask keyword shoal does not honour (``services``, ``plugins``...), or
            an unknown one; the message names it and what to do instead.
        ValueError: a value out of range.
        shoal._preload.PreloadError: a preload module could not be imported.
    """

    _kind = "Scheduler"

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int = 0,
        interface: str | None = None,
        protocol: str | None = None,
        security: Any = None,
        dashboard_address: str | None = None,
        dashboard: bool | None = None,
        scheduler_file: str | None = None,
        allowed_failures: int | None = None,
        worker_ttl: Any = None,
        idle_timeout: Any = None,
        preload: str | list[str] | None = None,
        preload_argv: Any = (),
        http_prefix: str | None = "/",
        **kwargs: Any,
    ) -> None:
        from shoal.cluster._local import _scheduler_config
        from shoal.scheduler._server import Scheduler as SchedulerServer

        opts.refuse("Scheduler", kwargs, opts.SCHEDULER_REFUSED, _SCHEDULER_TAKES)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"Scheduler(port={port!r}) must be a port number (0 for any)")
        if dashboard_address is not None and not isinstance(dashboard_address, str):
            raise TypeError(f"Scheduler(dashboard_address={dashboard_address!r}) must be like "
                            "':8787'")
        settings = _scheduler_config()
        if allowed_failures is not None:
            if (isinstance(allowed_failures, bool) or not isinstance(allowed_failures, int)
                    or allowed_failures < 0):
                raise ValueError(f"Scheduler(allowed_failures={allowed_failures!r}) must be a "
                                 "non-negative integer")
            settings["allowed_failures"] = allowed_failures
        ttl = opts.seconds(worker_ttl, "Scheduler(worker_ttl=)")
        if ttl is not None:
            settings["worker_ttl"] = ttl
        super().__init__()
        self._server = SchedulerServer(
            opts.bind_host(host, interface, "Scheduler") or "127.0.0.1", port,
            dashboard_address=None if dashboard is False else (dashboard_address or ":8787"),
            security=opts.coerce_security(security, "Scheduler"),
            protocol=opts.protocol_name(protocol, "Scheduler"), scheduler_file=scheduler_file,
            preload=preload, preload_argv=list(preload_argv or []) or None,
            idle_timeout=opts.seconds(idle_timeout, "Scheduler(idle_timeout=)"),
            http_prefix=http_prefix, **settings)

    async def _start_server(self) -> None:
        await self._server.start()

    async def close(self, timeout: float | None = None, reason: str = "unknown") -> None:
        """Close the scheduler (dask's arguments): ``timeout`` bounds each step (None:
        30 s), ``reason`` is logged. A second call waits for the first."""
        await super().close(timeout, reason)

    async def _close_server(self, timeout: float | None) -> None:
        await self._server.close()

    async def _server_ended(self) -> None:
        await self._server.finished()

    @property
    def address(self) -> str | None:
        """``tcp://host:port`` once started (None before)."""
        return self._server.address or None

    @property
    def port(self) -> int | None:
        address = self.address
        return None if address is None else int(address.rpartition(":")[2])

    @property
    def id(self) -> str:
        return str(self._server.id)

    @property
    def security(self) -> Any:
        """The scheduler's credentials (with the token it made up, bound off loopback)."""
        return self._server.security

    @property
    def dashboard_link(self) -> str | None:
        return self._server.dashboard_link  # type: ignore[no-any-return]

    @property
    def workers(self) -> dict[str, Any]:
        """Worker address → its record (``.name``, ``.nthreads``, ``.memory_limit``,
        ``.address``...), as of now (a copy)."""
        return copy_live(self._server.state.workers)

    @property
    def tasks(self) -> dict[Any, Any]:
        """Key → task record (``.state``...), as of now (a copy)."""
        return copy_live(self._server.state.tasks)

    @property
    def plugins(self) -> dict[str, Any]:
        """The scheduler plugins, by name (dask's ``Scheduler.plugins``)."""
        return self._server.plugins  # type: ignore[no-any-return]

    def add_plugin(self, plugin: Any, *, idempotent: bool = False, name: str | None = None,
                   **kwargs: Any) -> None:
        """dask's ``Scheduler.add_plugin`` (see the server's: not started on a running
        scheduler); from any thread (it runs on shoal's loop)."""
        _loop.run_sync(_on_loop(self._server.add_plugin, plugin, idempotent=idempotent,
                                name=name), None)

    def remove_plugin(self, name: str | None = None) -> None:
        """dask's ``Scheduler.remove_plugin``.

        Raises:
            ValueError: no plugin has that name.
        """
        _loop.run_sync(_on_loop(self._server.remove_plugin, name), None)

    @property
    def idle_timeout(self) -> float | None:
        """dask's ``Scheduler.idle_timeout``: seconds without work after which the scheduler
        closes itself (None: never). Settable while it runs, as dask's attribute (seconds
        or a duration like ``"30s"``); the change applies from its next check.

        Raises (when set):
            ValueError: not a positive duration.
        """
        return self._server.idle_timeout  # type: ignore[no-any-return]

    @idle_timeout.setter
    def idle_timeout(self, value: Any) -> None:
        self._server.idle_timeout = opts.seconds(value, "Scheduler.idle_timeout")

    def __repr__(self) -> str:
        return (f"<Scheduler {self.address!r}, status: {self.status.value}, "
                f"workers: {len(self._server.state.workers)}>")


# --- Worker and Nanny -------------------------------------------------------------------------

async def _on_loop(func: Any, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def _connect_timeout() -> float:
    from shoal.worker._worker_command import connect_timeout as configured

    return configured()


async def _scheduler_file_address(path: str, timeout: float, security: Any) -> tuple[str, Any]:
    """The address in the scheduler file at ``path`` (waiting up to ``timeout`` seconds for
    it to appear, without blocking the loop), and ``security`` with its token.

    Raises:
        OSError: no scheduler file there within ``timeout``.
    """
    from shoal.cluster._scheduler_file import read_scheduler_file, with_file_token

    deadline = time.monotonic() + timeout
    while True:  # ends: the file is read, or the deadline above passes (raise)
        try:
            info = read_scheduler_file(path, 0)  # one look: never blocks
            break
        except OSError:  # not there (yet), or not readable yet
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.05)  # ends: the file appears, or the deadline above
    return str(info["address"]), with_file_token(info, security)


class _WorkerArgs:
    """What Worker and Nanny share: the scheduler to join and the worker's shape."""

    def __init__(self, cls: str, scheduler_ip: Any, scheduler_port: Any, scheduler_file: Any,
                 protocol: Any, nthreads: Any, memory_limit: Any, resources: Any,
                 security: Any, death_timeout: Any, name: Any) -> None:
        from shoal.worker._resources import check_resources

        self.protocol = opts.protocol_name(protocol, cls)
        self.address = opts.scheduler_address(scheduler_ip, scheduler_port, scheduler_file,
                                              self.protocol, cls)
        self.scheduler_file = scheduler_file
        self.nthreads = opts.positive_threads(nthreads, cls)
        self.memory_limit = parse_memory_limit(memory_limit, self.nthreads)
        self.resources = check_resources(resources)
        self.security = opts.coerce_security(security, cls)
        self.death_timeout = opts.seconds(death_timeout, f"{cls}(death_timeout=)")
        self.connect_timeout = _connect_timeout()
        self.name = check_worker_name(name, cls)

    async def scheduler(self) -> tuple[str, Any]:
        """The scheduler's address and the security to reach it with."""
        if self.address is not None:
            return self.address, self.security
        bound = self.death_timeout if self.death_timeout is not None else self.connect_timeout
        return await _scheduler_file_address(self.scheduler_file, bound, self.security)


_WORKER_TAKES = ("the scheduler's address (scheduler_ip, scheduler_port) or scheduler_file, "
                 "nthreads, name, memory_limit, resources, local_directory, security, "
                 "scheduler_sni, "
                 "death_timeout, host, port, interface, contact_address, protocol, preload, "
                 "preload_argv, lifetime and lifetime_stagger")


class Worker(ServerHandle):
    """dask's ``Worker``, to start by hand: ``w = await Worker(s.address)`` or ``async
    with Worker(s.address) as w``. It runs tasks in this process, in a pool of ``nthreads``
    threads (use :class:`Nanny` for a worker process of its own); ``get_worker()`` in a task
    it runs returns this very object, as dask's, which reads what tasks ask of a worker
    (``.id``, ``.log_event``, ``.memory_manager``...) from the running worker.

    Args:
        scheduler_ip, scheduler_port: the scheduler's address (``"tcp://host:port"``, or a
            host and a port); or ``scheduler_file=``.
        nthreads: task threads (default: this machine's cores, as dask).
        name: the worker's name (default: its address).
        memory_limit: bytes, ``"4GB"``, a fraction of the machine's memory, ``"auto"`` (the
            default: the machine's memory times this worker's share of the cores), or
            0/None for none. Under a limit, values spill to ``local_directory``.
        resources: like ``{"GPU": 1}`` (default: dask's config).
        death_timeout: seconds to keep trying to register (and, once running, to get the
            scheduler back) before closing. The start is bounded even without it, by dask's
            ``distributed.comm.timeouts.connect`` (dask would wait for ever).
        host, port, interface, contact_address: what to bind and advertise (default: the
            local address that routes to the scheduler, any free port).
        protocol: must be the scheduler's (a shoal worker speaks its scheduler's protocol).
        security, local_directory, preload, preload_argv, lifetime, lifetime_stagger,
            scheduler_sni (the TLS SNI sent to the scheduler): as dask's.

    Raises:
        TypeError: a name that is not a str or an int; a dask keyword shoal does not
            honour (``executor``, ``plugins``, ``dashboard``...), or an unknown one; the
            message names it.
        ValueError: a value out of range.
        shoal._preload.PreloadError: a preload module could not be imported.
    """

    _kind = "Worker"

    def __init__(
        self,
        scheduler_ip: str | None = None,
        scheduler_port: int | None = None,
        *,
        scheduler_file: str | None = None,
        nthreads: int | None = None,
        local_directory: str | None = None,
        name: Any = None,
        resources: dict[str, float] | None = None,
        death_timeout: Any = None,
        preload: list[str] | None = None,
        preload_argv: list[str] | list[list[str]] | None = None,
        security: Any = None,
        contact_address: str | None = None,
        interface: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        protocol: str | None = None,
        lifetime: Any = None,
        lifetime_stagger: Any = None,
        lifetime_restart: bool | None = None,
        memory_limit: Any = "auto",
        scheduler_sni: str | None = None,
        **kwargs: Any,
    ) -> None:
        from shoal._preload import configured_preloads
        from shoal.worker._lifetime import configured_lifetime

        opts.refuse("Worker", kwargs, opts.WORKER_REFUSED, _WORKER_TAKES)
        if lifetime_restart:
            raise ValueError("Worker(lifetime_restart=True): a worker without a nanny cannot be "
                             "restarted at the end of its lifetime; use shoal.Nanny")
        self._args = _WorkerArgs("Worker", scheduler_ip, scheduler_port, scheduler_file,
                                 protocol, nthreads, memory_limit, resources, security,
                                 death_timeout, name)
        self._host = opts.bind_host(host, interface, "Worker")
        if port is None:
            port = 0
        if isinstance(port, bool) or not isinstance(port, (int, str)):
            raise ValueError(f"Worker(port={port!r}) must be a port number or a range like "
                             "'9000:9010'")
        self._port = port
        self._contact_address = contact_address
        self._scheduler_sni = scheduler_sni
        self._local_directory = local_directory
        self._lifetime, self._lifetime_stagger, _ = configured_lifetime(
            lifetime, lifetime_stagger, False)
        self._preloads = configured_preloads("worker", preload, preload_argv)
        super().__init__()

    async def _start_server(self) -> None:
        import random

        from shoal.comm._addresses import reachable_host, split_host_port
        from shoal.worker._lifetime import staggered
        from shoal.worker._server import SchedulerGone
        from shoal.worker._server import Worker as WorkerServer

        a = self._args
        bound = a.death_timeout if a.death_timeout is not None else a.connect_timeout
        address, security = await a.scheduler()
        host = self._host
        if host is None:  # the one local address that routes to the scheduler
            host = reachable_host(split_host_port(address, "scheduler address")[0])
        lifetime = None if self._lifetime is None else staggered(
            self._lifetime, self._lifetime_stagger, random.Random())
        worker = WorkerServer(
            address, nthreads=a.nthreads, name=a.name,
            memory_limit=a.memory_limit, host=host, port=self._port,
            contact_address=self._contact_address, death_timeout=a.death_timeout,
            connect_timeout=a.connect_timeout, local_directory=self._local_directory,
            security=security, resources=a.resources, lifetime=lifetime)
        worker.preloads = self._preloads
        worker.scheduler_sni = self._scheduler_sni
        worker.face = self  # get_worker() in its tasks returns this object, as in dask
        self._server = worker
        try:
            await asyncio.wait_for(worker.start(), bound)
        except (TimeoutError, SchedulerGone) as exc:
            last = worker.register_problem
            raise TimeoutError(
                f"Worker start timed out after {bound:g} s: no scheduler at {address} accepted "
                f"its registration{f' (last: {last})' if last else ''}. Is one running there, "
                "and does this worker have its credentials? (death_timeout= or dask's "
                "distributed.comm.timeouts.connect bound the wait)") from exc

    # dask's Worker.close puts two parameters before ``reason``, as shoal's must.
    async def close(  # type: ignore[override]
            self, timeout: float | None = 30, executor_wait: bool = True, nanny: bool = True,
            reason: str = "worker-close") -> None:
        """Close the worker, with dask's arguments in dask's order: ``timeout`` bounds each
        step of it, ``reason`` is logged. ``executor_wait`` and ``nanny`` are accepted and
        have no effect: the close does not wait for tasks still running in its threads,
        and a ``Worker`` made by hand has no nanny to close."""
        await super().close(timeout, reason)

    async def _close_server(self, timeout: float | None) -> None:
        await self._server.close()

    async def _server_ended(self) -> None:
        await self._server.wait_closed()

    @property
    def address(self) -> str | None:
        """``tcp://host:port`` of its data port, once started (None before)."""
        return None if self._server is None else (self._server.address or None)

    @property
    def name(self) -> Any:
        """Its name: the one given, else its address (once started)."""
        if self._args.name is not None:
            return self._args.name
        return None if self._server is None else self._server.name

    @property
    def nthreads(self) -> int:
        return self._args.nthreads

    @property
    def memory_limit(self) -> int:
        """Bytes (0: no limit)."""
        return self._args.memory_limit

    @property
    def resources(self) -> dict[str, float]:
        return dict(self._args.resources)

    @property
    def scheduler_address(self) -> str | None:
        return self._args.address if self._server is None else self._server.scheduler_address

    @property
    def local_directory(self) -> str | None:
        """Its own directory (uploaded files, spilled values), once started."""
        return None if self._server is None else self._server.local_directory

    @property
    def data(self) -> Any:
        """The values it holds, by key (empty before it starts)."""
        return {} if self._server is None else self._server.data

    @property
    def status(self) -> Any:
        """What ``get_worker().status`` says of a worker, as dask's ``Status`` (a ``str``
        too: ``== "running"`` holds): while it runs, the running worker's own (``running``,
        ``paused``, ``closing``...); else where the handle is (``init``, ``closed``,
        ``failed``...)."""
        from shoal._status import Status

        if self._phase == "running" and self._server is not None:
            return self._server.status
        return Status(self._phase)

    def __repr__(self) -> str:
        return (f"<Worker {self.address!r}, name: {self.name}, status: {self.status.value}, "
                f"nthreads: {self.nthreads}>")

    if not TYPE_CHECKING:  # (for the type checker, this class's attributes stay checked)

        def __getattr__(self, name: str) -> Any:
            # get_worker() in its tasks returns this object: what task code reads of a
            # worker (.id, .log_event, .memory_manager, attributes a plugin set...) comes
            # from the running worker, once started.
            server = self.__dict__.get("_server")
            if server is None or name.startswith("_"):
                raise AttributeError(f"'Worker' object has no attribute {name!r}"
                                     + ("" if server is not None or name.startswith("_")
                                        else " (not started yet: await it first)"))
            return getattr(server, name)


_NANNY_TAKES = ("the scheduler's address (scheduler_ip, scheduler_port) or scheduler_file, "
                "worker_port, nthreads, name, memory_limit, resources, local_directory, "
                "security, scheduler_sni, death_timeout, env, host, interface, listen_address, "
                "contact_address, protocol, preload, preload_argv, preload_nanny, "
                "preload_nanny_argv, lifetime, lifetime_stagger and lifetime_restart")


class Nanny(ServerHandle):
    """dask's ``Nanny``, to start by hand: ``n = await Nanny(s.address)`` or ``async with
    Nanny(s.address) as n``. It starts a worker process, restarts it when it dies or
    outgrows its memory limit, and stops it on close. ``await`` returns once the worker
    has registered with the scheduler (``n.worker_address``).

    shoal's nanny serves nothing itself (dask's listens on a port of its own): it
    supervises its worker from a task on shoal's loop, in this process, so ``n.address``
    is its worker's address.

    Args: as :class:`Worker`'s (``worker_port`` for the worker's port), plus ``env``
    (variables for the worker process), ``listen_address``, ``preload_nanny`` /
    ``preload_nanny_argv`` (``dask_setup(nanny)`` here) and ``lifetime_restart``, in
    dask's positional order; dask's ``services``, ``reconnect``, ``validate``, ``quiet``,
    ``silence_logs``, ``worker_class``, ``port`` and ``config`` hold their places there and
    must keep dask's defaults. ``death_timeout`` bounds the start (default: dask's connect timeout to reach the
    scheduler, then 60 s for the process to start and register).

    Raises:
        TypeError: a dask keyword shoal does not honour (``port``, ``worker_class``,
            ``config``...), or an unknown one; the message names it.
        ValueError: a value out of range.
        (when awaited) RuntimeError: no scheduler answered at the address within dask's
            connect timeout, or the worker process exited before registering, as dask's
            ``Nanny failed to start``; TimeoutError: not registered within the bound.
    """

    _kind = "Nanny"

    def __init__(
        self,
        scheduler_ip: str | None = None,
        scheduler_port: int | None = None,
        scheduler_file: str | None = None,
        worker_port: int | str | None = 0,
        nthreads: int | None = None,
        local_directory: str | None = None,
        services: Any = None,
        name: Any = None,
        memory_limit: Any = "auto",
        reconnect: bool = True,
        validate: bool = False,
        quiet: bool = False,
        resources: dict[str, float] | None = None,
        silence_logs: Any = None,
        death_timeout: Any = None,
        preload: list[str] | None = None,
        preload_argv: list[str] | list[list[str]] | None = None,
        preload_nanny: list[str] | None = None,
        preload_nanny_argv: list[str] | list[list[str]] | None = None,
        security: Any = None,
        contact_address: str | None = None,
        listen_address: str | None = None,
        worker_class: Any = None,
        env: dict[str, Any] | None = None,
        interface: str | None = None,
        host: str | None = None,
        port: Any = None,
        protocol: str | None = None,
        config: Any = None,
        *,
        lifetime: Any = None,
        lifetime_stagger: Any = None,
        lifetime_restart: bool | None = None,
        scheduler_sni: str | None = None,
        **kwargs: Any,
    ) -> None:
        # dask's positional slots shoal does not honour: refused unless at dask's default.
        opts.refuse("Nanny", {"services": services, "reconnect": reconnect,
                              "validate": validate, "quiet": quiet,
                              "silence_logs": silence_logs, "worker_class": worker_class,
                              "port": port, "config": config, **kwargs},
                    opts.NANNY_REFUSED, _NANNY_TAKES)
        self._args = _WorkerArgs("Nanny", scheduler_ip, scheduler_port, scheduler_file,
                                 protocol, nthreads, memory_limit, resources, security,
                                 death_timeout, name)
        if env is not None and not isinstance(env, dict):
            raise TypeError(f"Nanny(env={env!r}) must be a dict of variable names to values")
        if isinstance(worker_port, bool) or not isinstance(worker_port, (int, str, type(None))):
            raise ValueError(f"Nanny(worker_port={worker_port!r}) must be a port number or a "
                             "range like '9000:9010'")
        self._addresses: dict[str, Any] = {"host": host, "interface": interface, "listen_address": listen_address,
                           "contact_address": contact_address, "port": worker_port or None}
        opts.bind_host(host, interface, "Nanny")  # checked now; planned at start
        self._kwargs: dict[str, Any] = {
            "local_directory": local_directory,
            "env": None if env is None else {str(k): str(v) for k, v in env.items()},
            "lifetime": lifetime, "lifetime_stagger": lifetime_stagger,
            "lifetime_restart": lifetime_restart, "preload": preload,
            "preload_argv": preload_argv, "preload_nanny": preload_nanny,
            "preload_nanny_argv": preload_nanny_argv, "scheduler_sni": scheduler_sni}
        super().__init__()
        _live_nannies.add(self)

    async def _start_server(self) -> None:
        from shoal.comm._addresses import plan_addresses, split_host_port
        from shoal.worker._nanny import Nanny as NannyServer

        a = self._args
        address, security = await a.scheduler()
        # As dask's nanny: a scheduler must answer within the connect timeout (a death
        # timeout shorter than that bounds it instead, and its end is a TimeoutError).
        died = a.death_timeout is not None and a.death_timeout < a.connect_timeout
        bound = a.death_timeout if died and a.death_timeout is not None else a.connect_timeout
        try:
            await _reach_scheduler(address, security, bound, self._kwargs["scheduler_sni"])
        except OSError as exc:
            if died:
                raise TimeoutError(f"Nanny start timed out after {bound:g} s: {exc}") from exc
            raise RuntimeError(f"Nanny failed to start: {exc}") from exc
        plan = plan_addresses(**self._addresses,
                              towards=split_host_port(address, "scheduler address")[0])
        contact = plan.contact_host
        if plan.contact_port is not None:
            contact = plan.contact_address(plan.contact_port)
        ports = plan.bind_ports
        nanny = NannyServer(
            address, nthreads=a.nthreads, name=a.name,
            memory_limit=a.memory_limit, host=plan.bind_host,
            port="0" if ports == (0,) else f"{ports[0]}:{ports[-1]}", contact_address=contact,
            death_timeout=a.death_timeout, security=security, resources=a.resources,
            **self._kwargs)
        self._server = nanny
        await nanny.start()
        bound = a.death_timeout if a.death_timeout is not None else NANNY_START_TIMEOUT
        try:
            registered = await asyncio.wait_for(nanny.worker_registered(), bound)
        except TimeoutError:
            raise TimeoutError(f"Nanny start timed out after {bound:g} s: its worker process "
                               f"did not register with the scheduler at {address}") from None
        if registered is None:
            raise RuntimeError(f"Nanny failed to start: its worker process exited before "
                               f"registering with the scheduler at {address} (its error is "
                               "above, on this process's stderr)")

    async def close(self, timeout: float | None = 5, reason: str = "nanny-close") -> None:
        """Stop the worker process and the nanny (dask's arguments): the process is given
        ``timeout`` seconds to exit after SIGTERM, then killed; ``reason`` is logged."""
        await super().close(timeout, reason)

    async def _close_server(self, timeout: float | None) -> None:
        await self._server.close(5.0 if timeout is None else timeout)

    async def _server_ended(self) -> None:
        supervisor = self._server._supervisor
        if supervisor is not None:
            await asyncio.gather(asyncio.shield(supervisor), return_exceptions=True)

    def _kill_now(self) -> None:
        if self._server is not None:
            self._server.kill_nowait()

    @property
    def worker_address(self) -> str | None:
        """The address of its worker process, once registered (a restarted worker has a new
        one, known once it registers)."""
        return None if self._server is None else self._server.worker_address

    @property
    def address(self) -> str | None:
        """Its worker's address (shoal's nanny has none of its own), once started."""
        return self.worker_address

    @property
    def name(self) -> Any:
        return self._args.name if self._args.name is not None else self.worker_address

    @property
    def nthreads(self) -> int:
        return self._args.nthreads

    @property
    def memory_limit(self) -> int:
        return self._args.memory_limit

    @property
    def pid(self) -> int | None:
        """The worker process's id (None before it starts)."""
        return None if self._server is None else self._server.pid

    def __repr__(self) -> str:
        return (f"<Nanny {self.worker_address!r}, name: {self.name}, status: {self.status.value}, "
                f"pid: {self.pid}>")


async def _reach_scheduler(address: str, security: Any, timeout: float,
                           sni: str | None = None) -> None:
    """Connect to ``address`` and hang up, retrying with backoff for up to ``timeout``
    seconds (dask's nanny connects to its scheduler before it starts a worker process).

    Raises:
        OSError: nothing answered within ``timeout`` (the message names the address), or
            the scheduler refused our credentials (HandshakeError, at once).
    """
    from shoal.comm import connect
    from shoal.comm._handshake import HandshakeError

    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:  # ends: connected, refused credentials, or the deadline above passes
        try:
            conn = await connect(address, max(deadline - time.monotonic(), 0.01),
                                 security=security, role="worker", server_hostname=sni)
        except HandshakeError:
            raise
        except OSError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError(f"no scheduler answered at {address} within {timeout:g} s "
                              f"({exc or type(exc).__name__})") from exc
            await asyncio.sleep(min(delay, left))  # backoff; the last try is at the deadline
            delay = min(delay * 2, 1.0)
            continue
        conn.close()
        return


@_loop.at_exit
def _kill_leftovers() -> None:
    for nanny in list(_live_nannies):
        nanny._kill_now()


__all__ = ["Nanny", "Scheduler", "Worker"]
