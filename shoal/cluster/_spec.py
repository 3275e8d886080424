"""SpecCluster: a cluster made from specifications, ``{"cls": ..., "options": {...}}`` for the
scheduler and for each worker (dask's ``distributed.SpecCluster``).

Owns: turning specs into servers (shoal's public ``Scheduler``, ``Worker`` and ``Nanny``
of ``_servers.py``, or any class with dask's ``__await__``/``close`` shape), keeping the
running workers equal to ``worker_spec`` (``_correct_state``), scaling by editing the spec,
and closing. Everything runs on shoal's loop thread, as a LocalCluster's servers do; the
user's event loop only awaits. Must not know: how a server starts (the classes do), task
logic, adaptive policy (``_adaptive.py``).
"""

from __future__ import annotations

import asyncio
import copy
import html
import importlib
import logging
import math
import weakref
from collections.abc import Coroutine, Generator
from typing import Any

from dask.utils import parse_bytes

from shoal import _logs, _loop
from shoal._status import Status
from shoal.client._faces import Ready
from shoal.cluster import _local_options as options
from shoal.cluster._local import Pending
from shoal.cluster._server_lifecycle import copy_live
from shoal.cluster._sizing import wait_arguments

logger = logging.getLogger("shoal.cluster")

# Bounds the start of a synchronous cluster and each scale (shoal's own classes bound
# their starts too: dask's connect timeout, a nanny's 60 s).
_TIMEOUT = 120.0
# Reading the scheduler's dicts from this thread may meet one changing size: read again.
_READ_ATTEMPTS = 5

_live: weakref.WeakSet[SpecCluster] = weakref.WeakSet()


def resolve_class(cls: Any, what: str) -> Any:
    """The class a spec's ``"cls"`` names: a class, or a dotted string as dask's
    ``import_term`` takes it, where dask's ``Scheduler``, ``Worker`` and ``Nanny``
    (``"distributed.Nanny"``, ``"dask.distributed.Worker"``, ``"distributed.nanny.Nanny"``)
    are shoal's.

    Raises:
        TypeError: dask's own class object (it speaks dask's protocol, not shoal's), or
            another ``distributed.*`` name shoal does not have; the message says what to use.
        ImportError, AttributeError: a dotted name that does not import.
    """
    from shoal.cluster import _servers

    shoal_classes = {"Scheduler": _servers.Scheduler, "Worker": _servers.Worker,
                     "Nanny": _servers.Nanny}
    if isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        if module.split(".")[0] == "distributed" or module.startswith("dask.distributed"):
            if name in shoal_classes:
                return shoal_classes[name]
            raise TypeError(f"{what} {cls!r}: shoal has no such class; its SpecCluster runs "
                            "shoal.Scheduler, shoal.Worker, shoal.Nanny or a class of your own")
        if not module:
            raise ValueError(f"{what} {cls!r} must be a dotted name like 'mypackage.MyWorker'")
        return getattr(importlib.import_module(module), name)
    module = getattr(cls, "__module__", "") or ""
    if module.split(".")[0] == "distributed":
        name = getattr(cls, "__name__", repr(cls))
        use = f"shoal.{name}" if name in shoal_classes else "shoal's classes"
        raise TypeError(f"{what} is dask.distributed's {name}, which speaks dask's protocol; "
                        f"a shoal SpecCluster runs {use} (from shoal import {name})"
                        if name in shoal_classes else
                        f"{what} is dask.distributed's {name}; a shoal SpecCluster runs "
                        f"{use}: shoal.Scheduler, shoal.Worker, shoal.Nanny")
    if not callable(cls):
        raise TypeError(f"{what} must be a class or a dotted name, got {cls!r}")
    return cls


