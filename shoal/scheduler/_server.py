"""The scheduler's I/O shell around :class:`shoal.scheduler._state.SchedulerState`.

Owns: the listening socket, connections to workers and clients, turning messages into
events and commands into messages, the function table, scattered data in transit,
request/response questions (``client.run``, ``scheduler_info``...), the heartbeat clock
and the dashboard. Holds the state object; never decides anything about tasks itself.

Liveness times (registration, heartbeats, ticks) come from the monotonic clock: a wall-clock
jump (a suspended laptop, a paused VM, an NTP step) must not evict every worker. Wall-clock
times exist only where users see them (task stream, ``started``, ``last_seen`` in views).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
import uuid
from typing import Any

from shoal.comm import Connection, inproc_pair, listen
from shoal.comm._handshake import new_token
from shoal.comm._security import Security, is_loopback
from shoal.comm._tcp import TCPConnection
from shoal.protocol._errors import scheduler_error
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    CancelKeys,
    Close,
    ClusterRestarted,
    Compute,
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    DropFunctions,
    FireAndForget,
    FreeKeys,
    Heartbeat,
    Hello,
    KeyCancelled,
    KeyDone,
    KeyErred,
    MemoryPaused,
    Message,
    MissingData,
    PluginSetup,
    Register,
    RegisterReply,
    ReleaseKeys,
    Request,
    Response,
    RetryKeys,
    Run,
    Scatter,
    ScatterStored,
    Store,
    TaskDone,
    TaskErred,
    TaskSeceded,
    TasksStarted,
    TopicEvent,
    TopicGet,
    TopicLog,
    TopicSubscribe,
    Transfer,
    UpdateGraph,
    WorkerGoodbye,
)
from shoal.protocol._serialize import Serialized, check_function_blob
from shoal.scheduler import _datasets as datasets
from shoal.scheduler import _topics as topics
from shoal.scheduler._events import (
    ClientJoined,
    ClientLeft,
    CloseWorker,
    DataMissing,
    DataScattered,
    DropScattered,
    ExecutionStarted,
    FireAndForgetAsked,
    ForgetFunctions,
    GraphSubmitted,
    HeartbeatReceived,
    KeysCancelled,
    KeysReleased,
    KeysRetried,
    ReportCancelled,
    ReportDone,
    ReportErred,
    ReportRestarted,
    ScatterAcked,
    Seceded,
    SendCompute,
    SendFree,
    SendStore,
    TaskFailed,
    TaskFinished,
    Tick,
    TransferDone,
    WorkerJoined,
    WorkerLeft,
    WorkerPaused,
    WorkerRetiring,
)
from shoal.scheduler._plugins import SchedulerPlugins
from shoal.scheduler._state import EventsFailed, SchedulerState
from shoal.scheduler._tasks import TaskState
from shoal.scheduler.coordination._shell import CHANNEL_ROLE, CoordinationShell
from shoal.scheduler.coordination._shell import MESSAGES as COORDINATION_MESSAGES

logger = logging.getLogger("shoal.scheduler")

TICK_INTERVAL = 1.0
# Messages handled by the topics and datasets machines rather than the task state.
_SIDE_MESSAGES = frozenset({TopicLog, TopicSubscribe, TopicGet, DatasetPublish,
                            DatasetUnpublish, DatasetGet, DatasetList})


def _event_log_length() -> int:
    """Events kept per topic: dask's ``distributed.admin.low-level-log-length``."""
    import dask

    value = dask.config.get("distributed.admin.low-level-log-length", topics.DEFAULT_MAXLEN)
    return int(value) if value else topics.DEFAULT_MAXLEN


def _restrictions(
    rows: list[tuple[Any, Any, Any]] | None,
) -> dict[Any, tuple[dict[str, float] | None, bool]]:
    """UpdateGraph's (key, resources, allow_other_workers) rows as GraphSubmitted wants them."""
    return {key: (dict(need) if need else None, bool(loose)) for key, need, loose in rows or ()}


