"""The worker process's I/O shell around :class:`shoal.worker._state.WorkerState`.

Owns: the connection to the scheduler, the listening socket peers and clients fetch data
from, the data store, fetches from peers, heartbeats, and the executor. Decisions about
tasks are the state machine's; this only carries them out.

``Worker`` is put together from parts, one concept each, sharing the attributes of
``_worker_base.WorkerBase``: the scheduler session (``_session.py``), the data server
(``_serving.py``), fetches (``_fetching.py``), the memory limit (``_memory_monitor.py``)
and ``client.run`` (``_client_run.py``). This module holds its lifecycle and the hub
between the parts: scheduler messages become events for the state machine, and its
commands become messages, executor submissions, drops and fetches.

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
import logging
import sys
import time
from typing import Any

from shoal.comm import Connection, listen
from shoal.comm._tcp import scheme_of
from shoal.protocol._columns import tasks_done
from shoal.protocol._messages import (
    Close,
    Compute,
    Computes,
    CopyKeys,
    DropFunctions,
    FreeKeys,
    Message,
    PluginSetup,
    PluginTeardown,
    ProfileAsk,
    RegisterReply,
    Response,
    RestartWorker,
    Run,
    Store,
    TaskDone,
    TaskSeceded,
    TasksStarted,
    TopicLog,
    WorkerGoodbye,
)
from shoal.protocol._serialize import costly_to_load
from shoal.worker import _execute
from shoal.worker._actors import ActorHost
from shoal.worker._client_run import ClientRunMixin
from shoal.worker._execute import Executor, loads_when_ready, unpickle
from shoal.worker._fetching import FetchingMixin
from shoal.worker._introspect import STORY_LENGTH_UNREAD, follow_story_length, story_length
from shoal.worker._memory_monitor import MemoryMonitorMixin
from shoal.worker._serving import ServingMixin
from shoal.worker._session import SchedulerGone, SessionMixin
from shoal.worker._spill import SpillBuffer
from shoal.worker._state import (
    ComputeAssigned,
    ComputesAssigned,
    DataStored,
    Drop,
    Execute,
    ExecuteDone,
    Fetch,
    KeysFreed,
    Report,
    StoreFailed,
    WorkerState,
)
from shoal.worker._surface import TaskFacingMixin

logger = logging.getLogger("shoal.worker")

__all__ = ["SchedulerGone", "Worker"]


# The outcome of a freed task the executor skipped (the state drops it, reporting nothing).
_NOT_RUN = {"kind": "cancelled", "type": "CancelledError", "message": "freed before it started",
            "exception": None, "traceback": None, "tb_text": ""}


class Worker(SessionMixin, ServingMixin, FetchingMixin, MemoryMonitorMixin, ClientRunMixin,
             TaskFacingMixin):
    """One worker: the I/O shell around a :class:`WorkerState`, run on an asyncio loop.

    ``await worker.start()`` listens and registers with the scheduler; ``await
    worker.wait_closed()`` returns once it has closed (asked by the scheduler, a signal, or
    the scheduler lost past ``death_timeout``); ``await worker.close()`` closes it. ``python
    -m shoal.worker`` (``shoal.worker.__main__``) runs one as a process this way;
    ``LocalCluster(processes=False)`` runs them in its own loop.
    """

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        from shoal.comm._addresses import listen_first, plan_addresses, split_host_port

        scheme = scheme_of(self.scheduler_address)
        plan = plan_addresses(host=self.host, port=self._port_spec,
                              contact_address=self._contact_spec,
                              towards=split_host_port(self.scheduler_address, "scheduler")[0])
        self._server = await listen_first(
            plan.bind_ports, lambda port: listen(plan.bind_host, port, self._on_incoming,
                                                 security=self.security, role="worker",
                                                 scheme=scheme))
        self.address = plan.contact_address(self._server.sockets[0].getsockname()[1], scheme)
        self.contact_host = plan.contact_host
        if self.name is None or self.name == "":  # (not `or`: 0 is LocalCluster's first name)
            self.name = self.address
        self._new_session(loop)
        if self.preloads is not None:  # as dask: set up once listening, before registering
            await self.preloads.setup(self)
        from shoal.worker._profiling import WorkerProfiler

        self._profiler = WorkerProfiler(self)
        await self._register()
        if self.lifetime is not None:
            from shoal.worker._lifetime import end_of_life

            self._lifetime_task = loop.create_task(end_of_life(self, self.lifetime))

    def _new_session(self, loop: asyncio.AbstractEventLoop) -> None:
        """A fresh state machine, data store and executor for the next registration."""
        # Its story's length is dask's config, read once dask is imported: a worker
        # process imports it in the background after start-up (see _introspect).
        if self.story_length is STORY_LENGTH_UNREAD:
            if "dask.config" in sys.modules and _execute.imports_ready.is_set():
                self.story_length = story_length()
            else:
                self._spawn(follow_story_length(self))
        if self.story_length is STORY_LENGTH_UNREAD:
            self.state = WorkerState(self.address)
        else:
            self.state = WorkerState(self.address, self.story_length)
        if isinstance(self.data, SpillBuffer):
            self.data.close()
        self.data = self._data_store()
        self.paused = False
        self._deferred_fetches = []
        self._in_flight_bytes = 0
        self._transfer_room = None
        self._fetch_queues = {}
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
        if self.task_exit_ends_process:
            self._executor.on_task_exit = self._on_task_exit

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_closed(self) -> None:
        await self._closed.wait()  # ends: close(), which losing the scheduler for good calls

    async def close(self) -> None:
        """Close once; every caller returns when that close has finished (a second caller
        returning early would let ``python -m shoal.worker`` end its loop before the goodbye
        left). The close runs as its own task, so a caller among the tasks it cancels does not
        cut it short."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_once())
        await asyncio.shield(self._closing)

    def running_tasks(self) -> int:
        """How many tasks this worker's threads are running now (seceded ones too)."""
        executor = self._executor
        return 0 if executor is None else executor.executing + executor.seceded

    def close_as_crash(self, reason: str) -> None:
        """Close without the goodbye that makes the close one on purpose: the scheduler sees
        the connection drop, as when a worker process dies, and counts it against the tasks
        this worker was running (KilledWorker after ``allowed-failures``), as dask does."""
        if self.crash_reason is None:
            self.crash_reason = reason
            logger.error("worker %s closes as a crash: %s", self.address, reason)
        # Its owner: whoever awaits the close (python -m shoal.worker awaits it).
        asyncio.get_running_loop().create_task(self.close())

    def _on_task_exit(self, key: Any, exc: BaseException) -> None:
        """On the loop: task ``key`` raised ``exc`` (SystemExit, KeyboardInterrupt)."""
        what = f"{type(exc).__name__}({exc})" if str(exc) else type(exc).__name__
        self.close_as_crash(f"task {key!r} raised {what}, which ends a worker process (as "
                            "in dask); its nanny restarts it")

    async def _close_once(self) -> None:
        self._closed.set()
        self._leaving = True
        reconnecting = self._reconnecting
        if reconnecting is not None and reconnecting is not asyncio.current_task():
            reconnecting.cancel()
            await asyncio.gather(reconnecting, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        lifetime = self._lifetime_task
        if lifetime is not None and lifetime is not asyncio.current_task():
            lifetime.cancel()  # it may be the one waiting for this close: not awaited
        await self.plugin_host.close()
        if self.preloads is not None:
            await self.preloads.teardown()
        if self._executor is not None:
            self._executor.close()
        if self._profiler is not None:
            self._profiler.close()
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
                # A crash (close_as_crash) only flushes what it had to say (its starts).
                if self.crash_reason is None:
                    self._scheduler.send(WorkerGoodbye("worker closing"))
                await self._scheduler.drain()
            self._scheduler.close()
        for conn in self._peers.values():
            conn.close()
        if self._server is not None:
            self._server.close()
        for incoming in list(self._incoming):
            incoming.close()
        self._incoming.clear()

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
            if reply.accepted:
                if self.on_registered is not None:
                    self.on_registered()  # its imports; it says it is ready after them
                elif _execute.imports_ready.is_set():
                    self.say_ready()  # reconnected, or in-process: tasks may start at once
            batch = batch[1:]
        assert self.state is not None and self._executor is not None
        events: list[Any] = []
        freed: list[Any] = []
        for msg in batch:
            if type(msg) is Computes:
                if msg.functions:
                    self.functions.add_blobs(msg.functions)
                self._executor.unrevoke_many(msg.keys)
                events.append(ComputesAssigned(msg))
                if self.plugin_host.watchers:
                    for key in msg.keys:
                        self.plugin_host.transition(key, "released", "waiting")
            elif isinstance(msg, Compute):
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
                    self._carry_out(self.state.handle(*events, now=time.time()))
                    events = []
                self.plugin_host.on_message(conn, msg)
            elif isinstance(msg, CopyKeys):
                from shoal.worker._copies import copy_keys

                self._spawn(copy_keys(self, conn, msg))
            elif isinstance(msg, ProfileAsk):
                if self._profiler is not None:
                    self._profiler.answer(conn, msg)
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
            self._carry_out(self.state.handle(*events, now=time.time()))
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
            self._carry_out(self.state.handle(*events, now=time.time()))

    def _on_started(self, keys: list[Any], session: int) -> None:
        if session == self._session and self._scheduler is not None:
            assert self.state is not None
            tasks = self.state.tasks
            # Each key's current run (its record stays until its result is handled).
            runs = [ts.run if (ts := tasks.get(k)) is not None else 0 for k in keys]
            self._scheduler.send(TasksStarted(keys, runs))

    def say_ready(self) -> None:
        """Tell the scheduler, now rather than at the end of this loop iteration, that this
        worker runs tasks from here on (an empty start notice): sent before its threads may
        start a task that could kill the process at once, so that its death blames it."""
        conn = self._scheduler
        if conn is not None and not conn.closed:
            conn.send(TasksStarted([], []))
            conn.flush()

    def story(self, *keys_or_stimuli: Any) -> list[tuple[Any, ...]]:
        """This worker's story rows about these keys or stimulus ids, oldest first, in
        dask's shape (dask's ``Worker.story``; see :meth:`WorkerState.story`)."""
        return [] if self.state is None else self.state.story(*keys_or_stimuli)

    def get_current_task(self) -> Any:
        """The key of the task running in the calling thread (None outside a task), as
        dask's ``Worker.get_current_task``: tasks label their logs and outputs with it."""
        return getattr(_execute._thread_state, "key", None)

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log ``msg`` on the scheduler under ``topic`` (or each of a list of topics), as
        ``client.log_event`` does; callable from task threads. A dict message gets the
        worker's address under ``"worker"``, as dask's scheduler adds it."""
        from shoal.client._topics import check_loggable

        topics = [topic] if isinstance(topic, str) else list(topic)
        check_loggable(msg)
        if isinstance(msg, dict) and topic != self.address:
            msg = {**msg, "worker": self.address}
        sched, executor = self._scheduler, self._executor
        if sched is not None and executor is not None:
            executor.call_in_order(sched.send, TopicLog(topics, msg))  # before a result

    def _on_secede(self, key: Any, duration: float, session: int) -> None:
        """A task in the executor seceded: the scheduler stops counting it as busy."""
        if session == self._session and self._scheduler is not None and not self._scheduler.closed:
            assert self.state is not None
            ts = self.state.tasks.get(key)
            if ts is not None:  # else its record is gone: nobody counts it as busy
                self._scheduler.send(TaskSeceded(key, duration, ts.run))

    def _on_executed(self, batch: list[ExecuteDone], session: int) -> None:
        if session != self._session:
            return  # tasks of a session already ended: their results are not trusted
        assert self.state is not None
        if self.plugin_host.watchers:
            for ev in batch:
                self.plugin_host.transition(ev.key, "executing",
                                            "memory" if ev.error is None else "error", ev.error)
        sched = self._scheduler
        now = time.time()
        if sched is None:
            self._carry_out(self.state.handle(*batch, now=now))
            return
        sched.hold()  # the executor batched what finished: report it now, in one write
        try:
            self._carry_out(self.state.handle(*batch, now=now))
        finally:
            sched.flush()

    def _carry_out(self, commands: list[Any]) -> None:
        sched = self._scheduler
        executor = self._executor
        actors = self._actors
        assert sched is not None and executor is not None and actors is not None
        done: list[TaskDone] = []  # consecutive results, sent as one TasksDone
        run: list[Execute] = []  # consecutive tasks to run, queued with one lock
        for cmd in commands:
            kind = type(cmd)
            if kind is Execute:
                run.append(cmd)  # type: ignore[arg-type]
                continue
            if run:
                self._submit(executor, run)
                run = []
            if kind is Report:
                msg = cmd.msg  # type: ignore[attr-defined]
                if type(msg) is TaskDone:
                    done.append(msg)
                    continue
                if done:
                    _send_done(sched, done)
                    done = []
                sched.send(msg)
            elif kind is Drop:
                data = self.data
                if type(data) is SpillBuffer:
                    data.drop(cmd.keys)  # type: ignore[attr-defined]
                else:
                    for key in cmd.keys:  # type: ignore[attr-defined]
                        if key in data:
                            del data[key]
                if self.plugin_host.watchers:
                    for key in cmd.keys:  # type: ignore[attr-defined]
                        self.plugin_host.transition(key, "memory", "released")
                if actors.objects:
                    actors.release(cmd.keys)  # type: ignore[attr-defined]
            elif kind is Fetch:
                if self.paused:  # paused: nothing new comes in until resumed
                    self._deferred_fetches.append(cmd)
                else:
                    self._queue_fetch(cmd)
        if run:
            self._submit(executor, run)
        if done:
            _send_done(sched, done)

    def _submit(self, executor: Executor, cmds: list[Execute]) -> None:
        executor.submit_many(cmds)
        if self.plugin_host.watchers:
            for cmd in cmds:
                self.plugin_host.transition(cmd.key, "waiting", "executing")

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
            value = await loop.run_in_executor(self._serializing_pool(), loads_when_ready,
                                               msg.data)
        except Exception as exc:
            event = self._store(msg, _raise(exc))
        else:
            event = self._store(msg, lambda _data: value)
        self._carry_out(self.state.handle(event, now=time.time()))

    def _unstorable(self, key: Any, exc: BaseException) -> dict[str, Any]:
        """The error of a scattered value this worker cannot load."""
        from shoal.protocol._errors import exception_to_error

        return exception_to_error(exc, exc.__traceback__, key, self.address, time.time())


def _send_done(sched: Connection, done: list[TaskDone]) -> None:
    """Results reported one after the other, as one message (one of them as itself)."""
    sched.send(done[0] if len(done) == 1 else tasks_done(done))


def _raise(exc: BaseException) -> Any:
    """A loader that fails with ``exc`` (it already failed in the serializing thread)."""

    def load(_data: Any) -> Any:
        raise exc

    return load
