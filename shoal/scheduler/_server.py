"""The scheduler's I/O shell around :class:`shoal.scheduler._state.SchedulerState`.

Owns: the listening socket, connections to workers and clients, turning messages into
events and commands into messages, the function table, scattered data in transit,
request/response questions (``client.run``, ``scheduler_info``...), the heartbeat clock
and the dashboard. Holds the state object; never decides anything about tasks itself.

Liveness times (registration, heartbeats, ticks) come from the monotonic clock: a wall-clock
jump (a suspended laptop, a paused VM, an NTP step) must not evict every worker. Wall-clock
times exist only where users see them (task stream, ``started``, ``last_seen`` in views).

This module holds the constructor, the lifecycle, plugin hooks and the views; the rest of
the class comes from one mixin per concern (see ``_server_base``): ``_server_messages``,
``_server_commands``, ``_server_side`` and ``_server_runs``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
import uuid
import weakref
from typing import Any

from shoal import _gc, _logs
from shoal._preload import configured_preloads
from shoal._profiler import Sampler
from shoal.comm import Connection, listen
from shoal.comm._handshake import new_token
from shoal.comm._security import Security, is_loopback
from shoal.protocol._messages import Close, Request, Response
from shoal.protocol._serialize import Serialized
from shoal.scheduler import _datasets as datasets
from shoal.scheduler import _topics as topics
from shoal.scheduler._amm_shell import AmmSettings, AmmShell
from shoal.scheduler._events import Tick
from shoal.scheduler._idle import IdleTimeout, activity_mark, is_busy
from shoal.scheduler._metadata import Metadata
from shoal.scheduler._placement import UNKNOWN_DURATION
from shoal.scheduler._plugins import SchedulerPlugins
from shoal.scheduler._server_commands import ServerCommands
from shoal.scheduler._server_messages import ServerMessages
from shoal.scheduler._server_runs import WorkerRuns
from shoal.scheduler._server_side import SideMachines
from shoal.scheduler._state import SchedulerState
from shoal.scheduler._task_table import TaskTable
from shoal.scheduler._turns import Turn
from shoal.scheduler.coordination._shell import CoordinationShell

logger = logging.getLogger("shoal.scheduler")

TICK_INTERVAL = 1.0


def _event_log_length() -> int | None:
    """Events kept per topic: dask's ``distributed.admin.low-level-log-length`` (1,000;
    None keeps all), or an older name of it such as
    ``distributed.scheduler.events-log-length`` (``_logs.low_level_log_length``)."""
    from shoal._logs import low_level_log_length

    return low_level_log_length(topics.DEFAULT_MAXLEN)


def _events_cleanup_delay() -> float | None:
    """Seconds after which a departed worker's or client's topic loses its events: dask's
    ``distributed.scheduler.events-cleanup-delay`` ("1h"; None: never).

    Raises:
        ValueError: the value is not a time (dask's ``parse_timedelta``).
    """
    import dask
    from dask.utils import parse_timedelta

    key = "distributed.scheduler.events-cleanup-delay"
    value = dask.config.get(key, "1h")
    if value is None:
        return None
    try:
        return float(parse_timedelta(value, default="seconds"))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"dask config {key} must be a time such as '1h' or '30s', or None "
                         f"(never clean up), got {value!r}: {exc}") from None


def _blocked_handlers() -> list[str]:
    """dask's ``distributed.scheduler.blocked-handlers``: the handlers (requests) refused.

    Raises:
        ValueError: it is not a list of names.
    """
    import dask

    key = "distributed.scheduler.blocked-handlers"
    value = dask.config.get(key, None) or []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"dask config {key} must be a list of handler names (dask's "
                         f"Scheduler.handlers, e.g. ['broadcast']), got {value!r}")
    return list(value)


def _transition_log_length() -> int | None:
    """Story rows (transitions) kept: dask's ``distributed.admin.low-level-log-length``
    (1,000; None keeps every row, as dask's deque does), or an older name of it."""
    from shoal._logs import low_level_log_length

    value = low_level_log_length(1000)
    return None if value is None else max(0, value)


def _erred_history() -> int:
    """Failures kept for the dashboard's /exceptions: dask's
    ``distributed.diagnostics.erred-tasks.max-history``."""
    import dask

    value = dask.config.get("distributed.diagnostics.erred-tasks.max-history", 100)
    return max(0, int(value)) if value is not None else 100


def _dashboard_tls() -> Any:
    """HTTPS for the dashboard from dask's ``distributed.scheduler.dashboard.tls.cert``,
    ``.key`` and ``.ca-file`` (loaded as dask loads them: no client certificate is asked
    for), else None (no cert configured).

    Raises:
        OSError, ssl.SSLError: the files cannot be read.
    """
    import ssl

    import dask.config

    tls = dask.config.get("distributed.scheduler.dashboard.tls", None) or {}
    if not tls.get("cert"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.get("ca-file") or None)
    ctx.load_cert_chain(tls["cert"], tls.get("key") or None)
    return ctx


def _task_stream_length() -> int:
    """Task stream records kept for ``get_task_stream`` and the dashboard: dask's
    ``distributed.scheduler.dashboard.tasks.task-stream-length``."""
    import dask

    value = dask.config.get("distributed.scheduler.dashboard.tasks.task-stream-length", None)
    return max(1, int(value)) if value is not None else 100_000


def _unknown_duration() -> float:
    """Seconds assumed for a task prefix never measured: dask's
    ``distributed.scheduler.unknown-task-duration``."""
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.scheduler.unknown-task-duration", None)
    if value is None:
        return UNKNOWN_DURATION
    return float(parse_timedelta(value, default="s"))


def _idle_timeout() -> float | None:
    """dask's ``distributed.scheduler.idle-timeout`` in seconds (None: no timeout)."""
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.scheduler.idle-timeout", None)
    if value in (None, False, 0, "0"):
        return None
    return float(parse_timedelta(value, default="s"))


def _no_workers_timeout() -> float | None:
    """dask's ``distributed.scheduler.no-workers-timeout`` in seconds (None: wait forever)."""
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.scheduler.no-workers-timeout", None)
    if value is None:  # as dask: 0 is no grace at all, not "no timeout"
        return None
    return float(parse_timedelta(value, default="s"))


class Scheduler(ServerMessages, ServerCommands, SideMachines, WorkerRuns):
    """Serves a :class:`SchedulerState` over TCP (and in-process to a local client)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        dashboard_address: str | None = None,
        allowed_failures: int = 3,
        worker_ttl: float = 300.0,
        bandwidth: float = 100e6,
        work_stealing: bool = True,
        security: Security | None = None,
        protocol: str | None = None,
        scheduler_file: str | None = None,
        auth: bool | None = None,
        preload: str | list[str] | None = None,
        preload_argv: list[str] | list[list[str]] | None = None,
        idle_timeout: float | None = None,
        http_prefix: str | None = None,
    ) -> None:
        """``security``: TLS certificates and/or token (default: dask's config and
        ``SHOAL_TOKEN``). ``protocol``: "tcp" or "tls" (default: tls when certificates are
        configured). ``auth``: False disables the token made up when binding off loopback
        (``--no-auth``); None decides by the address. ``preload``/``preload_argv``: modules
        whose ``dask_setup(scheduler)`` runs at the end of :meth:`start` (default: dask's
        ``distributed.scheduler.preload``; see ``shoal/_preload.py``). ``idle_timeout``:
        seconds without work after which the scheduler closes itself (default: dask's
        ``distributed.scheduler.idle-timeout``; None there: never). ``http_prefix``: the
        dashboard's pages under this path (dask's, like ``"/dask"``; default: the root).

        Raises:
            shoal._preload.PreloadError: a preload module could not be imported.
        """

        self.host = host
        self.port = port
        self.security = security if security is not None else Security()
        self.protocol = (protocol or "").rstrip(":/") or None
        self.scheduler_file = scheduler_file
        self.auth = auth
        self.token_generated = False
        self.state = SchedulerState(allowed_failures=allowed_failures, worker_ttl=worker_ttl,
                                    bandwidth=bandwidth, unknown_duration=_unknown_duration(),
                                    work_stealing=work_stealing,
                                    no_workers_timeout=_no_workers_timeout(),
                                    erred_history=_erred_history(),
                                    story_size=_transition_log_length(),
                                    task_stream_size=_task_stream_length())
        self.state.spans.clock = time.time  # (a running span's ``stop`` is now, as dask's)
        self.topics = topics.Topics(_event_log_length(), _events_cleanup_delay())
        # dask's Server.blocked_handlers: requests refused (_requests.answer)
        self.blocked_handlers = _blocked_handlers()
        self._blocked = frozenset(self.blocked_handlers)
        self.datasets = datasets.Datasets()
        self.plugin_host = SchedulerPlugins()
        self.address = ""
        self.dashboard_address = dashboard_address
        self.http_prefix = http_prefix
        self.dashboard: Any = None
        self.dashboard_warning: str | None = None
        self.started = time.time()
        self.id = f"Scheduler-{uuid.uuid4()}"
        self._server: asyncio.base_events.Server | None = None
        self._workers: dict[str, Connection] = {}
        self._worker_fids: dict[str, set[str]] = {}
        self._held: list[Connection] = []  # written at the end of _carry_out_all
        self._held_clients: list[Connection] = []  # ... after the workers' (_carry_out_all)
        self._clients: dict[str, Connection] = {}
        self._functions: dict[str, bytes] = {}
        self._client_fids: dict[str, set[str]] = {}  # blobs each client sent
        # Blobs forgotten lately, for a client whose submit crossed the forget message.
        self._forgotten: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        # Scattered bytes and nbytes, kept until every worker sent them acknowledged.
        self._scattered: dict[Any, tuple[Serialized, int]] = {}
        self._pending_runs: dict[int, tuple[Connection, int, dict[str, Any], set[str]]] = {}
        self._run_futures: dict[int, asyncio.Future[Any]] = {}
        self._turn = Turn()  # this loop turn's budget for workers' reports (_turns)
        self._waiting: collections.deque[Connection] = collections.deque()  # their backlogs
        self._steps_armed = False
        self._worker_joined = asyncio.Event()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._tps: list[tuple[float, int]] = []
        self.coordination = CoordinationShell(self)
        self.metadata = Metadata()  # client.set_metadata / get_metadata
        self.logs = _logs.ring("shoal.scheduler", _logs.configured_length())
        self._gc_release: weakref.finalize | None = None  # set by start()
        self.preloads = configured_preloads("scheduler", preload, preload_argv)
        self._idle = IdleTimeout(_idle_timeout() if idle_timeout is None else idle_timeout)
        self._idle_close: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()  # set once close() has finished
        self.profiler: Sampler | None = None  # its event loop's sampler, set by start()
        # The Active Memory Manager (dask's distributed.scheduler.active-memory-manager).
        self.amm = AmmShell(self, AmmSettings())
        # Workers whose data retire_workers is moving off (how many retirements of each).
        self.retiring: dict[str, int] = {}
        # Workers retire_workers closes (or was closing when they died), by address, the
        # latest RETIRED_KEPT: their nannies ask before restarting them (NannyWorkerExited).
        self.retired: dict[str, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from shoal.comm._addresses import is_wildcard, reachable_host

        self._choose_credentials()
        scheme = self.protocol or (
            "tls" if self.security.ssl_context("scheduler", server=True) else "tcp")
        self._server = await listen(self.host, self.port, self._on_connection,
                                    security=self.security, role="scheduler", scheme=scheme)
        port = self._server.sockets[0].getsockname()[1]
        host = reachable_host() if is_wildcard(self.host) else self.host
        self.address = f"{scheme}://{host}:{port}"
        logger.info("scheduler at %s", self.address)
        self._loop = asyncio.get_running_loop()
        self._spawn(self._tick_loop())
        if self.amm.settings.start:
            self.amm.start()
        from shoal.scheduler._profiling import loop_sampler

        self.profiler = loop_sampler()  # client.profile(scheduler=True)
        # The GC policy (shoal/_gc.py) while this scheduler runs; its tasks count as held.
        gc_loop = asyncio.get_running_loop()
        _gc.keeper().acquire(gc_loop)
        # (watched through this server: a compiled SchedulerState takes no weak references)
        _gc.keeper().watch(self, "state.tasks")
        self._gc_release = weakref.finalize(self, _gc.keeper().release, gc_loop)
        if self.dashboard_address is not None:
            await self._open_dashboard(self.dashboard_address)
        if self.scheduler_file:
            self._write_scheduler_file(self.scheduler_file)
        try:
            await self.preloads.setup(self)
            await self.plugin_host.start_added(self)  # what the preloads added
        except Exception:  # not swallowed: closes what started, then re-raised
            await self.close()
            raise

    def _choose_credentials(self) -> None:
        """Off loopback, every peer authenticates: by TLS certificates, or by a token made
        up here when none is given (unless ``auth=False``, which is only warned about)."""
        sec = self.security
        if self.auth is False:
            sec.token = None
            exposure = ("on loopback: any local user" if is_loopback(self.host)
                        else f"on {self.host or 'every interface'}: anyone who can reach it")
            logger.warning("authentication disabled (--no-auth): %s can run code on this "
                           "cluster", exposure)
            return
        if sec.token or (is_loopback(self.host) and not self.auth):
            return
        if sec.ssl_context("scheduler", server=True) is not None and not self.auth:
            return  # mutual TLS: a peer without a certificate from the cluster's CA is refused
        sec.token = new_token()
        self.token_generated = True
        logger.info("bound to %s: authentication is on with a token made up for this "
                    "scheduler (workers and clients need it: --scheduler-file, SHOAL_TOKEN)",
                    self.host)

    def _write_scheduler_file(self, path: str) -> None:
        from shoal.cluster._scheduler_file import write_scheduler_file

        services = {}
        if self.dashboard is not None:
            services["dashboard"] = self.dashboard.port
        write_scheduler_file(path, {
            "type": "Scheduler", "id": f"Scheduler-{id(self):x}", "address": self.address,
            "services": services, "started": self.started, "workers": {},
        }, self.security.token)

    async def _open_dashboard(self, address: str) -> None:
        try:
            from shoal.dashboard import open_dashboard_with_fallback
        except ImportError:
            logger.warning("dashboard not available")
            return
        host, _, port = address.rpartition(":")
        host = host or self.host
        source: Any = self  # implements shoal.dashboard.DashboardSource
        https = _dashboard_tls() or (self.security.dashboard_ssl_context()
                                     if self.address.startswith("tls") else None)
        self.dashboard, self.dashboard_warning = await open_dashboard_with_fallback(
            source, host, int(port or 0), https, self.http_prefix
        )
        if self.dashboard_warning:
            logger.warning(self.dashboard_warning)

    @property
    def dashboard_link(self) -> str | None:
        """The status page's link through dask's ``distributed.dashboard.link`` template."""
        from shoal._dashboard_link import format_dashboard_link

        return None if self.dashboard is None else format_dashboard_link(str(self.dashboard.link))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.plugin_host.before_close()  # first: the plugins see a working scheduler
        if self._gc_release is not None:
            self._gc_release()
        for conn in list(self._workers.values()):
            conn.send(Close("scheduler closing"))
        await asyncio.sleep(0)
        self.coordination.close()
        await self.amm.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.preloads.teardown()
        await self.plugin_host.close()
        if self.profiler is not None:
            self.profiler.close()
        if self.dashboard is not None:
            await self.dashboard.close()
        for conn in [*self._workers.values(), *self._clients.values()]:
            conn.close()
        if self._server is not None:
            self._server.close()
        if self.scheduler_file:  # as dask: the file names a scheduler that is gone now
            from shoal.cluster._scheduler_file import remove_scheduler_file

            remove_scheduler_file(self.scheduler_file, self.address)
        self._finished.set()

    async def finished(self) -> None:
        """Return once the scheduler has closed (``close()``, or its idle timeout)."""
        await self._finished.wait()  # ends: close(), by whoever calls it

    async def _tick_loop(self) -> None:
        while True:  # ends: close() cancels this task
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            try:
                self._apply([Tick(now)])
            except Exception:  # one bad tick must not end worker-TTL checks for good
                logger.exception("scheduler tick failed; ticking on")
            if self.topics.departed:  # distributed.scheduler.events-cleanup-delay
                self._apply_side(self.topics, [topics.CleanupDue(now)])
            self._tps.append((now, self.state.completed_total))
            del self._tps[:-10]
            if self._idle.timeout is not None and self._idle.observe(
                    now, is_busy(self.state), activity_mark(self.state)):
                logger.info("scheduler closing after being idle for %g s", self._idle.timeout)
                # Not one of self._tasks: close() cancels and awaits those.
                self._idle_close = asyncio.get_running_loop().create_task(self.close())
                return

    async def wait_for_workers(self, n: int, timeout: float | None) -> None:
        async def wait() -> None:
            while len(self.state.workers) < n:
                self._worker_joined.clear()
                await self._worker_joined.wait()

        # timeout None waits as long as asked (dask's semantics); close() cancels the request
        await asyncio.wait_for(wait(), timeout)

    # --- plugin hooks and client requests --------------------------------------------------------

    def _hook(self, hook: str, *args: Any, **kwargs: Any) -> None:
        """Call a scheduler plugin hook; awaitables it returns run as tasks of ours."""
        if self.plugin_host.plugins:
            for pending in self.plugin_host.call(hook, *args, **kwargs):
                self._spawn(pending)

    async def _answer(self, conn: Connection, msg: Request) -> None:
        from shoal.scheduler import _requests

        try:
            value = await _requests.answer(self, conn, msg.op, dict(msg.args))
            conn.send(Response(msg.request_id, True, value))
        except _requests.HandlerBlocked as exc:  # the client raises ValueError, as dask's
            conn.send(Response(msg.request_id, False, ["ValueError", str(exc)]))
        except Exception as exc:
            conn.send(Response(msg.request_id, False, f"{type(exc).__name__}: {exc}"))

    # --- the user's view (client.cluster.scheduler) ---------------------------------------------

    @property
    def tasks(self) -> TaskTable:
        """Key → task record (``.state``, ``.who_has``, ``.prefix.name``...): dask's live
        table, read-only; lookups cost no copy, iteration walks a snapshot (``_task_table``).
        The records are dask's ``TaskState`` as plugins read it (``_records``)."""
        return TaskTable(self)

    @property
    def workers(self) -> dict[str, Any]:
        """Address → dask's ``WorkerState`` (``.status``, ``.memory``, ``.processing``...),
        a read-only view of each (``_records``)."""
        from shoal.scheduler._records import WorkerStateView

        return {a: WorkerStateView(ws, self) for a, ws in self.state.workers.items()}

    @property
    def clients(self) -> dict[str, Any]:
        """``Client.id`` → dask's ``ClientState`` (``.client_key``, ``.wants_what``), with
        the pseudo-clients that hold keys (``"fire-and-forget"``, published datasets)."""
        from shoal.scheduler._records import clients

        return clients(self)

    @property
    def task_prefixes(self) -> dict[str, Any]:
        """Name → dask's ``TaskPrefix`` (``.states``, ``.duration_average``, ``.groups``)
        of the prefixes the scheduler has tasks of. O(task groups) per read."""
        from shoal.scheduler._records import task_prefixes

        return task_prefixes(self)

    @property
    def task_groups(self) -> dict[Any, Any]:
        """Name → dask's ``TaskGroup`` (``.states``, ``.prefix``, ``.done``) of the groups
        the scheduler has tasks of."""
        from shoal.scheduler._records import task_groups

        return task_groups(self)

    @property
    def loop(self) -> Any:
        """The scheduler's event loop with tornado ``IOLoop``'s scheduling methods
        (``call_later``, ``add_callback``...; see ``_loop_view``), as plugins use dask's.

        Raises:
            RuntimeError: the scheduler has not started and no loop is running here.
        """
        from shoal.scheduler._loop_view import LoopView

        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError("the scheduler has no event loop yet: read "
                                   "scheduler.loop once it has started (a plugin's start "
                                   "hook, or later)") from None
        return LoopView(loop)

    @property
    def total_nthreads(self) -> int:
        """dask's ``Scheduler.total_nthreads``: the threads of every worker."""
        return sum(ws.nthreads for ws in self.state.workers.values())

    @property
    def extensions(self) -> dict[str, Any]:
        """dask's ``Scheduler.extensions``, of those shoal has: ``"spans"``, the records of
        ``span`` blocks (``extensions["spans"].spans[span_id]``: a ``Span`` with its
        tasks' ``states``, ``start``/``stop``, ``duration``, ``cumulative_worker_metrics``).
        Read them on the scheduler's loop (``client.run_on_scheduler``) or between
        steps."""
        return {"spans": self.state.spans}

    @property
    def idle_timeout(self) -> float | None:
        """dask's ``Scheduler.idle_timeout``: seconds without work after which the scheduler
        closes itself (None: never). A change applies from the next tick.

        Raises (when set):
            ValueError: not positive.
        """
        return self._idle.timeout

    @idle_timeout.setter
    def idle_timeout(self, seconds: float | None) -> None:
        self._idle.timeout = seconds

    @property
    def plugins(self) -> dict[str, Any]:
        """The scheduler plugins, by name (dask's ``Scheduler.plugins``)."""
        return self.plugin_host.plugins

    def add_plugin(self, plugin: Any, *, idempotent: bool = False, name: str | None = None,
                   **kwargs: Any) -> None:
        """dask's ``Scheduler.add_plugin``, for a preload's ``dask_setup(scheduler)`` or
        ``client.run_on_scheduler``: keep a SchedulerPlugin under ``name`` (default: its
        ``name`` attribute, else its class name made unique). Its ``start`` runs if the
        scheduler is still starting (a preload's), not on a running one, as in dask.
        On shoal's loop thread only (where those two run)."""
        from shoal._plugin import plugin_name

        self.plugin_host.put(plugin_name(plugin, name), plugin, idempotent)

    def remove_plugin(self, name: str | None = None) -> None:
        """dask's ``Scheduler.remove_plugin``: forget the plugin (not closed, as in dask).

        Raises:
            ValueError: no plugin has that name.
        """
        if name is None:
            raise ValueError("remove_plugin needs the plugin's name")
        self.plugin_host.drop(name)

    # --- the dashboard's source -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        from shoal.scheduler._views import snapshot

        return snapshot(self)

    async def profile_tree(self, key: str | None = None) -> dict[str, Any]:
        """The workers' merged profile (the dashboard's ``/profile``)."""
        from shoal import _profile_tree
        from shoal.scheduler._profiling import worker_profiles

        found = await worker_profiles(self, None, None, key, None, False)
        return _profile_tree.merge(*(t for t in found.values() if t is not None))

    def task_stream_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        return self.state.task_stream_since(cursor, limit)

    def task_graph(self, limit: int, known: str | None = None) -> dict[str, Any]:
        """The dashboard's ``/graph``: tasks, states and edges, or only counts past
        ``limit`` tasks (see ``_graph_view``)."""
        from shoal.scheduler._graph_view import task_graph

        return task_graph(self.state, limit, known)

    def task_group_rows(self, limit: int) -> dict[str, Any]:
        """The dashboard's ``/groups``: the newest ``limit`` task groups' counts by state."""
        from shoal.scheduler._views import task_groups

        return task_groups(self.state, limit)

    def erred_tasks(self, limit: int) -> dict[str, Any]:
        """The dashboard's ``/exceptions``: the latest ``limit`` failures, newest first."""
        from shoal.scheduler._views import erred_tasks

        return erred_tasks(self.state, limit)

    def tasks_per_second(self) -> float:
        if len(self._tps) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._tps[0], self._tps[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
