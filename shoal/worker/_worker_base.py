"""What every part of the worker shell shares: its configuration and the state of its
current scheduler session.

``Worker`` (``_server.py``) is put together from parts, one concept each, each a class
deriving from :class:`WorkerBase`: the scheduler session (``_session.py``), serving data to
peers and clients (``_serving.py``), fetching from peers (``_fetching.py``), the memory
limit (``_memory_monitor.py``) and ``client.run`` (``_client_run.py``). The attributes are
all made here, in the one constructor; the methods one part calls on another are declared
here too, for the type checker only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import os
import sys
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import psutil

from shoal import _logs
from shoal.comm import Connection
from shoal.comm._security import Security
from shoal.comm._tcp import TCPConnection, comm_timeout
from shoal.protocol._messages import Message
from shoal.protocol._pieces import MESSAGE_BYTES_LIMIT
from shoal.protocol._serialize import FunctionTable
from shoal.worker._actors import ActorHost
from shoal.worker._execute import Executor
from shoal.worker._introspect import STORY_LENGTH_UNREAD
from shoal.worker._name import check_count, check_worker_name
from shoal.worker._plugins import WorkerPlugins
from shoal.worker._resources import check_resources
from shoal.worker._spill import SpillBuffer
from shoal.worker._state import Fetch, WorkerState


class WorkerBase:
    """The worker's attributes and configuration; constructed as ``Worker(...)``."""

    def __init__(
        self,
        scheduler_address: str,
        *,
        nthreads: int = 1,
        name: Any = None,
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
        lifetime: float | None = None,
    ) -> None:
        """``death_timeout``: seconds to keep trying to (re)register with the scheduler
        before giving up (dask's ``death_timeout``; None: forever). ``connect_timeout``:
        bound of one connection attempt (dask's ``distributed.comm.timeouts.connect``).
        ``memory_limit``: bytes (0: none); under a limit, values spill to files in the
        worker's :attr:`local_directory` (made under ``local_directory``, else dask's
        ``temporary-directory`` config, else the system's temp directory, as uploads are)
        and the worker pauses, as the ``memory_*_fraction`` of the limit say
        (None: dask's ``distributed.worker.memory.target/spill/pause`` config; False: off);
        fetched values in flight stay under ``memory_transfer_fraction`` of it.
        ``security``: certificates and token (default: dask's config and ``SHOAL_TOKEN``);
        the worker's data port speaks the scheduler address's protocol (tcp or tls).
        ``resources``: abstract resources tasks may claim here (``{"GPU": 1}``; None: dask's
        config ``distributed.worker.resources``). ``lifetime``: seconds after registering
        at which the worker retires gracefully (dask's ``--lifetime``; None: never; its
        nanny staggers it and reads dask's config)."""
        self.scheduler_address = scheduler_address
        self.nthreads = check_count(nthreads, "nthreads")
        self.name = check_worker_name(name)
        self.memory_limit = check_count(memory_limit, "memory_limit")
        self.host = host
        # What to bind: ``port`` may be a range "9000:9010"; a wildcard ``host`` advertises
        # the address that routes to the scheduler. ``contact_address`` is advertised
        # instead, as behind NAT (dask's --contact-address); see comm/_addresses.py.
        self._port_spec = port  # (``port``: the port it listens on, once it does)
        self._contact_spec = contact_address  # (``contact_address``: its address)
        self.contact_host = host  # the host part of the advertised address, once started
        self.death_timeout = death_timeout
        self.connect_timeout = connect_timeout
        self._spill_parent = local_directory  # local_directory (spill files too) is made here
        self._memory_fractions: tuple[Any, ...] = (
            memory_target_fraction, memory_spill_fraction, memory_pause_fraction,
            memory_transfer_fraction)
        # dask's distributed.worker.memory.spill-compression, as the nanny passed it
        # ("<config>": read the config when the data store is made).
        self._spill_compression_setting: Any = "<config>"
        # dask's distributed.worker.memory.max-spill, as the nanny passed it (same rule)
        self._max_spill_setting: Any = "<config>"
        # seconds between memory samples (None: dask's monitor-interval config, read at start)
        self._monitor_interval: float | None = None
        # the TLS SNI to send the scheduler (dask's scheduler_sni; None: its host's name)
        self.scheduler_sni: str | None = None
        self.data: MutableMapping[Any, Any] = {}
        self.paused = False  # memory past the pause threshold: no new tasks nor fetches
        self._deferred_fetches: list[Fetch] = []
        self._disk_sends: asyncio.Semaphore | None = None
        self._transfer_budget = 0  # bytes of fetched values in flight at once (0: no bound)
        self._in_flight_bytes = 0
        self._transfer_room: asyncio.Condition | None = None
        # Per peer, the keys waiting for the request under way to end (``_queue_fetch``).
        self._fetch_queues: dict[str, tuple[deque[Any], dict[Any, int]]] = {}
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
        # Connections made to this worker (peers' fetches, clients' actor calls), closed
        # with it: asyncio's Server.close() leaves them open, and with an in-process
        # worker (processes=False) nothing else would close them.
        self._incoming: set[TCPConnection] = set()
        self._peer_lock: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()  # set when closing begins
        self._closing: asyncio.Future[None] | None = None  # the one close, run as its own task
        self._leaving = False  # told to close: a connection drop now is no reason to reconnect
        self._session = 0  # which scheduler session the state, data and executor belong to
        self._registered: asyncio.Future[str | None] | None = None
        self.register_problem: str | None = None  # why the last attempt to register failed
        self._reconnecting: asyncio.Task[None] | None = None
        self._process = psutil.Process()
        self.incarnation = os.urandom(16).hex()  # proves a reconnect is this worker's
        self._client: Any = None  # the worker's own Client (get_client() in tasks), lazily
        # What get_worker() returns in its tasks: the public shoal.Worker started by hand
        # that runs this shell (cluster/_servers.py), else (None) the shell itself.
        self.face: Any = None
        self._profiler: Any = None  # _profiling.WorkerProfiler, once started
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
        # Why this worker closes as if it had crashed (``close_as_crash``): no goodbye, so
        # the scheduler counts the close against the tasks it was running. None: on purpose.
        self.crash_reason: str | None = None
        # A task's SystemExit/KeyboardInterrupt ends the process (set by ``python -m
        # shoal.worker`` under a nanny, as in dask); else (in-process) it is the task's error.
        self.task_exit_ends_process = False
        # Called on the loop when the scheduler accepts a registration, before any task of the
        # answer's batch reaches the executor (``python -m shoal.worker`` starts its background
        # import of dask there: unpickling then waits for it).
        self.on_registered: Callable[[], None] | None = None
        self._serializer: concurrent.futures.ThreadPoolExecutor | None = None
        _logs.ring("shoal.worker")  # recent records, for client.get_worker_logs()
        self.plugin_host = WorkerPlugins(self)  # plugins and uploads; they outlive sessions
        self.restart_requested = False  # a nanny plugin asked for a fresh process
        self.lifetime = lifetime
        self.lifetime_ended = False  # retired because its lifetime was over (_lifetime.py)
        # Called as its lifetime ends, before it retires: ``python -m shoal.worker`` under a
        # nanny declares it there, so that a process killed while retiring is still the
        # lifetime's end to the nanny (restarted with lifetime_restart).
        self.on_lifetime_over: Callable[[], object] | None = None
        self._lifetime_task: asyncio.Task[None] | None = None
        # dask_setup/dask_teardown modules (``--preload``), run around start and close.
        self.preloads: Any = None
        # Story rows the state keeps (distributed.admin.low-level-log-length), once read.
        self.story_length: Any = STORY_LENGTH_UNREAD

    @property
    def plugins(self) -> dict[str, Any]:
        """The worker plugins set up here, by name (dask's ``Worker.plugins``)."""
        return self.plugin_host.plugins

    @property
    def local_directory(self) -> str:
        """This worker's own directory, on ``sys.path``: uploaded files and spill files land
        here (dask's ``Worker.local_directory``)."""
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

    if TYPE_CHECKING:
        # Defined by Worker and its parts, which call them on one another: declared here,
        # for the type checker only, so that each part is checked on its own.
        def _spawn(self, coro: Any) -> None: ...

        async def close(self) -> None: ...

        def _new_session(self, loop: asyncio.AbstractEventLoop) -> None: ...

        def _on_scheduler(self, conn: Connection, batch: list[Message] | None) -> None: ...

        def _carry_out(self, commands: list[Any]) -> None: ...

        def _on_peer_message(self, conn: Connection, batch: list[Message] | None) -> None: ...

        def _serializing_pool(self) -> concurrent.futures.ThreadPoolExecutor: ...

        def _queue_fetch(self, cmd: Fetch) -> None: ...

        async def _memory_monitor(self, store: SpillBuffer) -> None: ...


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