class Scheduler:
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
        security: Security | None = None,
        protocol: str | None = None,
        scheduler_file: str | None = None,
        auth: bool | None = None,
    ) -> None:
        """``security``: TLS certificates and/or token (default: dask's config and
        ``SHOAL_TOKEN``). ``protocol``: "tcp" or "tls" (default: tls when certificates are
        configured). ``auth``: False disables the token made up when binding off loopback
        (``--no-auth``); None decides by the address."""
        self.host = host
        self.port = port
        self.security = security if security is not None else Security()
        self.protocol = (protocol or "").rstrip(":/") or None
        self.scheduler_file = scheduler_file
        self.auth = auth
        self.token_generated = False
        self.state = SchedulerState(allowed_failures=allowed_failures, worker_ttl=worker_ttl,
                                    bandwidth=bandwidth)
        self.topics = topics.Topics(_event_log_length())
        self.datasets = datasets.Datasets()
        self.plugin_host = SchedulerPlugins()
        self.address = ""
        self.dashboard_address = dashboard_address
        self.dashboard: Any = None
        self.dashboard_warning: str | None = None
        self.started = time.time()
        self.id = f"Scheduler-{uuid.uuid4()}"
        self._server: asyncio.base_events.Server | None = None
        self._workers: dict[str, Connection] = {}
        self._worker_fids: dict[str, set[str]] = {}
        self._clients: dict[str, Connection] = {}
        self._functions: dict[str, bytes] = {}
        self._client_fids: dict[str, set[str]] = {}  # blobs each client sent
        # Blobs forgotten lately, for a client whose submit crossed the forget message.
        self._forgotten: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        # Scattered bytes and nbytes, kept until every worker sent them acknowledged.
        self._scattered: dict[Any, tuple[Serialized, int]] = {}
        self._pending_runs: dict[int, tuple[Connection, int, dict[str, Any], set[str]]] = {}
        self._run_futures: dict[int, asyncio.Future[Any]] = {}
        self._worker_joined = asyncio.Event()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._tps: list[tuple[float, int]] = []
        self.coordination = CoordinationShell(self)

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
        self._spawn(self._tick_loop())
        if self.dashboard_address is not None:
            await self._open_dashboard(self.dashboard_address)
        if self.scheduler_file:
            self._write_scheduler_file(self.scheduler_file)

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
        https = self.security.dashboard_ssl_context() if self.address.startswith("tls") else None
        self.dashboard, self.dashboard_warning = await open_dashboard_with_fallback(
            source, host, int(port or 0), https
        )
        if self.dashboard_warning:
            logger.warning(self.dashboard_warning)

    @property
    def dashboard_link(self) -> str | None:
        return None if self.dashboard is None else str(self.dashboard.link)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in list(self._workers.values()):
            conn.send(Close("scheduler closing"))
        await asyncio.sleep(0)
        self.coordination.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.plugin_host.close()
        if self.dashboard is not None:
            await self.dashboard.close()
        for conn in [*self._workers.values(), *self._clients.values()]:
            conn.close()
        if self._server is not None:
            self._server.close()
        if self.scheduler_file:  # as dask: the file names a scheduler that is gone now
            from shoal.cluster._scheduler_file import remove_scheduler_file

            remove_scheduler_file(self.scheduler_file, self.address)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            now = time.monotonic()
            try:
                self._apply([Tick(now)])
            except Exception:  # one bad tick must not end worker-TTL checks for good
                logger.exception("scheduler tick failed; ticking on")
            self._tps.append((now, self.state.completed_total))
            del self._tps[:-10]

    async def wait_for_workers(self, n: int, timeout: float | None) -> None:
        async def wait() -> None:
            while len(self.state.workers) < n:
                self._worker_joined.clear()
                await self._worker_joined.wait()

        await asyncio.wait_for(wait(), timeout)

    # --- the user's view (client.cluster.scheduler) ---------------------------------------------

    @property
    def tasks(self) -> dict[Any, TaskState]:
        """Key → task record (``.state``, ``.exception``...). A copy: safe to iterate."""
        return dict(self.state.tasks)

    @property
    def workers(self) -> dict[str, Any]:
        return dict(self.state.workers)

    @property
    def plugins(self) -> dict[str, Any]:
        """The scheduler plugins, by name (dask's ``Scheduler.plugins``)."""
        return self.plugin_host.plugins

    # --- connections --------------------------------------------------------------------------

    def connect_local_client(self, name: str) -> Connection:
        """An in-process connection for a client living in this process and loop."""
        client_end, server_end = inproc_pair(name, "scheduler")
        server_end.info["role"] = "client"
        server_end.info["name"] = name
        self._clients[name] = server_end
        server_end.set_handler(self._on_client_message)
        self._apply([ClientJoined(name)])
        self._apply_side(self.topics, [topics.SubscriberJoined(name)])
        self._hook("add_client", self, client=name)
        return client_end

    def _on_connection(self, conn: TCPConnection) -> None:
        conn.set_handler(self._on_first_message)

    def _on_first_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            return
        first, rest = batch[0], batch[1:]
        if not isinstance(first, Hello) or first.version != PROTOCOL_VERSION:
            logger.error(
                "closing connection from %s: expected a shoal hello (protocol %d), got %r",
                conn.peer, PROTOCOL_VERSION, first,
            )
            conn.close()
            return
        if first.role == "worker":
            conn.info["role"] = "worker"
            conn.set_handler(self._on_worker_message)
        elif first.role == "client":
            name = f"{first.name}-{next(self._ids)}"
            conn.info["role"] = "client"
            conn.info["name"] = name
            self._clients[name] = conn
            conn.set_handler(self._on_client_message)
            self._apply([ClientJoined(name)])
            self._apply_side(self.topics, [topics.SubscriberJoined(name)])
            self._hook("add_client", self, client=name)
            conn.send(Response(0, True, {"client": name, "address": self.address}))
        elif first.role == CHANNEL_ROLE:  # a task thread's Lock/Semaphore channel
            self.coordination.accept_channel(conn, first, f"{first.name}-{next(self._ids)}")
        else:
            logger.error("closing connection from %s: unknown role %r", conn.peer, first.role)
            conn.close()
            return
        if rest:
            conn._handler(conn, rest)  # type: ignore[misc]

    # --- client messages ------------------------------------------------------------------------

    def _on_client_message(self, conn: Connection, batch: list[Message] | None) -> None:
        name = conn.info["name"]
        if batch is None:
            self._clients.pop(name, None)
            self._client_fids.pop(name, None)
            self.coordination.holder_left(name)
            self._apply([ClientLeft(name)])
            self._apply_side(self.topics, [topics.SubscriberLeft(name)])
            self._hook("remove_client", self, client=name)
            return
        events: list[Any] = []
        try:
            for msg in batch:
                if isinstance(msg, UpdateGraph):
                    if msg.functions:
                        self._client_fids.setdefault(name, set()).update(msg.functions)
                        for fid, blob in msg.functions.items():
                            if fid not in self._functions:
                                check_function_blob(fid, blob)  # else: closes this connection
                                self._functions[fid] = blob
                    tasks = self._with_known_functions(conn, list(msg.tasks))
                    events.append(GraphSubmitted(name, tasks, list(msg.wanted),
                                                 list(msg.actors or ()),
                                                 _restrictions(msg.restrictions)))
                    if self.plugin_host.plugins:
                        self._hook("update_graph", self, client=name, keys=set(msg.wanted),
                                   tasks=[row[0] for row in msg.tasks], annotations={},
                                   priority={}, stimulus_id=f"update-graph-{name}")
                elif isinstance(msg, ReleaseKeys):
                    events.append(KeysReleased(name, list(msg.keys)))
                elif isinstance(msg, CancelKeys):
                    events.append(KeysCancelled(name, list(msg.keys), msg.force))
                elif isinstance(msg, RetryKeys):
                    events.append(KeysRetried(name, list(msg.keys)))
                elif isinstance(msg, FireAndForget):
                    events.append(FireAndForgetAsked(list(msg.keys)))
                elif type(msg) in _SIDE_MESSAGES:
                    if events:
                        self._apply(events)
                        events = []
                    self._on_side_message(name, msg)
                elif isinstance(msg, Scatter):
                    if events:
                        self._apply(events)
                        events = []
                    self._spawn(self._scatter(conn, name, msg))
                elif isinstance(msg, Request):
                    if events:
                        self._apply(events)
                        events = []
                    self._spawn(self._answer(conn, msg))
                elif type(msg) in COORDINATION_MESSAGES:
                    if events:
                        self._apply(events)
                        events = []
                    self.coordination.receive(name, msg)
                elif isinstance(msg, Hello):
                    pass
                else:
                    raise TypeError(f"a client may not send {msg.tag!r}")
            if events:
                self._apply(events)
        except Exception as exc:
            logger.exception("closing client connection %s: bad message (%s)", name, exc)
            conn.close()

    def _with_known_functions(self, conn: Connection, rows: list[Any]) -> list[Any]:
        """Rows whose functions the scheduler has. A blob forgotten just before a client's
        submit that relied on it comes back from ``_forgotten``; a row whose function is
        unknown anyway fails its key rather than the whole batch (a shoal bug)."""
        functions = self._functions
        bad: dict[int, str] | None = None
        for i, row in enumerate(rows):
            for fid in row[3]:
                if fid not in functions:
                    blob = self._forgotten.pop(fid, None)
                    if blob is not None:
                        functions[fid] = blob
                    else:
                        bad = bad or {}
                        bad.setdefault(i, fid)
        if not bad:
            return rows
        for i, fid in bad.items():
            key = rows[i][0]
            logger.error("task %r refers to function %s, which the scheduler never received",
                         key, fid)
            conn.send(KeyErred(key, scheduler_error(
                "lost-data", "RuntimeError",
                f"task {key!r} runs function {fid!r}, which never reached the scheduler (a "
                "shoal bug); submit the task again", key,
            )))
        return [row for i, row in enumerate(rows) if i not in bad]

    def _forget_functions(self, fids: list[str]) -> None:
        """No task has used ``fids`` for a while: drop the blobs, and tell the workers and
        clients holding them (they forget; the next use sends the blob again)."""
        for fid in fids:
            blob = self._functions.pop(fid, None)
            if blob is not None:
                self._forgotten[fid] = blob
        while len(self._forgotten) > 256:
            self._forgotten.popitem(last=False)
        for peers, known_by in ((self._workers, self._worker_fids), (self._clients, self._client_fids)):
            for name, known in known_by.items():
                drop = [fid for fid in fids if fid in known]
                conn = peers.get(name)
                if drop and conn is not None:
                    known.difference_update(drop)
                    conn.send(DropFunctions(drop))

    async def _scatter(self, conn: Connection, name: str, msg: Scatter) -> None:
        if not self.state.workers:
            await self.wait_for_workers(1, None)
        for key, data, nbytes, _typename in msg.items:
            self._scattered[key] = (data, nbytes)
        self._apply([DataScattered(name, [(k, n, t) for k, _, n, t in msg.items],
                                   msg.workers, msg.broadcast)])
        conn.send(Response(msg.request_id, True, None))

    async def _answer(self, conn: Connection, msg: Request) -> None:
        from shoal.scheduler import _requests

        try:
            value = await _requests.answer(self, conn, msg.op, dict(msg.args))
            conn.send(Response(msg.request_id, True, value))
        except Exception as exc:
            conn.send(Response(msg.request_id, False, f"{type(exc).__name__}: {exc}"))

    # --- worker messages ------------------------------------------------------------------------

    def _on_worker_message(self, conn: Connection, batch: list[Message] | None) -> None:
        address = conn.info.get("address")
        if batch is None:
            if address is not None and self._workers.get(address) is conn:
                self._worker_gone(address, "connection closed")
            return
        if address is not None and self._workers.get(address) is not conn:
            return  # a worker already removed (restarted, retired): it has no say any more
        events: list[Any] = []
        try:
            for msg in batch:
                if isinstance(msg, Register):
                    if not self._admit(conn, msg):
                        return
                    address = msg.address
                    events.append(WorkerJoined(address, msg.name, msg.nthreads, msg.memory_limit,
                                               msg.pid, msg.host, time.monotonic(),
                                               msg.resources))
                    continue
                if address is None:
                    raise TypeError("a worker must register before anything else")
                if isinstance(msg, TaskDone):
                    events.append(TaskFinished(address, msg.key, msg.nbytes, msg.typename,
                                               msg.start, msg.stop, msg.thread, msg.inline))
                elif isinstance(msg, TasksStarted):
                    events.append(ExecutionStarted(address, list(msg.keys)))
                elif isinstance(msg, WorkerGoodbye):
                    events.append(WorkerRetiring(address, msg.reason))
                elif isinstance(msg, TaskErred):
                    events.append(TaskFailed(address, msg.key, dict(msg.error), msg.start,
                                             msg.stop, msg.thread))
                elif isinstance(msg, Heartbeat):
                    events.append(HeartbeatReceived(address, msg.memory_process,
                                                    msg.memory_managed, msg.cpu, msg.executing,
                                                    time.monotonic(), msg.memory_spilled))
                elif isinstance(msg, MemoryPaused):
                    events.append(WorkerPaused(address, msg.paused))
                elif isinstance(msg, ScatterStored):
                    events.append(ScatterAcked(address, msg.key,
                                               None if msg.error is None else dict(msg.error)))
                elif isinstance(msg, MissingData):
                    events.append(DataMissing(address, msg.key, msg.worker, msg.for_key))
                elif isinstance(msg, Transfer):
                    events.append(TransferDone(address, list(msg.keys), msg.peer, msg.nbytes,
                                               msg.start, msg.stop))
                elif isinstance(msg, TaskSeceded):
                    events.append(Seceded(address, msg.key, msg.duration))
                elif isinstance(msg, TopicLog):
                    self._on_side_message(address, msg)
                elif isinstance(msg, Response):
                    self._on_run_response(address, msg)
                else:
                    raise TypeError(f"a worker may not send {msg.tag!r}")
        except Exception as exc:
            logger.error("closing worker connection %s: bad message (%s)", conn.peer, exc)
            conn.close()
            return
        if events:
            self._apply(events)
            if any(type(e) is WorkerJoined for e in events):
                self._worker_joined.set()
                if self.plugin_host.plugins:
                    for e in events:
                        if type(e) is WorkerJoined:
                            self._hook("add_worker", self, worker=e.address)

    def _admit(self, conn: Connection, msg: Register) -> bool:
        """Accept a worker's registration unless another live connection holds its address
        (two processes claiming one address, or a reconnect racing its old connection's
        loss): taking over would hand the old worker's tasks and data to a stranger."""
        address = msg.address
        old = self._workers.get(address)
        if old is conn:
            raise TypeError(f"worker {address} registered twice on one connection")
        if (old is not None and not old.closed and msg.incarnation
                and old.info.get("incarnation") == msg.incarnation):
            # The same worker process reconnecting while its old connection still looks
            # open (half-open after a partition): it re-registers as a fresh worker anyway.
            logger.warning("worker %s reconnected; dropping its stale connection", address)
            old.close()
            self._worker_gone(address, "reconnected on a new connection")
            old = None
        if old is not None and not old.closed:
            reason = (
                f"a worker at {address} is already connected to this scheduler; if that worker "
                "is gone, it is dropped after its connection closes or its heartbeats stop "
                "(distributed.scheduler.worker-ttl)"
            )
            logger.warning("refusing worker registration from %s: %s", conn.peer, reason)
            conn.send(RegisterReply(False, reason))
            conn.close()
            return False
        if old is not None:  # closed, but its loss not handled yet: handle it first
            self._worker_gone(address, "connection closed")
        conn.info["address"] = address
        conn.info["incarnation"] = msg.incarnation
        self._workers[address] = conn
        self._worker_fids[address] = set()
        conn.send(RegisterReply(True, ""))
        # Before any task: a joining or restarted worker is set up like the others.
        for name, (plugin, kind) in self.plugin_host.for_workers.items():
            conn.send(PluginSetup(0, name, plugin, kind))
        return True

    def _worker_gone(self, address: str, reason: str) -> None:
        del self._workers[address]
        self._worker_fids.pop(address, None)
        self._apply([WorkerLeft(address, reason, time.monotonic())])
        self._fail_runs_for(address)
        self._hook("remove_worker", self, worker=address, stimulus_id=f"worker-left-{address}")

    # --- commands ---------------------------------------------------------------------------

    def _apply(self, events: list[Any]) -> None:
        if self.plugin_host.watching:
            self._apply_watched(events)
            return
        self._carry_out_all(self._handle(events))

    def _handle(self, events: list[Any]) -> list[Any]:
        try:
            return self.state.handle(*events)
        except EventsFailed as failed:  # its state changes are made: carry out their commands
            logger.error("%s", failed, exc_info=failed.failures[0][1])
            return failed.commands

    def _apply_watched(self, events: list[Any]) -> None:
        """``_apply`` while a scheduler plugin watches transitions: the new rows of the
        state's story are its calls."""
        story = self.state._log
        last = story[-1] if story else None
        commands = self._handle(events)
        new = []
        for row in reversed(story):
            if row is last:
                break
            new.append(row)
        # What dask gives a task's processing -> memory/erred move (a task-stream plugin
        # reads ``startstops``), from the worker's report among these events.
        done = {e.key: e for e in events if type(e) in (TaskFinished, TaskFailed)}
        for key, start, finish, cause in reversed(new):
            extra: dict[str, Any] = {}
            ev = done.get(key) if start == "processing" else None
            if ev is not None:
                extra = {"worker": ev.worker, "thread": ev.thread,
                         "startstops": [{"action": "compute", "start": ev.start,
                                         "stop": ev.stop}]}
                if type(ev) is TaskFinished:
                    extra.update(nbytes=ev.nbytes, typename=ev.typename)
            self._hook("transition", key, start, finish, stimulus_id=cause, **extra)
        self._carry_out_all(commands)

    def _carry_out_all(self, commands: list[Any]) -> None:
        workers = self._workers
        clients = self._clients
        # FreeKeys of one worker travel together, but never after a later command to that
        # worker: a release then a resubmission must reach it in that order.
        frees: dict[str, list[Any]] = {}
        for cmd in commands:
            try:
                if frees and isinstance(cmd, (SendCompute, SendStore, CloseWorker)):
                    self._send_frees(frees, cmd.worker)
                self._carry_out(cmd, workers, clients, frees)
            except Exception:
                logger.exception("scheduler could not carry out %r; going on with the rest", cmd)
        for address in list(frees):
            self._send_frees(frees, address)

    def _send_frees(self, frees: dict[str, list[Any]], address: str) -> None:
        keys = frees.pop(address, None)
        conn = self._workers.get(address)
        if keys and conn is not None:
            conn.send(FreeKeys(keys))

    def _carry_out(
        self, cmd: Any, workers: dict[str, Connection], clients: dict[str, Connection],
        frees: dict[str, list[Any]],
    ) -> None:
        if isinstance(cmd, SendCompute):
            conn = workers.get(cmd.worker)
            if conn is None:
                return
            known = self._worker_fids[cmd.worker]
            blobs = {}
            for fid in cmd.fids:
                if fid not in known:
                    blobs[fid] = self._functions[fid]
                    known.add(fid)
            conn.send(Compute(cmd.key, cmd.payload, cmd.deps, blobs, cmd.priority,
                              cmd.send_inline, cmd.prefix))
        elif isinstance(cmd, ReportDone):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(KeyDone(cmd.key, cmd.nbytes, cmd.typename, cmd.inline))
        elif isinstance(cmd, SendFree):
            frees.setdefault(cmd.worker, []).extend(cmd.keys)
        elif isinstance(cmd, ReportErred):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(KeyErred(cmd.key, cmd.error))
        elif isinstance(cmd, ReportCancelled):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(KeyCancelled(cmd.key, cmd.reason))
        elif isinstance(cmd, SendStore):
            conn = workers.get(cmd.worker)
            held = self._scattered.get(cmd.key)
            if conn is not None and held is not None:
                conn.send(Store(cmd.key, held[0], held[1]))
        elif isinstance(cmd, DropScattered):
            for key in cmd.keys:
                self._scattered.pop(key, None)
        elif isinstance(cmd, ForgetFunctions):
            self._forget_functions(cmd.fids)
        elif isinstance(cmd, ReportRestarted):
            c = clients.get(cmd.client)
            if c is not None:
                c.send(ClusterRestarted(cmd.reason))
        elif isinstance(cmd, CloseWorker):
            conn = workers.get(cmd.worker)
            if conn is not None:
                # Dropped, not told to leave: like dask restarting a worker that missed
                # its TTL, one that is still alive reconnects as a fresh worker.
                logger.warning("dropping worker %s: %s", cmd.worker, cmd.reason)
                conn.close()

    # --- topics and datasets: pure machines beside the task state -----------------------------

    def _on_side_message(self, sender: str, msg: Message) -> None:
        """A message for the topics or datasets machine from ``sender`` (a client's name,
        or a worker's address for ``TopicLog``)."""
        if isinstance(msg, TopicLog):
            self._apply_side(self.topics, [topics.EventLogged(list(msg.topics), msg.msg, time.time())])
            if self.plugin_host.plugins:
                for topic in msg.topics:
                    self._hook("log_event", topic, msg.msg)
        elif isinstance(msg, TopicSubscribe):
            kind = topics.TopicSubscribed if msg.subscribe else topics.TopicUnsubscribed
            self._apply_side(self.topics, [kind(sender, msg.topic)])
        elif isinstance(msg, TopicGet):
            self._apply_side(self.topics, [topics.EventsAsked(sender, msg.request_id, msg.topic)])
        elif isinstance(msg, DatasetPublish):
            items = [(name, payload, list(keys)) for name, payload, keys in msg.items]
            self._apply_side(self.datasets, [datasets.DatasetsPublished(
                sender, msg.request_id, items, msg.override)])
        elif isinstance(msg, DatasetUnpublish):
            self._apply_side(self.datasets, [datasets.DatasetsUnpublished(
                sender, msg.request_id, list(msg.names))])
        elif isinstance(msg, DatasetGet):
            self._apply_side(self.datasets, [datasets.DatasetsAsked(
                sender, msg.request_id, list(msg.names))])
        elif isinstance(msg, DatasetList):
            self._apply_side(self.datasets, [datasets.DatasetNamesAsked(sender, msg.request_id)])

    def _apply_side(self, machine: Any, events: list[Any]) -> None:
        """Feed a side machine; its answers go to clients, its holds become task events."""
        clients = self._clients
        for cmd in machine.handle(*events):
            if isinstance(cmd, topics.DeliverEvent):
                c = clients.get(cmd.client)
                if c is not None:
                    c.send(TopicEvent(cmd.topic, cmd.time, cmd.msg))
            elif isinstance(cmd, (topics.AnswerEvents, datasets.AnswerDatasets)):
                c = clients.get(cmd.client)
                if c is not None:
                    c.send(Response(cmd.request_id, True, cmd.value))
            elif isinstance(cmd, datasets.HoldKeys):
                self._apply([GraphSubmitted(cmd.holder, [], list(cmd.keys))])
            elif isinstance(cmd, datasets.LetGoKeys):
                self._apply([KeysReleased(cmd.holder, list(cmd.keys))])
            elif isinstance(cmd, datasets.DropHolder):
                self._apply([ClientLeft(cmd.holder)])

    # --- client.run ---------------------------------------------------------------------------

    def start_run(self, conn: Connection, function: Serialized, workers: list[str] | None,
                  wait: bool = True) -> asyncio.Future[Any]:
        targets = [w for w in self._workers if workers is None or w in workers]
        return self.ask_workers(conn, {w: lambda rid: Run(rid, function, wait) for w in targets})

    def ask_workers(self, conn: Connection | None,
                    asks: dict[str, Any]) -> asyncio.Future[dict[str, tuple[bool, Any]]]:
        """Send each worker its message (``asks``: address -> ``build(request_id)``);
        resolves to ``{address: (ok, value)}`` once every one answered or left."""
        targets = [w for w in asks if w in self._workers]
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        results: dict[str, Any] = {}
        self._pending_runs[rid] = (conn, rid, results, set(targets))  # type: ignore[assignment]
        self._run_futures[rid] = fut
        if not targets:
            self._finish_run(rid)
            return fut
        for w in targets:
            self._workers[w].send(asks[w](rid))
        return fut

    def _hook(self, hook: str, *args: Any, **kwargs: Any) -> None:
        """Call a scheduler plugin hook; awaitables it returns run as tasks of ours."""
        if self.plugin_host.plugins:
            for pending in self.plugin_host.call(hook, *args, **kwargs):
                self._spawn(pending)

    def _on_run_response(self, address: str | None, msg: Response) -> None:
        entry = self._pending_runs.get(msg.request_id)
        if entry is None or address is None:
            return
        _, rid, results, waiting = entry
        results[address] = (msg.ok, msg.value)
        waiting.discard(address)
        if not waiting:
            self._finish_run(rid)

    def _fail_runs_for(self, address: str) -> None:
        for rid, (_, _, results, waiting) in list(self._pending_runs.items()):
            if address in waiting:
                waiting.discard(address)
                results[address] = (False, {"kind": "lost", "type": "CommClosedError",
                                            "message": f"worker {address} died during run",
                                            "exception": None, "traceback": None, "tb_text": ""})
                if not waiting:
                    self._finish_run(rid)

    def _finish_run(self, rid: int) -> None:
        _, _, results, _ = self._pending_runs.pop(rid)
        fut = self._run_futures.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result(results)

    # --- the dashboard's source -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        from shoal.scheduler._views import snapshot

        return snapshot(self)

    def task_stream_since(
        self, cursor: int, limit: int | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        return self.state.task_stream_since(cursor, limit)

    def tasks_per_second(self) -> float:
        if len(self._tps) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._tps[0], self._tps[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
