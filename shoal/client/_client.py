"""The user's handle on a cluster: submit work, hold futures, fetch results.

Owns: making a Client (its fields; its own LocalCluster, an address or a cluster object;
credentials), the connection to the scheduler (in-process for a local cluster, TCP
otherwise) and what arrives on it, starting and closing (``await``/``async with`` when
asynchronous), and registering itself as dask's default scheduler. It is the facade:
``Client`` is assembled from mixins (``_submit``: submit, map, cancel, retry; ``_scatter``;
``_outbox``: the ordered outbox, requests and reference counts; ``_faces``: ``sync``), and
results, collections, cluster questions, datasets, debugging and reprs live in sibling
modules, written against ``_core.ClientCore`` and attached here as methods; none of them
imports this module.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import os
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import dask

from shoal import _gc, _loop
from shoal.client import (
    _amm,
    _benchmark,
    _cluster_info,
    _collections,
    _control,
    _coordination,
    _copies,
    _current,
    _datasets,
    _debug,
    _executor,
    _forward_logging,
    _introspection,
    _plugins,
    _profile,
    _reconnect,
    _reports,
    _repr,
    _results,
    _scheduler_names,
    _task_stream,
    _timeouts,
    _topics,
    _worker_callbacks,
)
from shoal.client import _fetch as _fetch_module
from shoal.client._core import ClientCore, orphan_keys
from shoal.client._faces import TwoFaces, answer, queued, two_faced
from shoal.client._future import Future, FutureState
from shoal.client._outbox import Outbox
from shoal.client._scatter import Scattering
from shoal.client._scheduler_names import install as _install_scheduler_names
from shoal.client._submit import Submitting
from shoal.comm import Connection
from shoal.protocol._coord_messages import CoordReply
from shoal.protocol._errors import ClosedClientError, request_failed
from shoal.protocol._messages import (
    ClusterRestarted,
    DropFunctions,
    KeyCancelled,
    KeyDone,
    KeyErred,
    KeysDone,
    Message,
    Response,
    TopicEvent,
)
from shoal.protocol._serialize import FunctionCache, Serialized

logger = logging.getLogger("shoal.client")
_install_scheduler_names()  # scheduler="distributed" means shoal's client (idempotent)


_NO_EXTENSIONS: dict[str, Any] = {}  # dask's default for Client(extensions=); never changed


class Client(Submitting, Scattering, TwoFaces, Outbox):
    """Connect to a shoal cluster, or start a local one.

    Args:
        address: ``"tcp://host:port"`` of a running scheduler, a ``LocalCluster`` or any
            cluster object with a ``scheduler_address``, or None: dask's
            ``scheduler-address`` config (``DASK_SCHEDULER_ADDRESS``) when set, else start
            a ``LocalCluster`` with the remaining keyword arguments (``n_workers``,
            ``threads_per_worker``, ``processes``, ``memory_limit``,
            ``dashboard_address``...).
        timeout: seconds (or a duration such as ``"10s"``) to keep trying to reach the
            scheduler (a scheduler not up yet is retried, as in dask), and to reconnect
            after losing it (status ``"connecting"``; every future is cancelled, and the
            client closes if it is not back in time); default
            ``distributed.comm.timeouts.connect``.
        set_as_default: make this client dask's scheduler (``dask.compute`` runs here).
        scheduler_file: a file written by ``shoal scheduler --scheduler-file`` (address and
            token), waited for up to ``timeout`` seconds; instead of ``address``.
        security: a :class:`shoal.Security` with TLS certificates and/or the token
            (default: dask's ``distributed.comm.tls.*`` config and ``SHOAL_TOKEN``).
        asynchronous: for use in a coroutine: ``await Client(..., asynchronous=True)`` (or
            ``async with``) starts it, and its operations return awaitables, which never
            block the awaiting event loop (any asyncio loop, uvloop too). Every method also
            takes ``asynchronous=`` for one call.
        name: part of the client's ``id``, as in dask: ``"Client-<name>-<uuid>"`` (default:
            dask's ``client-name`` config; without one, ``"Client-<uuid>"``). Each client's
            id is its own, so clients given one name work side by side.
        loop: accepted for dask's signature and ignored: operations run on shoal's own
            loop (``client.loop``), whichever loop awaits them.
        heartbeat_interval, serializers, deserializers, connection_limit: accepted for
            dask's signature (they hold dask's positional places) and ignored: shoal's
            client keeps one connection to the scheduler, which tells it when it is gone,
            and serializes with pickle (cloudpickle for functions).
        extensions: dask's; only its default (none) is accepted.

    Raises:
        OSError: nothing answered at ``address`` within ``timeout``; or the scheduler
            refused this client (the message says which credential is missing).
    """

    _timeout: float | None  # (ClientCore has it read-only: declared so __init__ may set it)

    def __init__(
        self,
        address: Any = None,
        loop: Any = None,
        timeout: Any = _timeouts.NO_DEFAULT,
        set_as_default: bool = True,
        scheduler_file: str | None = None,
        security: Any = None,
        asynchronous: bool = False,
        name: str | None = None,
        heartbeat_interval: Any = None,
        serializers: Any = None,
        deserializers: Any = None,
        extensions: Any = _NO_EXTENSIONS,
        direct_to_workers: bool | None = None,
        connection_limit: int = 512,
        **cluster_kwargs: Any,
    ) -> None:
        if extensions:
            raise TypeError(f"Client(extensions={extensions!r}) is not supported by shoal: its "
                            "client takes no extensions; leave it out")
        if timeout is None:  # dask refuses it too: every wait of a client has an end
            raise ValueError("Client(timeout=None): a client needs a timeout for connecting "
                             "and for its requests; pass seconds or a duration like '60s' "
                             "(the default is dask's distributed.comm.timeouts.connect)")
        timeout = _timeouts.seconds(timeout, "Client(timeout=)", _timeouts.connect_timeout())
        self._asynchronous = bool(asynchronous)
        self.status = "connecting"
        # Unique per client, as dask's: the scheduler keys its sessions by it, so two clients
        # given one name= must not share it.
        if name is None:
            name = dask.config.get("client-name", None)
        self.id = f"{type(self).__name__}-{f'{name}-' if name else ''}{uuid.uuid4()}"
        self._timeout = timeout
        self._lock = threading.Lock()
        self._states: dict[Any, FutureState] = {}
        # To the scheduler, in call order (see _send); deques so that neither _send nor a
        # Future's __del__ (which may run inside any code, even while a lock is held) locks.
        self._outbox: collections.deque[Message] = collections.deque()
        self._dead: collections.deque[Any] = collections.deque()
        self._drain_scheduled = False
        self._release_timer: asyncio.TimerHandle | None = None  # see _outbox.RELEASE_DELAY
        self._functions = FunctionCache()
        self._ftokens: dict[int, tuple[Any, str]] = {}
        self._call_pickles: dict[str, Any] = {}  # fid -> CallPickles (see _submit)
        self._sent_fids: set[str] = set()
        self._streams = itertools.count(1)  # graphs sent in pieces (_submit.GraphPieces)
        # The scheduler session's number, one more after each loss (``_reconnect.
        # forget_session``, under ``_lock``). A submission queues its rows only in the
        # session its futures were made in: after a loss they were cancelled with it.
        self._session = 0
        # The scheduler's name for this client's session (its welcome's ``client``): a
        # reconnect's Hello names it, so that the scheduler drops it at once even when its
        # connection still looks open there (a half-open link: shoal/client/_reconnect.py).
        self._session_name = ""
        self._generation = itertools.count()
        self._request_ids = itertools.count(1)
        self._requests: dict[int, asyncio.Future[Any]] = {}
        # Lock/Queue/Variable... requests waiting for their CoordReply (see _coordination).
        self._coord_pending: dict[int, tuple[concurrent.futures.Future[Any], Any, Any]] = {}
        self._worker_conns: dict[str, Connection] = {}
        self._conn: Connection | None = None
        # A TCP client reconnects when its connection drops (shoal/client/_reconnect.py):
        # where to, the outage under way, and why it gave up if it did.
        self._reconnects = False
        self._connect_address = ""
        self._outage: _reconnect.Outage | None = None
        self._closed_because: str | None = None
        self._last_connect_error = ""  # for the error when connecting times out
        self._owns_cluster = False
        self._previous_scheduler: Any = None
        self._is_default = False
        self._set_as_default = set_as_default
        self.cluster: Any = None
        self.scheduler_file: str | None = scheduler_file  # read, or written by this client
        # An asynchronous client's scheduler_info(): the latest copy (see _cluster_info).
        self._scheduler_identity: Any = _repr.SchedulerInfo({"workers": {}})
        self._identity_fetching = False
        self._identity_task: asyncio.Task[None] | None = None

        from shoal.cluster._local import LocalCluster
        from shoal.comm._security import Security

        if security is not None and not isinstance(security, Security):
            raise TypeError(f"security must be a shoal.Security, got {type(security).__name__}")
        if scheduler_file is not None:
            if address is not None:
                raise ValueError("give Client either an address or scheduler_file=, not both")
            from shoal.cluster._scheduler_file import read_scheduler_file, with_file_token

            info = read_scheduler_file(scheduler_file, timeout or 10.0)
            address = info["address"]
            security = with_file_token(info, security if security is not None else Security())
        if address is None and not cluster_kwargs:
            address = dask.config.get("scheduler-address", None) or None
        if security is not None and address is None:
            cluster_kwargs["security"] = security
        self.security = security if security is not None else Security()
        self._security_given = security is not None

        deployed: Any = None
        if address is None:
            pass
        elif isinstance(address, LocalCluster):
            if cluster_kwargs:
                raise TypeError(f"unexpected arguments with a cluster: {sorted(cluster_kwargs)}")
            self.cluster = address
        elif not isinstance(address, str) and hasattr(address, "scheduler_address"):
            if cluster_kwargs:
                raise TypeError(f"unexpected arguments with a cluster: {sorted(cluster_kwargs)}")
            self.cluster = address  # any cluster manager (dask's rule): talk to it over TCP
            address = address.scheduler_address
            if not isinstance(address, str):
                raise TypeError(f"the cluster's scheduler_address must be 'tcp://host:port', "
                                f"got {address!r}")
        elif isinstance(address, str):
            if cluster_kwargs:
                raise TypeError(
                    f"unexpected arguments {sorted(cluster_kwargs)} with a scheduler address; "
                    "cluster options only apply when the Client starts its own LocalCluster"
                )
        elif isinstance(getattr(address, "scheduler_address", None), str):
            # A cluster started elsewhere (SSHCluster): connect to its scheduler.
            if cluster_kwargs:
                raise TypeError(f"unexpected arguments with a cluster: {sorted(cluster_kwargs)}")
            deployed, address = address, address.scheduler_address
            if security is None and isinstance(getattr(deployed, "security", None), Security):
                self.security = deployed.security  # the cluster's credentials, as in dask
        else:
            raise TypeError(
                f"Client(address) takes 'tcp://host:port', a cluster object (with a "
                f"scheduler_address) or nothing; got {type(address).__name__}"
            )
        self._deployed = deployed  # a cluster-like object: self.cluster once connected
        # Blocking, or an awaitable that ``await client`` (or ``async with``) waits for.
        started = self.sync(self._start, address, cluster_kwargs)
        if asyncio.iscoroutine(started):  # made on shoal's loop itself: start it now, and
            started = asyncio.ensure_future(started)  # let it be awaited more than once
        self._started: Any = started if self.asynchronous else None  # (not self: no cycle)

    async def _start(self, address: Any, cluster_kwargs: dict[str, Any]) -> Client:
        """Start the own LocalCluster (a synchronous one off the loop, since it waits on
        the loop; an asynchronous one here), connect, and become the current (and
        perhaps dask's default) client."""
        from shoal.cluster._local import LocalCluster
        from shoal.comm._security import Security

        loop = asyncio.get_running_loop()
        try:
            if address is None and self.asynchronous:
                # As dask's: an asynchronous cluster (its start runs on this loop too).
                self.cluster = LocalCluster(**cluster_kwargs, asynchronous=True)
                self._owns_cluster = True
            elif address is None:
                self.cluster = await loop.run_in_executor(
                    None, functools.partial(LocalCluster, **cluster_kwargs))
                self._owns_cluster = True
            if isinstance(self.cluster, LocalCluster) and self.cluster.asynchronous:
                await self.cluster._until_started()  # (one given may still be starting)
            if isinstance(self.cluster, LocalCluster) and not self._security_given:
                # Results and actor calls go straight to its workers: the same credentials.
                self.security = self.cluster.scheduler.security
            elif self.cluster is not None and not self._security_given:
                given = getattr(self.cluster, "security", None)  # any cluster manager's
                if isinstance(given, Security):
                    self.security = given
            connecting = (self._connect_local() if isinstance(self.cluster, LocalCluster)
                          else self._connect_tcp(address))
            try:
                await asyncio.wait_for(connecting, self._timeout)
            except TimeoutError:
                last = self._last_connect_error
                raise OSError(f"timed out after {self._timeout} s connecting to the scheduler "
                              f"at {address}" + (f" (last attempt: {last})" if last else "")
                              ) from None
        except BaseException:
            self.status = "closed"
            if self._owns_cluster and self.cluster is not None:
                await _close_cluster(self.cluster)
            raise
        self.status = "running"
        if self._asynchronous:  # its scheduler_info() answers at once from this copy
            try:
                self._scheduler_identity = await _cluster_info.scheduler_info(self, n_workers=0)
            except Exception as exc:  # the next scheduler_info() call fetches it again
                logger.warning("Client %s: no scheduler_info copy yet: %r", self.id, exc)
        if self._deployed is not None:
            self.cluster = self._deployed
        # The GC policy (shoal/_gc.py) while this client is open; futures count as held.
        gc_loop = asyncio.get_running_loop()
        _gc.keeper().acquire(gc_loop)
        _gc.keeper().watch(self, "_states")
        self._gc_release = weakref.finalize(self, _gc.keeper().release, gc_loop)
        _current.clients.append(weakref.ref(self))
        if self._set_as_default:
            # As dask.distributed's Client: the config names the distributed scheduler,
            # which shoal routes to its current client (client/_scheduler_names.py).
            earlier = _current.newest_client(defaults_only=True, but=self)
            self._previous_scheduler = _scheduler_names.value_before(
                self, dask.config.get("scheduler", None), earlier)
            self._is_default = True
            dask.config.set({"scheduler": _scheduler_names.DEFAULT,
                             "dataframe.shuffle.method": "tasks"})
        return self

    async def _connect_local(self) -> None:
        sched = self.cluster.scheduler
        conn = sched.connect_local_client(self.id)
        self._conn = conn
        conn.set_handler(self._on_message)
        self.scheduler_address = sched.address

    async def _connect_tcp(self, address: str) -> None:
        conn = await _reconnect.connect_retrying(self, address)
        info = await _reconnect.open_session(self, conn, self._timeout or 30.0)
        self._conn = conn
        self._connect_address = address  # (the address given: a relay's, if it is one)
        self._reconnects = True
        self.scheduler_address = info["address"]
        from shoal._versions import warn_on_mismatch

        warn_on_mismatch(info.get("packages"))

    # --- incoming ---------------------------------------------------------------------------

    def _on_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            if conn is self._conn:  # (not an attempt of a reconnect that closed at once)
                self._on_lost_connection()
            return
        states = self._states
        for msg in batch:
            kind = type(msg)
            if kind is KeysDone:  # several results as columns
                _reports.finished_many(states, msg)
            elif kind is KeyDone:
                st = states.get(msg.key)  # type: ignore[attr-defined]
                if st is not None:
                    _reports.finished(st, msg.nbytes, msg.typename, msg.inline,  # type: ignore[attr-defined]
                                      msg.pickled_type)  # type: ignore[attr-defined]
            elif kind is KeyErred:
                st = states.get(msg.key)  # type: ignore[attr-defined]
                if st is not None:
                    st.error = dict(msg.error)  # type: ignore[attr-defined]
                    st.settle("error")
            elif kind is KeyCancelled:
                st = states.get(msg.key)  # type: ignore[attr-defined]
                if st is not None:
                    self._forget_state(msg.key, st)  # type: ignore[attr-defined]
                    # (the scheduler's reason reaches the FutureCancelledError's message)
                    st.error = {"kind": "cancelled", "type": "CancelledError",
                                "message": msg.reason,  # type: ignore[attr-defined]
                                "exception": None, "traceback": None, "tb_text": ""}
                    st.settle("cancelled")
            elif kind is DropFunctions:
                with self._lock:  # the scheduler forgot them: send them again when used
                    self._sent_fids.difference_update(msg.fids)  # type: ignore[attr-defined]
            elif kind is Response:
                fut = self._requests.pop(msg.request_id, None)  # type: ignore[attr-defined]
                if fut is not None and not fut.done():
                    if msg.ok:  # type: ignore[attr-defined]
                        fut.set_result(msg.value)  # type: ignore[attr-defined]
                    else:
                        fut.set_exception(request_failed(msg.value))  # type: ignore[attr-defined]
            elif kind is CoordReply:
                _coordination.on_reply(self, msg)  # type: ignore[arg-type]
            elif kind is TopicEvent:
                _topics.on_event(self, msg)  # type: ignore[arg-type]
            elif kind is ClusterRestarted:
                _control.on_restarted(self, msg.reason)  # type: ignore[attr-defined]

    def _on_lost_connection(self) -> None:
        if self.status in ("closing", "closed"):
            return
        if (self._reconnects and self.status == "running"
                and getattr(self.cluster, "status", None) not in ("closing", "closed")):
            _reconnect.lost(self)  # as dask's: cancel every future, reconnect until timeout
            return
        _reconnect.closed_for_good(self)  # an in-process client (its cluster closed)

    # --- open or not ----------------------------------------------------------------------------

    def _usable(self) -> bool:
        """Open: running, or reconnecting (calls wait for the new session)."""
        return self.status == "running" or (self.status == "connecting"
                                            and self._outage is not None)

    def _closed_text(self) -> str:
        if self._closed_because is not None:
            return (f"this Client is closed: {self._closed_because}; create a new Client() "
                    "once the scheduler is reachable")
        return f"this Client is {self.status}; create a new Client() to submit more work"

    def _check_open(self) -> None:
        if self.status == "connecting" and self._outage is not None:
            return  # reconnecting: submissions wait in the outbox, requests for the session
        if self.status == "connecting" and self.asynchronous:
            raise RuntimeError("this asynchronous Client is still connecting: `await` it (or "
                               "use `async with Client(..., asynchronous=True)`) first")
        if self.status in ("closing", "closed"):
            raise ClosedClientError(self._closed_text())
        if self.status != "running":
            raise RuntimeError(
                f"this Client is {self.status}; create a new Client() to submit more work"
            )

    # --- results -------------------------------------------------------------------------------

    _wait_one = _results.wait_one
    _result = _results.result
    _failure = _results.failure
    _failure_of = staticmethod(_results.failure_of)
    _exception_of = staticmethod(_results.exception_of)
    _add_callback = _results.add_callback
    gather = _results.gather
    _gather = _results.gather_async

    # --- questions about the cluster, collections, debugging (sibling modules) -----------------

    _fetch = _fetch_module.fetch
    _fetch_async = _fetch_module.fetch_async
    run = two_faced(_cluster_info.run)

    def scheduler_info(self, n_workers: int = -1, asynchronous: bool | None = None,
                       **kwargs: Any) -> Any:
        """dask's ``scheduler_info()``: the scheduler (``type``, ``id``, ``address``,
        ``services``, ``started``, ``n_workers``, ``total_threads``, ``total_memory``) and,
        under ``workers``, each worker's details (``nthreads``, ``memory_limit``, ``name``,
        ``host``, ``metrics``, ``pid``...); only the first ``n_workers`` of them unless -1.

        As dask's, an asynchronous client's returns at once (nothing to await) its most
        recent copy, with the totals and no workers; each call fetches a fresh one for the
        next. ``asynchronous=True`` given to the call returns an awaitable of the full
        answer instead (dask: ``await client.scheduler.identity(n_workers=-1)``).
        """
        if asynchronous is None and self.asynchronous:
            return _cluster_info.cached_scheduler_info(self)
        return self.sync(_cluster_info.scheduler_info, self, n_workers,
                         asynchronous=asynchronous, **kwargs)
    restart = _control.restart
    _restart = _control._restart
    restart_workers = _control.restart_workers
    _restart_workers = _control._restart_workers
    retire_workers = _control.retire_workers
    _retire_workers = _control._retire_workers
    nthreads = two_faced(_cluster_info.nthreads)
    ncores = nthreads
    who_has = two_faced(_cluster_info.who_has)
    has_what = two_faced(_cluster_info.has_what)
    wait_for_workers = two_faced(_cluster_info.wait_for_workers)
    _task_stream_since = two_faced(_cluster_info.task_stream_since)
    story = two_faced(_cluster_info.story)
    dashboard_link = property(_cluster_info.dashboard_link)
    futures = property(_cluster_info.futures)
    scheduler = property(_cluster_info.scheduler)
    get = _collections.get
    compute = _collections.compute
    persist = _collections.persist
    recreate_error_locally = _debug.recreate_error_locally
    explain = two_faced(_debug.explain)
    log_event = queued(_topics.log_event)
    get_events = two_faced(_topics.get_events)
    subscribe_topic = queued(_topics.subscribe_topic)
    unsubscribe_topic = queued(_topics.unsubscribe_topic)
    publish_dataset = two_faced(_datasets.publish_dataset)
    unpublish_dataset = two_faced(_datasets.unpublish_dataset)
    get_dataset = two_faced(_datasets.get_dataset)
    list_datasets = two_faced(_datasets.list_datasets)
    datasets = property(_datasets.Datasets)
    amm = property(_amm.AMMClientProxy)  # client.amm.start() / stop() / running() / run_once()
    run_on_scheduler = two_faced(_cluster_info.run_on_scheduler)
    register_plugin = _plugins.register_plugin
    unregister_worker_plugin = _plugins.unregister_worker_plugin
    unregister_scheduler_plugin = _plugins.unregister_scheduler_plugin
    upload_file = _plugins.upload_file
    get_task_stream = _task_stream.get_task_stream_method
    replicate = _copies.replicate
    rebalance = _copies.rebalance
    __repr__ = _repr.client_repr
    _repr_html_ = _repr.client_repr_html
    processing = two_faced(_introspection.processing)
    nbytes = two_faced(_introspection.nbytes)
    call_stack = two_faced(_introspection.call_stack)
    profile = two_faced(_profile.profile)
    get_versions = two_faced(_introspection.get_versions)
    set_metadata = two_faced(_introspection.set_metadata)
    get_metadata = two_faced(_introspection.get_metadata)
    get_scheduler_logs = two_faced(_introspection.get_scheduler_logs)
    get_worker_logs = two_faced(_introspection.get_worker_logs)
    dump_cluster_state = two_faced(_introspection.dump_cluster_state)
    benchmark_hardware = two_faced(_benchmark.benchmark_hardware)
    normalize_collection = _collections.normalize_collection
    forward_logging = _forward_logging.forward_logging
    unforward_logging = _forward_logging.unforward_logging
    register_worker_callbacks = _worker_callbacks.register_worker_callbacks

    @property
    def asynchronous(self) -> bool:
        """Whether operations return awaitables (``Client(asynchronous=True)``) rather
        than block."""
        return self._asynchronous

    @asynchronous.setter
    def asynchronous(self, value: bool) -> None:
        self._asynchronous = bool(value)

    def futures_of(self, futures: Any) -> list[Future]:
        """The futures of this client found in ``futures`` (futures, nested structures or
        persisted collections).

        Raises:
            concurrent.futures.CancelledError: one of them was cancelled (as dask's).
        """
        from shoal.client._structure import futures_of

        return [f for f in futures_of(futures, client=self) if f.client is self]

    def get_executor(self, **kwargs: Any) -> concurrent.futures.Executor:
        """A ``concurrent.futures.Executor`` running its calls on this cluster; ``kwargs``
        (``pure``, ``workers``, ``resources``, ``allow_other_workers``, ``retries``) go to
        every ``submit``.

        Raises:
            TypeError: another keyword argument.
        """
        return _executor.ClientExecutor(self, **kwargs)

    @contextlib.contextmanager
    def as_current(self) -> Any:
        """``with client.as_current():`` makes this client the one ``get_client()``,
        ``default_client()`` and ``Client.current()`` return inside the block (in this
        thread or task)."""
        token = _current.as_current.set((*_current.as_current.get(), self))
        try:
            yield self
        finally:
            _current.as_current.reset(token)

    def start(self, **kwargs: Any) -> Any:
        """Start the client (dask's name). A Client starts when it is made, so this only
        checks it: an awaitable for an asynchronous client, as dask's.

        Raises:
            ClosedClientError: the client was closed; make a new one.
        """
        if self.status in ("closing", "closed"):
            raise ClosedClientError(f"this Client is {self.status}; create a new Client()")
        return answer(self, None)

    def write_scheduler_file(self, scheduler_file: str) -> None:
        """Write the scheduler's address (and this client's token, if any) to
        ``scheduler_file`` as dask's JSON scheduler file, for ``Client(scheduler_file=...)``
        or ``shoal worker --scheduler-file`` elsewhere. Readable by its owner only.

        Raises:
            TypeError: ``scheduler_file`` is not a path.
            ValueError: this client already has another scheduler file.
        """
        from shoal.cluster._scheduler_file import write_scheduler_file

        if not isinstance(scheduler_file, (str, os.PathLike)):
            raise TypeError(f"scheduler_file must be a path, got {scheduler_file!r}")
        path = os.fspath(scheduler_file)
        written = getattr(self, "scheduler_file", None)
        if written is not None and written != path:
            raise ValueError(f"this client's scheduler file is already {written} (read or "
                             "written before); write_scheduler_file takes that path only")
        self._check_open()
        info = self.scheduler_info(asynchronous=False)
        info = {k: v for k, v in info.items() if k != "workers"}
        info.setdefault("type", "Scheduler")
        info["workers"] = {}
        write_scheduler_file(path, info, self.security.token)
        self.scheduler_file = path

    # --- closing --------------------------------------------------------------------------------

    def close(self, timeout: Any = None) -> Any:
        """Release everything this client holds; close its own LocalCluster if it made one.
        An awaitable when asynchronous (``await client.close()``)."""
        if self.status in ("closing", "closed"):
            return answer(self, None)
        self.status = "closing"
        if self._is_default:
            self._step_down_as_default()
        if self.asynchronous:
            return self.sync(self._close, callback_timeout=timeout)
        try:
            _loop.run_sync(self._close(with_cluster=False), 10)
        except (RuntimeError, TimeoutError) as exc:  # on the loop thread, or the loop is gone
            logger.debug("closing %s without the loop: %s", self.id, exc)
            self._mark_closed()
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close()  # here, in the caller's thread: it has its own deadline
        return None

    async def _close(self, with_cluster: bool = True) -> None:
        outage = self._outage  # (closing ends it: its reconnect task is awaited here)
        self._close_now()
        if outage is not None:
            await _reconnect.stopped(outage)
        if with_cluster and self._owns_cluster and self.cluster is not None:
            await _close_cluster(self.cluster)

    def _close_now(self, cancelled: str | None = None) -> None:
        """On the loop: close the connections and mark the client closed. With
        ``cancelled`` (a client giving up reconnecting), every future is cancelled with that
        message and forgotten, so the client holds no key any more."""
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self._conn is not None:
            self._conn.close()
        for c in self._worker_conns.values():
            c.close()
        if cancelled is not None:
            orphan_keys(self._held_keys())
            _reconnect.cancel(_reconnect.forget_session(self, closing=True), cancelled)
        self._mark_closed()

    def _mark_closed(self) -> None:
        """Closed: note the keys it held, and cancel every future, finished ones included,
        as dask's (so result() raises CancelledError, saying why). Whatever waits for an
        answer or for a reconnection fails now, not at its deadline."""
        self.status = "closed"
        self._release_gc()
        closed = ClosedClientError(self._closed_text())
        _coordination.fail_pending(self, "the client was closed while waiting")
        if _loop.in_loop_thread():  # (else the loop is busy or gone: there, soon)
            _reconnect.end(self, closed)
            _reconnect.fail_requests(self, closed)
        else:
            with contextlib.suppress(RuntimeError):
                _loop.call_soon(_reconnect.end, self, closed)
                _loop.call_soon(_reconnect.fail_requests, self, closed)
        self._outbox.clear()
        orphan_keys(self._held_keys())
        with self._lock:  # (a submission that raced the close drops its states under it)
            states = list(self._states.values())
        for st in states:
            if st.status == "cancelled":
                continue
            # Finished ones too, as dask's: their values live on workers this client no
            # longer reaches (a large result() would wait for a fetch that cannot happen).
            message = ("the client was closed before this future finished"
                       if st.status == "pending" else "the client was closed")
            st.error = {"kind": "cancelled", "type": "CancelledError", "message": message,
                        "exception": None, "traceback": None, "tb_text": ""}
            st.inline = None
            st.settle("cancelled")

    def _release_gc(self) -> None:
        """Hand the GC policy back (once; also when the client is garbage-collected)."""
        release = getattr(self, "_gc_release", None)
        if release is not None:
            release()

    def _step_down_as_default(self) -> None:
        """Once no shoal client is open, set dask's default scheduler back to what it was
        before the first of them (clients may close in any order; while one is open,
        ``"dask.distributed"`` goes to the newest, see ``_scheduler_names``)."""
        self._is_default = False
        if dask.config.get("scheduler", None) != _scheduler_names.DEFAULT:
            return  # the user chose another since
        try:
            _current.get_client()
            return  # dask.compute goes to the one still open
        except ValueError:
            dask.config.set({"scheduler": self._previous_scheduler})

    def shutdown(self) -> Any:
        """Close the client and the cluster it is connected to (awaitable when
        asynchronous)."""
        cluster = self.cluster
        closing = self.close()
        if self.asynchronous:
            return _shutdown_async(closing, cluster)
        if cluster is not None:
            cluster.close()
        return None

    def __enter__(self) -> Client:
        if self.asynchronous:
            raise RuntimeError("an asynchronous Client is used with `async with`, not `with`")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __await__(self) -> Any:
        """``await Client(..., asynchronous=True)``: the client, once connected."""
        started = self._started

        async def ready() -> Client:
            if self.asynchronous and started is not None:
                await started
            return self

        return ready().__await__()

    async def __aenter__(self) -> Client:
        return await self

    async def __aexit__(self, *exc: Any) -> None:
        closing = self.close()
        if closing is not None:  # None: a synchronous client, closed already
            await closing

    def __del__(self) -> None:
        if (getattr(self, "status", "closed") == "running" and getattr(self, "_owns_cluster", False)
                and not getattr(self, "asynchronous", True)):
            try:
                self.close()
            except Exception:  # garbage collection must not raise; the leak is said
                logger.warning("could not close client %s (and its cluster) when it was "
                               "garbage-collected; close clients explicitly", self.id,
                               exc_info=True)

    @classmethod
    def current(cls, allow_global: bool = True) -> Client:
        """The worker's client inside a task, else the newest open client (dask's
        ``Client.current``).

        Raises:
            ValueError: no client is open.
        """
        from shoal.client._worker_client import get_client as current_client

        return current_client()


if TYPE_CHECKING:
    def _is_a_client_core(client: Client) -> ClientCore:
        return client  # mypy checks here that the facade gives its helpers what they use


async def _shutdown_async(closing: Any, cluster: Any) -> None:
    await closing
    if cluster is None:
        return
    if getattr(cluster, "asynchronous", False):
        done = cluster.close()
        if done is not None:
            await done
    else:  # closing it waits on shoal's loop: from a thread
        await asyncio.get_running_loop().run_in_executor(None, cluster.close)


async def _close_cluster(cluster: Any) -> None:
    """Close a client's own cluster from shoal's loop: an asynchronous one right here, a
    synchronous one (whose close waits on this loop) from a thread."""
    from shoal.cluster._local import LocalCluster

    if isinstance(cluster, LocalCluster) and cluster.asynchronous:
        await cluster._close_async()
    else:
        await asyncio.get_running_loop().run_in_executor(None, cluster.close)


__all__ = ["Client", "Future", "Serialized"]
