"""The worker process's I/O shell around :class:`shoal.worker._state.WorkerState`.

Owns: the connection to the scheduler, the listening socket peers and clients fetch data
from, the data store, fetches from peers, heartbeats, and the executor. Decisions about
tasks are the state machine's; this only carries them out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any

import psutil

from shoal.comm import Connection, connect, listen
from shoal.comm._tcp import TCPConnection
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    Close,
    Compute,
    Data,
    FreeKeys,
    GetData,
    Heartbeat,
    Hello,
    Message,
    Register,
    Response,
    Run,
    Store,
)
from shoal.protocol._serialize import FunctionTable, Serialized, dumps
from shoal.worker._execute import Executor, unpickle
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
    WorkerState,
)

logger = logging.getLogger("shoal.worker")

HEARTBEAT_INTERVAL = 1.0


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
        port: int = 0,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.name = name
        self.memory_limit = memory_limit
        self.host = host
        self.port = port
        self.data: dict[Any, Any] = {}
        self.scheduler_gone = False  # closed because the scheduler went away or said so
        self.functions = FunctionTable()
        self.address = ""
        self.state: WorkerState | None = None
        self._scheduler: Connection | None = None
        self._server: asyncio.base_events.Server | None = None
        self._executor: Executor | None = None
        self._peers: dict[str, TCPConnection] = {}
        self._peer_lock: dict[str, asyncio.Lock] = {}
        self._requests: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self._process = psutil.Process()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await listen(self.host, self.port, self._on_incoming)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"tcp://{self.host}:{port}"
        self.name = self.name or self.address
        self.state = WorkerState(self.address)
        self._executor = Executor(
            self.nthreads, self.data, self.functions, loop, self._on_executed, self.address
        )
        conn = await connect(self.scheduler_address)
        self._scheduler = conn
        conn.set_handler(self._on_scheduler)
        conn.send(Hello("worker", PROTOCOL_VERSION, self.name))
        conn.send(
            Register(self.address, self.name, self.nthreads, self.memory_limit, os.getpid(),
                     self.host)
        )
        self._spawn(self._heartbeat_loop())

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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.close()
        if self._scheduler is not None:
            self._scheduler.close()
        for conn in self._peers.values():
            conn.close()
        if self._server is not None:
            self._server.close()

    # --- scheduler messages -----------------------------------------------------------------

    def _on_scheduler(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            logger.info("worker %s: scheduler connection closed; shutting down", self.address)
            self.scheduler_gone = True
            asyncio.get_running_loop().create_task(self.close())
            return
        assert self.state is not None
        events: list[Any] = []
        for msg in batch:
            if isinstance(msg, Compute):
                if msg.functions:
                    self.functions.add_blobs(msg.functions)
                events.append(ComputeAssigned(msg))
            elif isinstance(msg, FreeKeys):
                events.append(KeysFreed(list(msg.keys)))
            elif isinstance(msg, Store):
                try:
                    self.data[msg.key] = unpickle(msg.data)
                except Exception:
                    logger.exception("could not unpickle scattered data %r", msg.key)
                    continue
                events.append(DataStored(msg.key, msg.nbytes))
            elif isinstance(msg, Run):
                self._spawn(self._run_function(msg))
            elif isinstance(msg, Close):
                logger.info("worker %s closing: %s", self.address, msg.reason)
                self.scheduler_gone = True
                asyncio.get_running_loop().create_task(self.close())
            elif isinstance(msg, Response):
                pass
            else:
                logger.warning("worker got an unexpected %s from the scheduler", msg.tag)
        if events:
            self._carry_out(self.state.handle(*events))

    def _on_executed(self, batch: list[ExecuteDone]) -> None:
        assert self.state is not None
        self._carry_out(self.state.handle(*batch))

    def _carry_out(self, commands: list[Any]) -> None:
        sched = self._scheduler
        executor = self._executor
        assert sched is not None and executor is not None
        for cmd in commands:
            kind = type(cmd)
            if kind is Report:
                sched.send(cmd.msg)
            elif kind is Execute:
                executor.submit(cmd)
            elif kind is Drop:
                for key in cmd.keys:
                    self.data.pop(key, None)
            elif kind is Fetch:
                self._spawn(self._fetch(cmd.peer, cmd.keys))

    async def _run_function(self, msg: Run) -> None:
        assert self._scheduler is not None
        try:
            fn = unpickle(msg.function)
            result = await asyncio.get_running_loop().run_in_executor(None, fn)
            value: Any = dumps(result)
            ok = True
        except Exception as exc:
            from shoal.protocol._errors import exception_to_error

            value, ok = exception_to_error(exc, exc.__traceback__, "run", self.address, time.time()), False
        self._scheduler.send(Response(msg.request_id, ok, value))

    async def _heartbeat_loop(self) -> None:
        assert self._scheduler is not None and self.state is not None
        self._process.cpu_percent()
        while not self._scheduler.closed:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                rss = self._process.memory_info().rss
                cpu = self._process.cpu_percent()
            except psutil.Error:
                rss, cpu = 0, 0.0
            executing = self._executor.executing if self._executor else 0
            self._scheduler.send(Heartbeat(rss, self.state.managed_bytes, cpu, executing))

    # --- data plane -----------------------------------------------------------------------------

    def _on_incoming(self, conn: TCPConnection) -> None:
        conn.set_handler(self._on_peer_message)

    def _on_peer_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            return
        for msg in batch:
            if isinstance(msg, GetData):
                items: dict[Any, Serialized] = {}
                missing = []
                errors: dict[Any, Any] = {}
                for key in msg.keys:
                    if key in self.data:
                        try:
                            items[key] = dumps(self.data[key])
                        except Exception as exc:
                            errors[key] = self._unsendable(key, exc)
                    else:
                        missing.append(key)
                conn.send(Data(msg.request_id, items, missing, errors))
            elif isinstance(msg, Data):
                fut = self._requests.pop(msg.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif isinstance(msg, Hello):
                pass
            else:
                logger.warning("closing peer connection: unexpected %s", msg.tag)
                conn.close()

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
            conn = await connect(address, timeout=10)
            conn.set_handler(self._on_peer_message)
            conn.send(Hello("peer", PROTOCOL_VERSION, self.address))
            self._peers[address] = conn
            return conn

    async def _fetch(self, peer: str, keys: list[Any]) -> None:
        assert self.state is not None
        start = time.time()
        try:
            conn = await self._peer(peer)
            rid = next(self._ids)
            fut: asyncio.Future[Data] = asyncio.get_running_loop().create_future()
            self._requests[rid] = fut
            conn.send(GetData(rid, keys))
            closed: asyncio.Future[Any] = asyncio.ensure_future(conn.wait_closed())
            try:
                pending: list[asyncio.Future[Any]] = [fut, closed]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            if not fut.done():
                self._requests.pop(rid, None)
                raise ConnectionError(f"connection to {peer} closed during a fetch")
            reply = fut.result()
            got: dict[Any, int] = {}
            from shoal.protocol._sizeof import nbytes

            for key, ser in reply.items.items():
                value = unpickle(ser)
                self.data[key] = value
                got[key] = nbytes(value)
            events: list[Any] = [
                FetchDone(peer, got, list(reply.missing), start, time.time(), dict(reply.errors))
            ]
        except (OSError, ConnectionError) as exc:
            logger.warning("worker %s could not fetch %d keys from %s: %s", self.address,
                           len(keys), peer, exc)
            events = [FetchFailed(peer, keys)]
        self._carry_out(self.state.handle(*events))