def _check_spec(spec: Any, what: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or "cls" not in spec:
        raise TypeError(f"{what} must be a dict like {{'cls': Worker, 'options': {{...}}}}, "
                        f"got {spec!r}")
    if not isinstance(spec.get("options", {}), dict):
        raise TypeError(f"{what}['options'] must be a dict of keyword arguments, got "
                        f"{spec['options']!r}")
    group = spec.get("group")
    if group is not None and (not isinstance(group, (list, tuple))
                              or not all(isinstance(s, str) for s in group)):
        raise TypeError(f"{what}['group'] must be a list of the name suffixes of the workers "
                        f"the entry starts, like ['-0', '-1'], got {group!r}")
    return spec


def member_names(name: Any, spec: dict[str, Any]) -> list[Any]:
    """The names of the workers one spec entry starts: the entry's name, or for a
    ``"group"`` entry its name (as a string) followed by each suffix, as dask's."""
    group = spec.get("group")
    if group is None:
        return [name]
    return [str(name) + suffix for suffix in group]


class SpecCluster:
    """A cluster from a full specification of its scheduler and workers, as dask's.

    >>> from shoal import Scheduler, Worker, Nanny, SpecCluster
    >>> scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":8787"}}
    >>> workers = {"my-worker": {"cls": Worker, "options": {"nthreads": 1}},
    ...            "my-nanny": {"cls": Nanny, "options": {"nthreads": 2}}}
    >>> cluster = SpecCluster(scheduler=scheduler, workers=workers)

    ``worker_spec`` holds the specs by name and ``workers`` the running servers by the
    same names; ``scale(n)`` edits the spec (new workers from the ``worker`` template,
    named 0, 1...) and brings the servers in line. An entry with a ``"group"`` of name
    suffixes starts several workers (its class does, as dask's ``MultiWorker`` or a batch
    job), named by the entry's name and each suffix: ``{"cls": MultiWorker, "options":
    {...}, "group": ["-0", "-1"]}`` under name 0 runs workers "0-0" and "0-1". ``scale``
    counts entries; ``plan`` and ``requested`` name the workers; ``scale_down`` of any
    member's name or address takes its whole entry down. A ``"cls"`` is a class called as
    ``cls(scheduler_address, name=name, **options)`` (the scheduler's as ``cls(**options)``)
    and awaited; dotted strings are imported, with dask's ``"distributed.Nanny"`` and the
    like standing for shoal's classes. shoal's ``Worker``/``Nanny`` get the scheduler's
    ``security`` unless their options name one.

    Args:
        workers: name → spec of the workers to start.
        scheduler: the scheduler's spec (default: shoal's ``Scheduler`` with a dashboard).
        worker: the spec ``scale(n)`` adds workers of (needed to scale up).
        asynchronous: for use in a coroutine: ``await SpecCluster(..., asynchronous=True)``
            (or ``async with``) starts it, and ``scale``, ``scale_down``,
            ``wait_for_workers`` and ``close`` return awaitables.
        loop: accepted and ignored (everything runs on shoal's loop, ``cluster.loop``).
        security: the credentials a client of this cluster uses (default: the scheduler's).
        silence_logs: a logging level shoal's loggers hand on from while the cluster is
            open (dask's default False: logging is left alone).
        name: the cluster's name (default: the class's name).
        shutdown_on_close: accepted; shoal always stops a cluster's worker processes when
            the interpreter exits (they die with their nanny's process).
        scheduler_sync_interval: accepted: ``scheduler_info`` is read from the scheduler,
            always current, when it runs in this process.
        shutdown_scheduler: whether ``close()`` closes the scheduler too.

    Raises:
        TypeError: a spec that is not ``{"cls": ..., "options": {...}}`` (with an optional
            ``"group"`` list of suffixes), dask's own classes, or a ``distributed.*`` name
            shoal lacks.
        RuntimeError: the cluster failed to start (the cause is chained); what started is
            closed first.
    """

    def __init__(
        self,
        workers: dict[Any, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        worker: dict[str, Any] | None = None,
        asynchronous: bool = False,
        loop: Any = None,
        security: Any = None,
        silence_logs: Any = False,
        name: str | None = None,
        shutdown_on_close: bool = True,
        scheduler_sync_interval: Any = 1,
        shutdown_scheduler: bool = True,
    ) -> None:
        from shoal.comm._security import Security

        if workers is not None and not isinstance(workers, dict):
            raise TypeError(f"SpecCluster(workers=) must be a dict of name to spec, got "
                            f"{workers!r}")
        for key, spec in (workers or {}).items():
            _check_spec(spec, f"SpecCluster(workers=)[{key!r}]")
        if scheduler is not None:
            _check_spec(scheduler, "SpecCluster(scheduler=)")
        if worker is not None:
            _check_spec(worker, "SpecCluster(worker=)")
        if security is not None and not isinstance(security, Security):
            raise TypeError(f"SpecCluster(security=) must be a shoal.Security, got {security!r}")
        self.scheduler_spec = copy.copy(scheduler)
        self.worker_spec: dict[Any, Any] = dict(workers) if workers else {}
        self.new_spec = copy.copy(worker)
        self.scheduler: Any = None
        self.workers: dict[Any, Any] = {}
        # The spec each running entry started from: a closed entry's group names the
        # workers to retire after it left ``worker_spec``.
        self._started_specs: dict[Any, dict[str, Any]] = {}
        self.security = security if security is not None else Security()
        self._security_given = security is not None
        self._name = name or type(self).__name__
        self.shutdown_on_close = shutdown_on_close
        self.shutdown_scheduler = shutdown_scheduler
        self.scheduler_sync_interval = scheduler_sync_interval
        self.status = Status.created
        self._asynchronous = bool(asynchronous)
        self._i = 0
        self._quiet = options.QuietLogs(options.log_level(silence_logs))
        length = _logs.configured_length()  # recent records, for get_logs()
        _logs.ring("shoal.cluster", length)
        _logs.ring("shoal.adaptive", length)
        self._adaptive: Any = None
        self._replaced_adaptives: list[Any] = []
        self._lock: asyncio.Lock | None = None  # serialises corrections (shoal's loop)
        self._correcting: asyncio.Future[None] | None = None  # the correction pending
        self._starting: asyncio.Future[None] | None = None
        self._stopping: asyncio.Future[None] | None = None
        # A scheduler in another process: a client of it, and its latest scheduler_info.
        self._remote: Any = None
        self._remote_info: dict[str, Any] = {"workers": {}}
        _live.add(self)
        if self._asynchronous:
            return  # started by ``await cluster`` (as dask's)
        try:
            _loop.run_sync(self._start_once(), _TIMEOUT)
        except BaseException:  # not swallowed: closes what started, then re-raised
            self.close()
            raise

    # --- start --------------------------------------------------------------------------------

    async def _start_once(self) -> None:
        """On shoal's loop: start the scheduler and the specified workers (once)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        if self.status in (Status.closing, Status.closed):
            raise RuntimeError(f"this {self._name} is closed; make a new one")
        self.status = Status.starting
        try:
            if self.scheduler is None:
                spec = self.scheduler_spec or {"cls": "shoal.Scheduler",
                                               "options": {"dashboard": True}}
                cls = resolve_class(spec["cls"], "SpecCluster(scheduler=)['cls']")
                self.scheduler = cls(**spec.get("options", {}))
                self.scheduler = await self.scheduler
            if not self._security_given:
                given = getattr(self.scheduler, "security", None)
                if given is not None:
                    self.security = given
            if self._scheduler_server is None and self._remote is None:
                await self._connect_remote()
            await self._correct_state()
        except Exception as exc:
            self.status = Status.failed
            raise RuntimeError(f"{self._name} failed to start: {exc}") from exc
        if self.status == Status.starting:
            self.status = Status.running

    def __await__(self) -> Generator[Any, None, SpecCluster]:
        """``await cluster``: start it (once) and bring the workers in line with
        ``worker_spec``; returns the cluster.

        Raises:
            RuntimeError: the start failed (what started is closed), or it is closed.
        """

        async def ready() -> SpecCluster:
            await _loop.run_async(self._await_here())
            return self

        return ready().__await__()

    async def _await_here(self) -> None:
        try:
            await self._start_once()
        except BaseException:  # not swallowed: what started is closed, then re-raised
            await self._stop(20.0)
            raise
        await self._correct_state()

    async def __aenter__(self) -> SpecCluster:
        return await self

    async def __aexit__(self, *exc: Any) -> None:
        closing = self.close()
        if closing is not None:
            await closing

    def __enter__(self) -> SpecCluster:
        if self._asynchronous:
            raise TypeError(f"an asynchronous {self._name} is used with `async with`")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- keeping the workers equal to the spec -----------------------------------------------

    def _correct_state(self) -> asyncio.Future[None]:
        """On shoal's loop: start the workers ``worker_spec`` has and ``workers`` lacks and
        retire the others; calls while one waits for the lock share it."""
        if self._correcting is None:
            self._correcting = asyncio.ensure_future(self._correct_state_internal())
        return self._correcting

    async def _correct_state_internal(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # ends: the correction before this one ends
            self._correcting = None
            to_close = [name for name in self.workers if name not in self.worker_spec]
            if to_close:
                await self._close_workers(to_close, retire=True)
            to_open = [name for name in self.worker_spec if name not in self.workers]
            if to_open and self.status not in (Status.closing, Status.closed):
                await self._open_workers(to_open)

    async def _open_workers(self, names: list[Any]) -> None:
        from shoal.cluster import _servers

        made: dict[Any, Any] = {}
        failures: list[BaseException] = []
        address = getattr(self.scheduler, "contact_address", None) or self.scheduler.address
        for name in names:
            spec = self.worker_spec[name]
            opts = dict(spec.get("options", {}))
            opts.setdefault("name", name)
            try:
                cls = resolve_class(spec["cls"], f"worker_spec[{name!r}]['cls']")
                takes = cls in (_servers.Worker, _servers.Nanny) or getattr(
                    cls, "_takes_scheduler_security", False)
                if (takes and "security" not in opts
                        and getattr(self.scheduler, "security", None) is not None):
                    opts["security"] = self.scheduler.security  # its token, if it made one
                made[name] = cls(address, **opts)
            except Exception as exc:  # raised below, after the others started
                failures.append(exc)
        names_started = list(made)
        outcomes = await asyncio.gather(*(_awaited(w) for w in made.values()),
                                        return_exceptions=True)
        for name, outcome in zip(names_started, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failures.append(outcome)
                self.worker_spec.pop(name, None)  # a later scale makes a fresh one
            else:
                self.workers[name] = made[name]
                self._started_specs[name] = self.worker_spec.get(name, {})
        for name in names:
            if name not in made:
                self.worker_spec.pop(name, None)
        if failures:
            raise failures[0]

    async def _close_workers(self, names: list[Any], retire: bool) -> None:
        """Retire (their data moved to the others) and close these workers."""
        server = self._scheduler_server
        wanted = {str(member) for n in names if n in self.workers
                  for member in member_names(n, self._started_specs.get(n, {}))}
        if retire and server is not None and server.address:
            from shoal.scheduler import _membership

            addresses = [a for a, ws in server.state.workers.items() if str(ws.name) in wanted]
            if addresses:
                await _membership.retire_workers(server, addresses, None, True, 30.0)
        elif retire and self._remote is not None:
            info = await self._refresh_remote()
            addresses = [a for a, w in info["workers"].items() if str(w.get("name")) in wanted]
            if addresses:
                await self._remote.retire_workers(workers=addresses, close_workers=True)
        handles = [self.workers.pop(name) for name in names if name in self.workers]
        for name in names:
            self._started_specs.pop(name, None)
        closed = await asyncio.gather(*(w.close() for w in handles), return_exceptions=True)
        for outcome in closed:  # each closes even if another failed; failures are said
            if isinstance(outcome, Exception):
                logger.warning("closing a worker of %s failed: %r", self._name, outcome)

    # --- scaling -------------------------------------------------------------------------------

    def _new_worker_name(self, worker_number: int) -> Any:
        """The name of the ``worker_number``-th new worker (override to choose names)."""
        return worker_number

    def new_worker_spec(self) -> dict[Any, Any]:
        """``{name: spec}`` of the next worker ``scale`` adds: the ``worker`` template
        under the first free name."""
        name = self._new_worker_name(self._i)
        while name in self.worker_spec:  # ends: names are unique, the spec is finite
            self._i += 1
            name = self._new_worker_name(self._i)
        return {name: self.new_spec}

    def _threads_per_worker(self) -> int:
        if not self.new_spec:
            raise ValueError("to scale by cores= the cluster needs a worker= spec with nthreads")
        for key in ("nthreads", "ncores", "threads", "cores"):
            if key in self.new_spec.get("options", {}):
                return int(self.new_spec["options"][key])
        raise ValueError("to scale by cores= the worker= spec's options must give nthreads")

    def _memory_per_worker(self) -> int:
        for key in ("memory_limit", "memory"):
            if self.new_spec and key in self.new_spec.get("options", {}):
                return int(parse_bytes(self.new_spec["options"][key]))
        raise ValueError("to use scale(memory=...) your worker definition must include a "
                         "memory_limit definition")

    def _count_for(self, n: Any, memory: Any, cores: Any) -> int:
        if memory is not None:
            n = max(n, math.ceil(parse_bytes(memory) / self._memory_per_worker()))
        if cores is not None:
            n = max(n, math.ceil(cores / self._threads_per_worker()))
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"scale(n) takes a non-negative integer number of workers, got {n!r}")
        if n > len(self.worker_spec) and not self.new_spec:
            raise ValueError(f"{self._name}.scale({n}): it has {len(self.worker_spec)} workers "
                             "and no worker= spec to make more from; pass worker={'cls': ..., "
                             "'options': {...}}")
        return n

    def scale(self, n: int = 0, memory: Any = None, cores: int | None = None) -> Any:
        """Have ``n`` workers (or enough for ``memory`` bytes / ``cores`` threads): edits
        ``worker_spec`` now (those not yet running go first, then the newest), then starts
        or retires workers to match. Waits for that (an awaitable for an asynchronous
        cluster; dask returns without waiting, shoal's answer is ready when it returns).

        Raises:
            ValueError: ``n`` is not a non-negative integer, or more workers are asked of a
                cluster with no ``worker`` spec.
        """
        n = self._count_for(n, memory, cores)
        if len(self.worker_spec) > n:
            launched = {str(w.get("name")) for w in self.scheduler_info["workers"].values()}
            for name in [k for k, spec in self.worker_spec.items()
                         if not launched.intersection(map(str, member_names(k, spec)))]:
                if len(self.worker_spec) <= n:
                    break
                del self.worker_spec[name]
        while len(self.worker_spec) > n:
            self.worker_spec.popitem()
        if self.status not in (Status.closing, Status.closed):
            while len(self.worker_spec) < n:
                self.worker_spec.update(self.new_worker_spec())
        return self._face(self._corrected(), _TIMEOUT, "scale")

    scale_up = scale  # (dask's alias)

    async def _corrected(self) -> None:
        if self.status == Status.created:
            return  # an asynchronous cluster not awaited yet: its start follows the spec
        await self._correct_state()

    def scale_down(self, workers: Any) -> Any:
        """Remove these workers (names, as ``workers`` keys them, or addresses) from the
        spec and retire them (an awaitable for an asynchronous cluster)."""
        if isinstance(workers, (str, int)):
            workers = [workers]
        for w in self._names_of(list(workers)):
            self.worker_spec.pop(w, None)
        return self._face(self._corrected(), _TIMEOUT, "scale_down")

    def _names_of(self, workers: list[Any]) -> list[Any]:
        """Spec names for names or worker addresses (of a group's member: its entry)."""
        by_address = {}
        server = self._scheduler_server
        if server is not None:
            by_address = {a: ws.name for a, ws in copy_live(server.state.workers).items()}
        elif self._remote is not None:
            by_address = {a: w.get("name") for a, w in self._remote_info["workers"].items()}
        by_str = {str(member): k for k, spec in self.worker_spec.items()
                  for member in member_names(k, spec)}
        out = []
        for w in workers:
            if w in self.worker_spec:
                out.append(w)
            elif w in by_address and str(by_address[w]) in by_str:
                out.append(by_str[str(by_address[w])])
            elif str(w) in by_str:
                out.append(by_str[str(w)])
        return list(dict.fromkeys(out))

    # what shoal.Adaptive drives (on shoal's loop)
    async def _scale(self, n: int) -> None:
        while len(self.worker_spec) < n:
            self.worker_spec.update(self.new_worker_spec())
        await self._correct_state()

    async def _retire(self, addresses: list[str]) -> None:
        for name in self._names_of(addresses):
            self.worker_spec.pop(name, None)
        await self._correct_state()

    @property
    def _supports_scaling(self) -> bool:
        return bool(self.new_spec)

    @property
    def plan(self) -> set[Any]:
        """The names of the workers the spec asks for (a group's: each member's)."""
        return {member for name, spec in self.worker_spec.items()
                for member in member_names(name, spec)}

    @property
    def requested(self) -> set[Any]:
        """The names of the workers both asked for and started (a group's: each member's)."""
        return {member for name in self.workers if name in self.worker_spec
                for member in member_names(name, self.worker_spec[name])}

    @property
    def observed(self) -> set[Any]:
        """The names of the workers the scheduler has now."""
        return {w.get("name") for w in self.scheduler_info["workers"].values()}

    def adapt(self, Adaptive: Any = None, minimum: float = 0, maximum: float = math.inf,
              minimum_cores: int | None = None, maximum_cores: int | None = None,
              minimum_memory: Any = None, maximum_memory: Any = None, **kwargs: Any) -> Any:
        """Scale with the load from now on (``shoal.Adaptive``, as LocalCluster's
        ``adapt``): between ``minimum`` and ``maximum`` workers, narrowed by ``*_cores``
        and ``*_memory`` per the ``worker`` spec's nthreads and memory_limit. Needs a
        ``worker`` spec and shoal's own ``Scheduler``.

        Raises:
            TypeError: a class not derived from ``shoal.Adaptive``.
            ValueError: no ``worker`` spec, or a bound out of range.
        """
        from shoal.cluster._adaptive import Adaptive as ShoalAdaptive

        if Adaptive is None:
            Adaptive = ShoalAdaptive
        elif not (isinstance(Adaptive, type) and issubclass(Adaptive, ShoalAdaptive)):
            raise TypeError(f"adapt(Adaptive={Adaptive!r}): shoal's clusters adapt with "
                            "shoal.Adaptive or a subclass of it")
        if not self.new_spec:
            raise ValueError(f"{self._name}.adapt() needs a worker= spec to make workers from")
        if minimum_cores is not None:
            minimum = max(minimum or 0, math.ceil(minimum_cores / self._threads_per_worker()))
        if minimum_memory is not None:
            minimum = max(minimum or 0,
                          math.ceil(parse_bytes(minimum_memory) / self._memory_per_worker()))
        if maximum_cores is not None:
            maximum = min(maximum, math.floor(maximum_cores / self._threads_per_worker()))
        if maximum_memory is not None:
            maximum = min(maximum,
                          math.floor(parse_bytes(maximum_memory) / self._memory_per_worker()))
        if self._adaptive is not None:
            self._adaptive.stop()
            self._replaced_adaptives.append(self._adaptive)
        self._adaptive = Adaptive(self, minimum=minimum, maximum=maximum, **kwargs)
        return self._adaptive

    # --- reading -------------------------------------------------------------------------------

    @property
    def _scheduler_server(self) -> Any:
        """shoal's scheduler server, when the scheduler is shoal's and runs here."""
        return getattr(self.scheduler, "_server", None)

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address (``"<Not Connected>"`` before it starts, as dask's)."""
        address = getattr(self.scheduler, "address", None)
        return address if address else "<Not Connected>"

    @property
    def dashboard_link(self) -> str | None:
        return getattr(self.scheduler, "dashboard_link", None)

    @property
    def scheduler_info(self) -> dict[str, Any]:
        """dask's ``cluster.scheduler_info``: the scheduler's identity and its ``workers``
        by address, as of now (``{"workers": {}}`` before it starts, or when the
        scheduler is not shoal's own in this process)."""
        from shoal.scheduler._views import scheduler_info

        server = self._scheduler_server
        if server is None and self._remote is not None:
            if not self._asynchronous and not _loop.in_loop_thread():
                return _loop.run_sync(self._refresh_remote(), _TIMEOUT)
            _loop.call_soon(self._refresh_soon)  # (dask's copy is synced periodically too)
            return self._remote_info
        if server is None or not server.address:
            return {"workers": {}}
        for _ in range(_READ_ATTEMPTS):
            try:
                return scheduler_info(server)
            except RuntimeError as exc:  # a dict changed size while it was read
                logger.debug("scheduler_info read again: %s", exc)
        return _loop.run_sync(_on_loop(scheduler_info, server), _TIMEOUT)

    async def _connect_remote(self) -> None:
        """A client of a scheduler in another process (a ``SubprocessScheduler``): for
        ``scheduler_info``, retiring and ``wait_for_workers``. Not a current client:
        ``get_client()`` never answers it."""
        from shoal.client import _current
        from shoal.client._client import Client

        address = getattr(self.scheduler, "address", None)
        if not isinstance(address, str):
            return  # a scheduler class without an address: nothing to ask
        self._remote = await Client(address, asynchronous=True, set_as_default=False,
                                    security=self.security)
        _current.clients[:] = [r for r in _current.clients if r() is not self._remote]
        await self._refresh_remote()

    async def _refresh_remote(self) -> dict[str, Any]:
        from shoal.client import _cluster_info

        self._remote_info = dict(await _cluster_info.scheduler_info(self._remote))
        return self._remote_info

    def _refresh_soon(self) -> None:
        remote = self._remote
        if remote is not None and remote.status == "running":
            task = asyncio.ensure_future(self._refresh_remote())
            task.add_done_callback(_log_refresh)

    @property
    def name(self) -> str:
        return self._name

    @property
    def asynchronous(self) -> bool:
        return self._asynchronous

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """shoal's event loop, on which the scheduler and the workers run."""
        return _loop.get_loop()

    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> Any:
        """Wait until the scheduler has at least ``n_workers`` workers (an awaitable for an
        asynchronous cluster).

        Raises:
            ValueError: ``n_workers`` is not a positive integer.
            TimeoutError: not that many within ``timeout`` seconds (None: no limit).
        """
        timeout = wait_arguments(n_workers, timeout)
        return self._face(self._wait_for_workers(n_workers, timeout), None, "wait_for_workers")

    async def _wait_for_workers(self, n: int, timeout: float | None) -> None:
        server = self._scheduler_server
        if server is None and self._remote is not None:
            await self._remote.wait_for_workers(n, timeout)
            return
        if server is None:
            raise RuntimeError(f"{self._name}.wait_for_workers needs a started scheduler "
                               "with an address; use Client(cluster).wait_for_workers(n)")
        try:
            await server.wait_for_workers(n, timeout)
        except TimeoutError:
            raise TimeoutError(f"only {len(server.state.workers)} of {n} workers registered "
                               f"within {timeout} s") from None

    def get_logs(self, cluster: bool = True, scheduler: bool = True,
                 workers: Any = True) -> Any:
        """Recent log lines, newest first, as text per source: ``"Cluster"``,
        ``"Scheduler"`` and each worker's address (``workers``: True for all, or a list
        of addresses). An awaitable for an asynchronous cluster.

        Raises:
            RuntimeError: the scheduler is not shoal's own in this process (ask a
                ``Client(cluster)``: ``get_scheduler_logs()``, ``get_worker_logs()``).
        """
        return self._face(self._get_logs(cluster, scheduler, workers), _TIMEOUT, "get_logs")

    async def _get_logs(self, cluster: bool, scheduler: bool, workers: Any) -> dict[str, str]:
        from shoal.cluster._cluster_logs import collect

        server = self._scheduler_server
        if server is None or not server.address:
            raise RuntimeError(f"{self._name}.get_logs needs shoal's own Scheduler running in "
                               "this process; ask a Client(cluster) instead: "
                               "client.get_scheduler_logs(), client.get_worker_logs()")
        return await collect(server, cluster, scheduler, workers)

    def get_client(self) -> Any:
        """A Client of this cluster: the open one in this process, else a new one."""
        from shoal.client._client import Client
        from shoal.client._current import clients as _current

        for ref in reversed(_current):
            c = ref()
            if c is not None and c.status == "running" and c.cluster is self:
                return c
        return Client(self, asynchronous=self._asynchronous)

    def _face(self, work: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        if not self._asynchronous:
            return _loop.run_sync(work, timeout)
        return Pending(asyncio.run_coroutine_threadsafe(_within(work, timeout),
                                                        _loop.get_loop()), what)

    # --- close ---------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> Any:
        """Stop adapting, close the workers, then the scheduler (unless
        ``shutdown_scheduler=False``); a second close does nothing. An awaitable for an
        asynchronous cluster. ``timeout`` bounds each step (None: 20 s)."""
        timeout = 20.0 if timeout is None else timeout
        if self.status == Status.closed:
            return Ready() if self._asynchronous else None
        if self._asynchronous:
            return Pending(asyncio.run_coroutine_threadsafe(self._stop(timeout),
                                                            _loop.get_loop()), "close")
        try:  # _stop bounds each step by ``timeout``; this is the backstop
            _loop.run_sync(self._stop(timeout), 2 * timeout + 5)
        except Exception as exc:  # the loop is gone, or called on it
            logger.warning("closing %s failed: %r", self._name, exc)
            self._quiet.release()
        return None

    async def _stop(self, timeout: float) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_once(timeout))
        await asyncio.shield(self._stopping)

    async def _stop_once(self, timeout: float) -> None:
        self.status = Status.closing
        for adaptive in (*self._replaced_adaptives, self._adaptive):
            if adaptive is not None:
                adaptive._stop_now()
        try:
            self.worker_spec.clear()
            await _loop.finish_within(self._close_workers(list(self.workers), retire=False),
                                      timeout, f"closing {self._name}'s workers")
            if self._remote is not None:
                await _loop.finish_within(_awaited(self._remote.close()), timeout,
                                          f"closing {self._name}'s client of its scheduler")
            if self.scheduler is not None and self.shutdown_scheduler and hasattr(
                    self.scheduler, "close"):
                await _loop.finish_within(_awaited(self.scheduler.close()), timeout,
                                          f"closing {self._name}'s scheduler")
        finally:
            self._quiet.release()
            self.status = Status.closed

    # --- reprs -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        workers = self.scheduler_info["workers"].values()
        # dask's: the class's name (the cluster's), the name, the address, the totals
        return (f"{self._name}({self._name}, {self.scheduler_address!r}, "
                f"workers={len(workers)}, threads={sum(w['nthreads'] for w in workers)})")

    def _repr_html_(self) -> str:
        e = html.escape
        link = self.dashboard_link
        dash = f"<a href='{e(link)}' target='_blank'>{e(link)}</a>" if link else "off"
        return (f"<div><h3>{e(type(self).__name__)} {e(str(self._name))}</h3>"
                f"<p>Scheduler: {e(self.scheduler_address)}<br>Dashboard: {dash}<br>"
                f"Workers: {len(self.workers)}</p></div>")

    @classmethod
    def from_name(cls, name: str) -> Any:
        """dask's hook for a class that finds a running cluster by name (none here)."""
        raise NotImplementedError(f"{cls.__name__}.from_name: this class cannot find a "
                                  "running cluster by name")


async def _awaited(value: Any) -> Any:
    return await value if hasattr(value, "__await__") else value


async def _within(work: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
    return await asyncio.wait_for(work, timeout)


def _log_refresh(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("refreshing a SpecCluster's scheduler_info: %r", task.exception())


async def _on_loop(fn: Any, *args: Any) -> Any:
    return fn(*args)
