"""The worker process's I/O shell around :class:`shoal.worker._state.WorkerState`.

Owns: the connection to the scheduler, the listening socket peers and clients fetch data
from, the data store, fetches from peers, heartbeats, and the executor. Decisions about
tasks are the state machine's; this only carries them out.

Scheduler sessions. A worker leaves only when told to: a ``Close`` from the scheduler, its
own ``close()`` (SIGTERM), or no scheduler to register with for ``death_timeout`` seconds.
When the scheduler connection drops otherwise, it reconnects (each attempt bounded by
``connect_timeout``, with backoff) and registers again *as a fresh worker*: by then the
scheduler has treated it as gone (its tasks are being recomputed elsewhere; a restarted
scheduler knows nothing of them, and may even reuse their keys for other work), so the
data it held and the tasks it was running are not trusted. Each session therefore gets a
new state machine, data store and executor; results still arriving from the old
executor's threads and fetches of the old session are discarded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import psutil

from shoal.comm import Connection, connect, listen
from shoal.comm._security import Security
from shoal.comm._tcp import TCPConnection, comm_timeout, scheme_of, wait_reply
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    ActorCall,
    Close,
    Compute,
    CopyKeys,
    Data,
    DropFunctions,
    FreeKeys,
    GetData,
    Heartbeat,
    Hello,
    MemoryPaused,
    Message,
    PluginSetup,
    PluginTeardown,
    Register,
    RegisterReply,
    Response,
    RestartWorker,
    Run,
    Store,
    TaskSeceded,
    TasksStarted,
    TopicLog,
    WorkerGoodbye,
)
from shoal.protocol._pieces import MESSAGE_BYTES_LIMIT, split_by_size, whole
from shoal.protocol._serialize import (
    FunctionTable,
    Serialized,
    costly_to_load,
    costly_to_pickle,
    dumps,
    loads,
)
from shoal.protocol._sizeof import nbytes as measure
from shoal.worker._actors import ActorHost
from shoal.worker._execute import Executor, imports_ready, unpickle
from shoal.worker._memory import MemoryLimits, Pause, Resume
from shoal.worker._plugins import WorkerPlugins
from shoal.worker._resources import check_resources
from shoal.worker._spill import SpillBuffer
from shoal.worker._state import (
    ComputeAssigned,
    DataStored,
    Drop,
    Execute,
    ExecuteDone,
    Fetch,
    FetchDone,
    FetchFailed,
    KeysFreed,
    Report,
    StoreFailed,
    WorkerState,
)

logger = logging.getLogger("shoal.worker")

HEARTBEAT_INTERVAL = 1.0
FIRST_RECONNECT_DELAY = 0.05  # seconds; doubles after each failed attempt...
MAX_RECONNECT_DELAY = 5.0  # ...up to this
MEMORY_MONITOR_INTERVAL = 0.1  # seconds (dask's distributed.worker.memory.monitor-interval)
SPILLED_SENDS = 2  # fetches answered from disk at once (each holds its values in memory)


# The outcome of a freed task the executor skipped (the state drops it, reporting nothing).
_NOT_RUN = {"kind": "cancelled", "type": "CancelledError", "message": "freed before it started",
            "exception": None, "traceback": None, "tb_text": ""}


class SchedulerGone(OSError):
    """The worker found no scheduler to register with within its death timeout."""


class Worker:
    """One worker process: run with ``async with Worker(...)`` or :meth:`run_forever`."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: str | None = None,
        memory_limit: int = 0,
        host: str = "127.0.0.1",
        port: int | str = 0,
        contact_address: str | None = None,
        death_timeout: float | None = None,
        connect_timeout: float = 30.0,
        local_directory: str | None = None,
        memory_target_fraction: float | bool | None = None,
        memory_spill_fraction: float | bool | None = None,
        memory_pause_fraction: float | bool | None = None,
        memory_transfer_fraction: float | bool | None = None,
        security: Security | None = None,
        resources: dict[str, float] | str | None = None,
    ) -> None:
        """``death_timeout``: seconds to keep trying to (re)register with the scheduler
        before giving up (dask's ``death_timeout``; None: forever). ``connect_timeout``:
        bound of one connection attempt (dask's ``distributed.comm.timeouts.connect``).
        ``memory_limit``: bytes (0: none); under a limit, values spill to files under
        ``local_directory`` (dask's ``temporary-directory`` config, else the system's temp
        directory) and the worker pauses, as the ``memory_*_fraction`` of the limit say
        (None: dask's ``distributed.worker.memory.target/spill/pause`` config; False: off);
        fetched values in flight stay under ``memory_transfer_fraction`` of it.
        ``security``: certificates and token (default: dask's config and ``SHOAL_TOKEN``);
        the worker's data port speaks the scheduler address's protocol (tcp or tls).
        ``resources``: abstract resources tasks may claim here (``{"GPU": 1}``; None: dask's
        config ``distributed.worker.resources``)."""
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.name = name
        self.memory_limit = memory_limit
        self.host = host
        # What to bind: ``port`` may be a range "9000:9010"; a wildcard ``host`` advertises
        # the address that routes to the scheduler. ``contact_address`` is advertised
        # instead, as behind NAT (dask's --contact-address); see comm/_addresses.py.
        self.port = port
        self.contact_address = contact_address
        self.contact_host = host  # the host part of the advertised address, once started
        self.death_timeout = death_timeout
        self.connect_timeout = connect_timeout
        self._spill_parent = local_directory  # spill files go in a directory made here
        self._memory_fractions: tuple[Any, ...] = (
            memory_target_fraction, memory_spill_fraction, memory_pause_fraction,
            memory_transfer_fraction)
        self.data: MutableMapping[Any, Any] = {}
        self.paused = False  # memory past the pause threshold: no new tasks nor fetches
        self._deferred_fetches: list[Fetch] = []
        self._disk_sends: asyncio.Semaphore | None = None
        self._transfer_budget = 0  # bytes of fetched values in flight at once (0: no bound)
        self._in_flight_bytes = 0
        self._transfer_room: asyncio.Condition | None = None
        self.security = security if security is not None else Security()
        self.resources = check_resources(resources)
        self.scheduler_gone = False  # closed because the scheduler said so or stayed away
        self.functions = FunctionTable()
        self.address = ""
        self.state: WorkerState | None = None
        self._scheduler: Connection | None = None
        self._server: asyncio.base_events.Server | None = None
        self._executor: Executor | None = None
        self._actors: ActorHost | None = None
        self._peers: dict[str, TCPConnection] = {}
        self._peer_lock: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self._leaving = False  # told to close: a connection drop now is no reason to reconnect
        self._session = 0  # which scheduler session the state, data and executor belong to
        self._registered: asyncio.Future[str | None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._process = psutil.Process()
        self.incarnation = os.urandom(16).hex()  # proves a reconnect is this worker's
        self._client: Any = None  # the worker's own Client (get_client() in tasks), lazily
        self.fetch_timeout = comm_timeout()  # a peer silent this long during a fetch is dead
        # message_bytes_limit and connection_limits come from dask's config: read now when
        # dask is already imported (an in-process worker), else on first use (properties
        # below), since importing dask costs a starting worker process ~0.3 s of CPU.
        if "dask" in sys.modules:
            self.message_bytes_limit = _message_bytes_limit()
            self.connection_limits = _connection_limits()
        self._fetch_slots: asyncio.Semaphore | None = None
        self._serve_slots: asyncio.Semaphore | None = None
        # What a RestartWorker does: set by ``python -m shoal.worker`` under a nanny to exit
        # at once (the nanny starts a fresh process); None: begin a fresh session instead.
        self.on_restart: Any = None
        self._serializer: concurrent.futures.ThreadPoolExecutor | None = None
        self.plugin_host = WorkerPlugins(self)  # plugins and uploads; they outlive sessions
        self.restart_requested = False  # a nanny plugin asked for a fresh process

    @property
    def plugins(self) -> dict[str, Any]:
        """The worker plugins set up here, by name (dask's ``Worker.plugins``)."""
        return self.plugin_host.plugins

    @property
    def local_directory(self) -> str:
        """This worker's own directory, on ``sys.path``: uploaded files land here."""
        return self.plugin_host.local_directory

    def upload_file(self, filename: str, data: bytes, load: bool = True) -> dict[str, Any]:
        """Save ``data`` as ``filename`` in the local directory; import it with ``load``."""
        return self.plugin_host.upload_file(filename, data, load)

    @functools.cached_property
    def message_bytes_limit(self) -> int:
        """Bytes per piece of a GetData reply (dask's transfer.message-bytes-limit)."""
        return _message_bytes_limit()

    @functools.cached_property
    def connection_limits(self) -> tuple[int, int]:
        """dask's distributed.worker.connections: fetches from peers at once (outgoing)
        and big replies served at once (incoming)."""
        return _connection_limits()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        from shoal.comm._addresses import listen_first, plan_addresses, split_host_port

        scheme = scheme_of(self.scheduler_address)
        plan = plan_addresses(host=self.host, port=self.port,
                              contact_address=self.contact_address,
                              towards=split_host_port(self.scheduler_address, "scheduler")[0])
        self._server = await listen_first(
            plan.bind_ports, lambda port: listen(plan.bind_host, port, self._on_incoming,
                                                 security=self.security, role="worker",
                                                 scheme=scheme))
        self.address = plan.contact_address(self._server.sockets[0].getsockname()[1], scheme)
        self.contact_host = plan.contact_host
        self.name = self.name or self.address
        self._new_session(loop)
        await self._register()

    def _new_session(self, loop: asyncio.AbstractEventLoop) -> None:
        """A fresh state machine, data store and executor for the next registration."""
        self.state = WorkerState(self.address)
        if isinstance(self.data, SpillBuffer):
            self.data.close()
        self.data = self._data_store()
        self.paused = False
        self._deferred_fetches = []
        self._in_flight_bytes = 0
        self._transfer_room = None
        self._actors = ActorHost(self.address, loop)
        self._session += 1
        session = self._session
        self._executor = Executor(
            self.nthreads, self.data, self.functions, loop,
            lambda batch: self._on_executed(batch, session), self.address,
            lambda keys: self._on_started(keys, session),
            lambda cmds: self._on_skipped(cmds, session),
        )
        self._executor.worker = self
        self._executor.on_secede = lambda key, duration: self._on_secede(key, duration, session)

    def _data_store(self) -> MutableMapping[Any, Any]:
        """A plain dict without a memory limit (nothing to pay per task); a spilling
        store under one."""
        if not self.memory_limit:
            return {}
        target, spill, pause, transfer = self._memory_fractions
        directory = self._spill_parent
        if None in (target, spill, pause, transfer) or directory is None:
            import dask.config

            from shoal.worker._nanny import MEMORY_FRACTIONS

            def config(name: str) -> Any:
                return dask.config.get(f"distributed.worker.memory.{name}",
                                       MEMORY_FRACTIONS[name])

            target = config("target") if target is None else target
            spill = config("spill") if spill is None else spill
            pause = config("pause") if pause is None else pause
            transfer = config("transfer") if transfer is None else transfer
            if directory is None:
                directory = dask.config.get("temporary-directory", None) or ""
        self._spill_parent = directory
        self._memory_fractions = (target, spill, pause, transfer)
        self._transfer_budget = int(float(transfer) * self.memory_limit) if transfer else 0
        limits = MemoryLimits.from_fractions(self.memory_limit, target, spill, pause)
        return SpillBuffer(directory, limits)

    async def _register(self) -> None:
        """Connect and register, retrying with backoff until accepted; then heartbeat.

        Raises:
            SchedulerGone: not registered within ``death_timeout`` seconds.
        """
        deadline = None if self.death_timeout is None else time.monotonic() + self.death_timeout
        delay = FIRST_RECONNECT_DELAY
        while True:
            attempt = self.connect_timeout
            if deadline is not None:
                attempt = max(min(attempt, deadline - time.monotonic()), 0.01)
            problem = await self._try_register(attempt)
            if problem is None:
                break
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise SchedulerGone(
                    f"worker {self.address} could not register with the scheduler at "
                    f"{self.scheduler_address} within its death timeout of "
                    f"{self.death_timeout} s ({problem})"
                )
            logger.warning("worker %s: no session with the scheduler at %s (%s); retrying in "
                           "%.2f s", self.address, self.scheduler_address, problem, delay)
            await asyncio.sleep(delay)  # backoff; the loop ends at the deadline or close()
            delay = min(delay * 2, MAX_RECONNECT_DELAY)
        if self._session > 1:
            logger.warning("worker %s registered again with %s as a fresh worker",
                           self.address, self.scheduler_address)
        assert self._scheduler is not None
        self._spawn(self._heartbeat_loop(self._scheduler))
        if isinstance(self.data, SpillBuffer):
            self._spawn(self._memory_monitor(self.data))

    async def _try_register(self, timeout: float) -> str | None:
        """One attempt to connect and register: None once accepted, else what went wrong."""
        conn: Connection | None = None
        self._registered = asyncio.get_running_loop().create_future()
        try:
            conn = await connect(self.scheduler_address, timeout=timeout,
                                 security=self.security, role="worker")
            self._scheduler = conn
            conn.set_handler(self._on_scheduler)
            conn.send(Hello("worker", PROTOCOL_VERSION, str(self.name)))
            conn.send(Register(self.address, str(self.name), self.nthreads, self.memory_limit,
                               os.getpid(), self.contact_host, self.incarnation,
                               self.resources or None))
            refused = await asyncio.wait_for(self._registered, timeout)
            if refused is not None:
                problem = f"registration refused: {refused}"
            elif conn.closed:
                problem = "the connection closed right after registering"
            else:
                return None
        except OSError as exc:  # also ConnectionError and TimeoutError
            problem = str(exc) or type(exc).__name__
        finally:
            self._registered = None
        self._scheduler = None
        if conn is not None:
            conn.close()
        return problem

    async def _reconnect(self) -> None:
        """The scheduler connection dropped: drop the old session, then register again."""
        logger.warning("worker %s lost its connection to the scheduler at %s; reconnecting "
                       "(its %d held keys and running tasks are dropped)",
                       self.address, self.scheduler_address, len(self.data))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.close()
        if self._actors is not None:
            self._actors.close()  # its actors went with the data; pending calls are refused
        for peer in self._peers.values():  # fetches of the old session: nobody waits
            peer.info.pop("requests", None)
        self._new_session(asyncio.get_running_loop())
        try:
            await self._register()
        except SchedulerGone as exc:
            logger.error("%s; closing", exc)
            self.scheduler_gone = True
            await self.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._leaving = True
        reconnecting = self._reconnecting
        if reconnecting is not None and reconnecting is not asyncio.current_task():
            reconnecting.cancel()
            await asyncio.gather(reconnecting, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.plugin_host.close()
        if self._executor is not None:
            self._executor.close()
        if self._actors is not None:
            self._actors.close()
        if self._client is not None:
            from shoal.client._worker_client import close_worker_client

            close_worker_client(self)
        if self._serializer is not None:
            self._serializer.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.data, SpillBuffer):
            self.data.close()
        if self._scheduler is not None:
            if not self._scheduler.closed:
                # On purpose (told to, or signalled): the tasks it held are not to blame.
                self._scheduler.send(WorkerGoodbye("worker closing"))
                await self._scheduler.drain()
            self._scheduler.close()
        for conn in self._peers.values():
            conn.close()
        if self._server is not None:
            self._server.close()

    # --- scheduler messages -----------------------------------------------------------------

    def _on_scheduler(self, conn: Connection, batch: list[Message] | None) -> None:
        if conn is not self._scheduler:
            return  # a connection of a session already ended
        registered = self._registered
        if batch is None:
            if registered is not None:  # _try_register() waits on this connection: it decides
                if not registered.done():
                    registered.set_exception(ConnectionError("the scheduler closed the connection"))
            elif not self._leaving:
                self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())
            return
        if registered is not None and not registered.done():
            reply = batch[0]
            if not isinstance(reply, RegisterReply):
                logger.error("worker %s: expected the scheduler's answer to its registration, "
                             "got %s", self.address, reply.tag)
                conn.close()
                return
            registered.set_result(None if reply.accepted else reply.reason)
            batch = batch[1:]
        assert self.state is not None and self._executor is not None
        events: list[Any] = []
        freed: list[Any] = []
        for msg in batch:
            if isinstance(msg, Compute):
                if msg.functions:
                    self.functions.add_blobs(msg.functions)
                self._executor.unrevoke(msg.key)
                events.append(ComputeAssigned(msg))
                if self.plugin_host.watchers:
                    self.plugin_host.transition(msg.key, "released", "waiting")
            elif isinstance(msg, FreeKeys):
                freed.extend(msg.keys)
                events.append(KeysFreed(list(msg.keys)))
            elif isinstance(msg, DropFunctions):
                self.functions.forget(list(msg.fids))
            elif isinstance(msg, Store):
                if costly_to_load(msg.data):
                    self._spawn(self._store_off_loop(msg))
                else:
                    events.append(self._store(msg, unpickle))
            elif isinstance(msg, Run):
                self._spawn(self._run_function(conn, msg))
            elif isinstance(msg, (PluginSetup, PluginTeardown)):
                if events:  # tasks before the plugin message are assigned before it
                    self._carry_out(self.state.handle(*events))
                    events = []
                self.plugin_host.on_message(conn, msg)
            elif isinstance(msg, CopyKeys):
                from shoal.worker._copies import copy_keys

                self._spawn(copy_keys(self, conn, msg))
            elif isinstance(msg, Close):
                logger.info("worker %s closing: %s", self.address, msg.reason)
                self.scheduler_gone = True
                self._leaving = True
                asyncio.get_running_loop().create_task(self.close())
            elif isinstance(msg, RestartWorker):
                self._restart(conn, msg.reason)
                return
            elif isinstance(msg, Response):
                pass
            else:
                logger.warning("worker got an unexpected %s from the scheduler", msg.tag)
        if events:
            self._carry_out(self.state.handle(*events))
        if freed:  # freed while queued (cancelled, or stolen by another worker): don't start
            tasks = self.state.tasks
            revoked = [k for k in freed if k in tasks and tasks[k].state == "cancelled"]
            if revoked:
                self._executor.revoke(revoked)

    def _on_skipped(self, cmds: list[Execute], session: int) -> None:
        """Queued tasks the executor did not start because they were freed: run the ones
        wanted again since, and let the state forget the others."""
        if session != self._session:
            return  # tasks of a session already ended
        assert self.state is not None and self._executor is not None
        events = []
        for cmd in cmds:
            ts = self.state.tasks.get(cmd.key)
            if ts is not None and ts.state == "executing":
                self._executor.submit(cmd)
            else:
                now = time.time()
                events.append(ExecuteDone(cmd.key, 0, "", now, now, -1, None, _NOT_RUN))
        if events:
            self._carry_out(self.state.handle(*events))

    def _on_started(self, keys: list[Any], session: int) -> None:
        if session == self._session and self._scheduler is not None:
            self._scheduler.send(TasksStarted(keys))

    def _restart(self, conn: Connection, reason: str) -> None:
        """Be replaced (``client.restart``): exit for the nanny to start a fresh process,
        or, without a nanny, drop this session and register again as a fresh worker."""
        logger.info("worker %s restarting: %s", self.address, reason)
        if self.on_restart is not None:
            self.on_restart()
            return
        conn.close()  # its loss starts _reconnect, as any lost scheduler connection does

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log ``msg`` on the scheduler under ``topic`` (or each of a list of topics), as
        ``client.log_event`` does; callable from task threads."""
        from shoal.client._topics import check_loggable

        topics = [topic] if isinstance(topic, str) else list(topic)
        check_loggable(msg)
        sched, executor = self._scheduler, self._executor
        if sched is not None and executor is not None:
            executor._loop.call_soon_threadsafe(sched.send, TopicLog(topics, msg))

    def _on_secede(self, key: Any, duration: float, session: int) -> None:
        """A task in the executor seceded: the scheduler stops counting it as busy."""
        if session == self._session and self._scheduler is not None and not self._scheduler.closed:
            self._scheduler.send(TaskSeceded(key, duration))

    def _on_executed(self, batch: list[ExecuteDone], session: int) -> None:
        if session != self._session:
            return  # tasks of a session already ended: their results are not trusted
        assert self.state is not None
        if self.plugin_host.watchers:
            for ev in batch:
                self.plugin_host.transition(ev.key, "executing",
                                        "memory" if ev.error is None else "error")
        self._carry_out(self.state.handle(*batch))

    def _carry_out(self, commands: list[Any]) -> None:
        sched = self._scheduler
        executor = self._executor
        actors = self._actors
        assert sched is not None and executor is not None and actors is not None
        for cmd in commands:
            kind = type(cmd)
            if kind is Report:
                sched.send(cmd.msg)
            elif kind is Execute:
                executor.submit(cmd)
                if self.plugin_host.watchers:
                    self.plugin_host.transition(cmd.key, "waiting", "executing")
            elif kind is Drop:
                data = self.data
                for key in cmd.keys:
                    if key in data:  # not pop(): that would read a spilled value back
                        del data[key]
                    if self.plugin_host.watchers:
                        self.plugin_host.transition(key, "memory", "released")
                if actors.objects:
                    actors.release(cmd.keys)
            elif kind is Fetch:
                if self.paused:  # paused: nothing new comes in until resumed
                    self._deferred_fetches.append(cmd)
                else:
                    self._spawn(self._fetch_within_budget(cmd))

    async def _run_function(self, conn: Connection, msg: Run) -> None:
        """``client.run``: the function runs on a daemon thread of its own, so one that never
        returns neither holds a pool thread nor keeps the process from exiting; if the
        worker closes first, the caller gets an error instead of waiting forever. An async
        function is awaited on the worker's loop. ``dask_worker=`` is given this worker."""
        from shoal._run import in_background, inject
        from shoal.protocol._errors import exception_to_error

        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def deliver(ok: bool, value: Any) -> None:
            if not outcome.done():
                outcome.set_result((ok, value))

        def run() -> None:
            try:
                ok, value = True, fn()
            except BaseException as exc:  # reported to the caller, whatever it is
                ok, value = False, exc
            try:
                loop.call_soon_threadsafe(deliver, ok, value)
            except RuntimeError:  # the loop closed: the worker is gone, nobody to answer
                logger.info("worker %s: client.run finished after the worker closed",
                            self.address)

        fn: Any = None
        if not imports_ready.is_set():
            # Like a task: unpickling may import modules that import dask, never at the same
            # time as the start-up thread does (it always ends by setting the flag).
            await asyncio.to_thread(imports_ready.wait)
        try:
            fn = inject(unpickle(msg.function), "dask_worker", self)
        except BaseException as exc:
            deliver(False, exc)
        else:
            if inspect.iscoroutinefunction(fn):
                # An async function runs on this loop (dask's rule); without ``wait`` nobody
                # waits for it: it is a task of the worker, cancelled when it closes.
                if not msg.wait:
                    self._spawn(in_background(fn, f"worker {self.address}"))
                    deliver(True, None)
                else:
                    self._spawn(self._await_run(fn, deliver))
            else:
                threading.Thread(target=run, name=f"shoal-run-{msg.request_id}",
                                 daemon=True).start()
        try:
            ok, value = await outcome
        except asyncio.CancelledError:
            gone = RuntimeError(f"worker {self.address} closed while the function given to "
                                "client.run was still running")
            conn.send(Response(msg.request_id, False,
                               exception_to_error(gone, None, "run", self.address, time.time())))
            raise
        if ok:
            try:
                value = dumps(value)
            except Exception as exc:
                ok, value = False, exc
        if not ok:
            value = exception_to_error(value, value.__traceback__, "run", self.address, time.time())
        conn.send(Response(msg.request_id, ok, value))

    @staticmethod
    async def _await_run(function: Any, deliver: Any) -> None:
        try:
            value = await function()
        except Exception as exc:
            deliver(False, exc)
        else:
            deliver(True, value)

    async def _heartbeat_loop(self, conn: Connection) -> None:
        assert self.state is not None
        self._process.cpu_percent()
        while not conn.closed:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                rss = self._process.memory_info().rss
                cpu = self._process.cpu_percent()
            except psutil.Error:
                rss, cpu = 0, 0.0
            executing = self._executor.executing if self._executor else 0
            data = self.data
            if isinstance(data, SpillBuffer):
                managed, spilled = data.managed_in_memory, data.spilled_bytes
            else:
                managed, spilled = self.state.managed_bytes, 0
            conn.send(Heartbeat(rss, managed, cpu, executing, spilled))

    async def _memory_monitor(self, store: SpillBuffer) -> None:
        """Sample process memory every ``MEMORY_MONITOR_INTERVAL`` seconds and carry out
        the policy: spill (in the serializing thread: disk writes stay off the loop),
        pause, resume. Ends with its session (cancelled) or when the worker closes."""
        loop = asyncio.get_running_loop()
        spill_at = store.policy.limits.spill
        while not self._closed.is_set():
            await asyncio.sleep(MEMORY_MONITOR_INTERVAL)
            try:
                rss = self._process.memory_info().rss
            except psutil.Error as exc:
                logger.warning("worker %s cannot measure its memory: %s", self.address, exc)
                continue
            if spill_at is not None and rss > spill_at:
                commands = await loop.run_in_executor(self._serializing_pool(), store.sample, rss)
            else:
                commands = store.sample(rss)
            if store is not self.data:
                return  # the session ended meanwhile
            for cmd in commands:
                if type(cmd) is Pause:
                    self._pause(rss)
                elif type(cmd) is Resume:
                    self._resume(rss)

    def _pause(self, rss: int) -> None:
        if self.paused:
            return
        self.paused = True
        logger.warning("worker %s is at %.0f%% of its memory limit (%d bytes); pausing: no new "
                       "tasks nor fetches until it falls back below its pause threshold",
                       self.address, 100 * rss / self.memory_limit, rss)
        if self._executor is not None:
            self._executor.pause()
        if self._scheduler is not None and not self._scheduler.closed:
            self._scheduler.send(MemoryPaused(True))

    def _resume(self, rss: int) -> None:
        if not self.paused:
            return
        self.paused = False
        logger.warning("worker %s is at %.0f%% of its memory limit; resuming",
                       self.address, 100 * rss / self.memory_limit)
        if self._executor is not None:
            self._executor.resume()
        fetches, self._deferred_fetches = self._deferred_fetches, []
        for cmd in fetches:
            self._spawn(self._fetch_within_budget(cmd))
        if self._scheduler is not None and not self._scheduler.closed:
            self._scheduler.send(MemoryPaused(False))

    # --- data plane -----------------------------------------------------------------------------

    def _on_incoming(self, conn: TCPConnection) -> None:
        conn.set_handler(self._on_peer_message)

    def _on_peer_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            return
        for msg in batch:
            if isinstance(msg, GetData):
                data = self.data
                if isinstance(data, SpillBuffer) and any(data.on_disk(k) for k in msg.keys):
                    self._spawn(self._send_spilled(conn, msg, data))
                    continue
                values = {k: self.data[k] for k in msg.keys if k in self.data}
                missing = [k for k in msg.keys if k not in values]
                sizes = self._sizes(values)
                if sum(sizes.values()) > self.message_bytes_limit or any(
                    costly_to_pickle(v, sizes[k]) for k, v in values.items()
                ):
                    self._spawn(self._send_data_off_loop(conn, msg.request_id, values, missing,
                                                         sizes))
                else:
                    items, errors = self._pickle_values(values)
                    conn.send(Data(msg.request_id, items, missing, errors))
            elif isinstance(msg, Data):
                whole_msg = whole(conn.info, msg)
                if whole_msg is None:
                    continue  # more pieces of this reply follow
                msg = whole_msg
                # Matched on this connection only: a peer cannot answer another's fetch.
                fut = conn.info.get("requests", {}).pop(msg.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif isinstance(msg, ActorCall):
                assert self._actors is not None
                self._actors.on_call(conn, msg)
            elif isinstance(msg, Hello):
                pass
            else:
                logger.warning("closing peer connection: unexpected %s", msg.tag)
                conn.close()

    def _store(self, msg: Store, load: Any) -> Any:
        """Hold scattered data; the event that acknowledges it (or says why it failed)."""
        try:
            self.data[msg.key] = load(msg.data)
        except Exception as exc:
            logger.warning("could not load scattered data %r: %r", msg.key, exc)
            return StoreFailed(msg.key, self._unstorable(msg.key, exc))
        return DataStored(msg.key, msg.nbytes)

    async def _store_off_loop(self, msg: Store) -> None:
        """Big scattered data is unpickled in the serializing thread."""
        assert self.state is not None
        loop = asyncio.get_running_loop()
        try:
            # Not through unpickle()'s lock: tasks keep starting while big data loads.
            value = await loop.run_in_executor(self._serializing_pool(), loads, msg.data)
        except Exception as exc:
            event = self._store(msg, _raise(exc))
        else:
            event = self._store(msg, lambda _data: value)
        self._carry_out(self.state.handle(event))

    def _serializing_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._serializer is None:
            self._serializer = concurrent.futures.ThreadPoolExecutor(
                2, thread_name_prefix="shoal-serialize"
            )
        return self._serializer

    def _sizes(self, values: dict[Any, Any]) -> dict[Any, int]:
        assert self.state is not None
        held = self.state.held
        out = {}
        for key, value in values.items():
            nbytes = held.get(key)
            out[key] = nbytes if nbytes is not None else measure(value)
        return out

    def _pickle_values(self, values: dict[Any, Any]) -> tuple[dict[Any, Serialized], dict[Any, Any]]:
        items: dict[Any, Serialized] = {}
        errors: dict[Any, Any] = {}
        for key, value in values.items():
            try:
                items[key] = dumps(value)
            except Exception as exc:
                errors[key] = self._unsendable(key, exc)
        return items, errors

    async def _send_data_off_loop(self, conn: Connection, request_id: int,
                                  values: dict[Any, Any], missing: list[Any],
                                  sizes: dict[Any, int]) -> None:
        """Answer with big values in pieces of at most ``message_bytes_limit`` bytes (dask's
        ``distributed.worker.transfer.message-bytes-limit``), each sent once the previous
        one has left the socket buffer (so many or slow readers never make this worker
        hold more than a piece per reader). Costly values are pickled in the serializing
        thread: the loop keeps serving the scheduler, peers and finished tasks meanwhile.
        At most ``distributed.worker.connections.incoming`` such replies go out at once."""
        if self._serve_slots is None:
            self._serve_slots = asyncio.Semaphore(self.connection_limits[1])
        async with self._serve_slots:
            await self._send_pieces(conn, request_id, values, missing, sizes)

    async def _send_pieces(self, conn: Connection, request_id: int, values: dict[Any, Any],
                           missing: list[Any], sizes: dict[Any, int]) -> None:
        loop = asyncio.get_running_loop()
        runs = split_by_size(list(values), sizes, self.message_bytes_limit)
        for i, keys in enumerate(runs):
            part = {k: values[k] for k in keys}
            if any(costly_to_pickle(v, sizes[k]) for k, v in part.items()):
                items, errors = await loop.run_in_executor(
                    self._serializing_pool(), self._pickle_values, part
                )
            else:
                items, errors = self._pickle_values(part)
            if conn.closed:
                return
            try:
                await asyncio.wait_for(conn.drain(), self.fetch_timeout)
            except asyncio.TimeoutError:
                logger.warning("closing connection to %s: it read nothing for %g s while "
                               "sent data", conn.peer, self.fetch_timeout)
                conn.close()
                return
            last = i == len(runs) - 1
            conn.send(Data(request_id, items, missing if last else [], errors, not last))

    async def _send_spilled(self, conn: Connection, msg: GetData, store: SpillBuffer) -> None:
        """Answer a fetch of values some of which are on disk: their files' frames are
        sent as they are (read in the serializing thread, never unpickled here, nor brought
        back into the store's memory); the others are pickled there too."""

        def collect() -> tuple[dict[Any, Serialized], list[Any], dict[Any, Any]]:
            items: dict[Any, Serialized] = {}
            values: dict[Any, Any] = {}
            missing: list[Any] = []
            for key in msg.keys:
                try:
                    ser = store.serialized(key)
                    if ser is not None:
                        items[key] = ser
                    else:
                        values[key] = store[key]
                except KeyError:
                    missing.append(key)
            pickled, errors = self._pickle_values(values)
            items.update(pickled)
            return items, missing, errors

        loop = asyncio.get_running_loop()
        if self._disk_sends is None:
            self._disk_sends = asyncio.Semaphore(SPILLED_SENDS)
        # Bounded: values read from disk for peers are memory too; the next is read only
        # once the previous ones have left (the socket drained).
        async with self._disk_sends:
            try:
                items, missing, errors = await loop.run_in_executor(self._serializing_pool(),
                                                                    collect)
            except OSError as exc:  # a spill file went missing or unreadable
                logger.error("worker %s could not read spilled data for a fetch: %s",
                             self.address, exc)
                items, missing, errors = {}, list(msg.keys), {}
            if not conn.closed:
                conn.send(Data(msg.request_id, items, missing, errors))
                await conn.drain()

    def _unstorable(self, key: Any, exc: BaseException) -> dict[str, Any]:
        """The error of a scattered value this worker cannot load."""
        from shoal.protocol._errors import exception_to_error

        return exception_to_error(exc, exc.__traceback__, key, self.address, time.time())

    def _unsendable(self, key: Any, exc: BaseException) -> dict[str, Any]:
        from shoal.protocol._errors import exception_to_error

        unsendable = TypeError(
            f"the result of {key!r} ({type(self.data.get(key)).__name__}) cannot be sent to "
            f"another process: {exc}. Return picklable values from tasks whose results other "
            "tasks or the client use."
        )
        return exception_to_error(unsendable, None, key, self.address, time.time())

    async def _peer(self, address: str) -> TCPConnection:
        conn = self._peers.get(address)
        if conn is not None and not conn.closed:
            return conn
        lock = self._peer_lock.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._peers.get(address)
            if conn is not None and not conn.closed:
                return conn
            conn = await connect(address, timeout=10, security=self.security, role="worker")
            conn.set_handler(self._on_peer_message)
            conn.send(Hello("peer", PROTOCOL_VERSION, self.address))
            self._peers[address] = conn
            return conn

    async def _fetch_within_budget(self, cmd: Fetch) -> None:
        """Without a memory limit, one fetch of all the keys. Under one, the keys go in
        groups whose known sizes fit the transfer budget (dask's
        ``distributed.worker.memory.transfer``, 10% of the limit), each group starting
        once the bytes in flight leave room for it (or nothing is in flight): values
        arriving are memory before they can be spilled."""
        budget = self._transfer_budget
        if not budget:
            await self._fetch(cmd.peer, cmd.keys)
            return
        groups = transfer_groups(cmd.keys, cmd.sizes, budget)
        room = self._transfer_room
        if room is None:
            room = self._transfer_room = asyncio.Condition()
        for keys, nbytes in groups:
            async with room:  # woken by each fetch that ends; every fetch has a deadline
                await room.wait_for(functools.partial(self._fits_in_flight, nbytes, budget))
                self._in_flight_bytes += nbytes
            try:
                await self._fetch(cmd.peer, keys)
            finally:
                async with room:
                    self._in_flight_bytes -= nbytes
                    room.notify_all()

    def _fits_in_flight(self, nbytes: int, budget: int) -> bool:
        return self._in_flight_bytes == 0 or self._in_flight_bytes + nbytes <= budget

    async def _fetch(self, peer: str, keys: list[Any]) -> None:
        """Fetch ``keys`` from ``peer``. Always ends by telling the state machine: the data
        (FetchDone), or FetchFailed when the peer is unreachable, closes the connection, or
        sends nothing for ``fetch_timeout`` seconds (frozen, or powered off). At most
        ``distributed.worker.connections.outgoing`` fetches run at once; the others wait
        their turn (each of those waits ends when a running fetch ends, which has its own)."""
        assert self.state is not None
        if self._fetch_slots is None:
            self._fetch_slots = asyncio.Semaphore(self.connection_limits[0])
        start = time.time()
        try:
            async with self._fetch_slots:
                reply = await self._get_data(peer, keys)
            got: dict[Any, int] = {}
            errors = dict(reply.errors)
            from shoal.protocol._sizeof import nbytes

            for key, ser in reply.items.items():
                try:
                    value = unpickle(ser)
                except Exception as exc:  # fetching it again would fail the same way
                    errors[key] = self._unloadable(key, peer, exc)
                    continue
                self.data[key] = value
                got[key] = nbytes(value)
            events: list[Any] = [FetchDone(peer, got, list(reply.missing), start, time.time(), errors)]
        except (OSError, ConnectionError) as exc:
            logger.warning("worker %s could not fetch %d keys from %s: %s", self.address,
                           len(keys), peer, exc)
            events = [FetchFailed(peer, keys)]
        except Exception:
            logger.exception("worker %s: fetching %d keys from %s failed", self.address,
                             len(keys), peer)
            events = [FetchFailed(peer, keys)]
        self._carry_out(self.state.handle(*events))

    async def _get_data(self, peer: str, keys: list[Any]) -> Data:
        conn = await self._peer(peer)
        rid = next(self._ids)
        fut: asyncio.Future[Data] = asyncio.get_running_loop().create_future()
        # Matched on this connection only: a peer cannot answer another's fetch.
        requests = conn.info.setdefault("requests", {})
        requests[rid] = fut
        conn.send(GetData(rid, keys))
        try:
            reply: Data = await wait_reply(conn, fut, self.fetch_timeout, f"{len(keys)} key(s)")
        finally:
            requests.pop(rid, None)
        return reply

    def _unloadable(self, key: Any, peer: str, exc: BaseException) -> dict[str, Any]:
        from shoal.protocol._errors import exception_to_error

        err = TypeError(
            f"input {key!r} fetched from {peer} cannot be loaded on worker {self.address}: "
            f"{type(exc).__name__}: {exc}. Install the same packages (and versions) on every "
            "worker."
        )
        return exception_to_error(err, exc.__traceback__, key, self.address, time.time())


def transfer_groups(keys: list[Any], sizes: dict[Any, int],
                    budget: int) -> list[tuple[list[Any], int]]:
    """``keys`` in order, cut into groups of at most ``budget`` known bytes (a key bigger
    than the budget alone in its group); each with its total."""
    groups: list[tuple[list[Any], int]] = []
    group: list[Any] = []
    total = 0
    for key in keys:
        nbytes = max(sizes.get(key, 0), 0)
        if group and total + nbytes > budget:
            groups.append((group, total))
            group, total = [], 0
        group.append(key)
        total += nbytes
    if group:
        groups.append((group, total))
    return groups


def _connection_limits() -> tuple[int, int]:
    """(fetches at once, big replies served at once): dask's
    ``distributed.worker.connections.outgoing`` / ``.incoming`` (50 / 10)."""
    import dask.config

    out = []
    for name, default in (("outgoing", 50), ("incoming", 10)):
        value = dask.config.get(f"distributed.worker.connections.{name}", default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"distributed.worker.connections.{name} must be a positive integer, got {value!r}"
            )
        out.append(value)
    return out[0], out[1]


def _message_bytes_limit() -> int:
    """Bytes per piece of a GetData reply: dask's
    ``distributed.worker.transfer.message-bytes-limit`` (50 MB)."""
    import dask.config
    from dask.utils import parse_bytes

    value = dask.config.get("distributed.worker.transfer.message-bytes-limit",
                            MESSAGE_BYTES_LIMIT)
    limit = parse_bytes(value) if isinstance(value, str) else int(value)
    if limit <= 0:
        raise ValueError(
            "distributed.worker.transfer.message-bytes-limit must be a positive size like "
            f"'50MB', got {value!r}"
        )
    return int(limit)


def _raise(exc: BaseException) -> Any:
    """A loader that fails with ``exc`` (it already failed in the serializing thread)."""

    def load(_data: Any) -> Any:
        raise exc

    return load
