"""The user's handle on a cluster: submit work, hold futures, fetch results.

Owns: the connection to the scheduler (in-process for a local cluster, TCP otherwise),
turning calls into task rows, key naming (``pure=True`` hashing like dask), reference
counts of futures, starting and closing (``await``/``async with`` when asynchronous),
``Client.sync`` (each operation's two faces: blocking, or awaitable), and registering
itself as dask's default scheduler. It is the facade: results, collections, cluster
questions, datasets, debugging and reprs live in sibling modules, written against
``_core.ClientCore`` and attached here as methods; none of them imports this module.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import threading
import types
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import dask
from dask._task_spec import Task, parse_input
from dask.base import tokenize
from dask.utils import funcname

from shoal import _loop
from shoal.client import (
    _cluster_info,
    _collections,
    _control,
    _coordination,
    _copies,
    _datasets,
    _debug,
    _plugins,
    _repr,
    _results,
    _task_stream,
    _timeouts,
    _topics,
)
from shoal.client import _fetch as _fetch_module
from shoal.client._actor import NewActor
from shoal.client._core import ClientCore, orphan_keys
from shoal.client._faces import answer, as_coroutine, queued, two_faced
from shoal.client._future import Future, FutureState, settled
from shoal.client._structure import collect_futures
from shoal.comm import Connection, connect
from shoal.protocol._call import Call
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    CancelKeys,
    ClusterRestarted,
    CoordReply,
    DropFunctions,
    Hello,
    KeyCancelled,
    KeyDone,
    KeyErred,
    Message,
    ReleaseKeys,
    Request,
    Response,
    RetryKeys,
    Scatter,
    TopicEvent,
    UpdateGraph,
)
from shoal.protocol._serialize import FunctionCache, Serialized, dumps, dumps_task

logger = logging.getLogger("shoal.client")

_current: list[weakref.ReferenceType[Client]] = []
# Callables whose token can be cached by identity: they cannot change in place.
_STABLE_CALLABLES = (types.BuiltinFunctionType, types.MethodDescriptorType, type)


def _tune_gc() -> None:
    """Collect young objects less often than CPython's default (every 700 allocations):
    tracking thousands of futures otherwise spends a third of the time in the collector.
    Left alone if the user already changed the threshold."""
    import gc

    threshold = gc.get_threshold()
    if threshold[0] == 700:
        gc.set_threshold(20_000, threshold[1], threshold[2])


def get_client() -> Client:
    """The most recently created open Client in this process.

    Raises:
        ValueError: no client is open; create one with ``Client()``.
    """
    for ref in reversed(_current):
        client = ref()
        if client is not None and client.status == "running":
            return client
    raise ValueError("No shoal Client found; start one with shoal.Client()")


def default_client(c: Client | None = None) -> Client:
    """``c`` if given, else the most recently created open Client (dask's name).

    Raises:
        ValueError: no client is open; create one with ``Client()``.
    """
    return c if c is not None else get_client()


class Client:
    """Connect to a shoal cluster, or start a local one.

    Args:
        address: ``"tcp://host:port"`` of a running scheduler, a ``LocalCluster`` or any
            cluster object with a ``scheduler_address``, or None: dask's
            ``scheduler-address`` config (``DASK_SCHEDULER_ADDRESS``) when set, else start
            a ``LocalCluster`` with the remaining keyword arguments (``n_workers``,
            ``threads_per_worker``, ``processes``, ``memory_limit``,
            ``dashboard_address``...).
        timeout: seconds to keep trying to reach the scheduler (a scheduler not up yet
            is retried, as in dask); default ``distributed.comm.timeouts.connect``.
        set_as_default: make this client dask's scheduler (``dask.compute`` runs here).
        scheduler_file: a file written by ``shoal scheduler --scheduler-file`` (address and
            token), waited for up to ``timeout`` seconds; instead of ``address``.
        security: a :class:`shoal.Security` with TLS certificates and/or the token
            (default: dask's ``distributed.comm.tls.*`` config and ``SHOAL_TOKEN``).
        asynchronous: for use in a coroutine: ``await Client(..., asynchronous=True)`` (or
            ``async with``) starts it, and its operations return awaitables, which never
            block the awaiting event loop (any asyncio loop, uvloop too). Every method also
            takes ``asynchronous=`` for one call.
        loop: accepted for dask's signature and ignored: operations run on shoal's own
            loop (``client.loop``), whichever loop awaits them.

    Raises:
        OSError: nothing answered at ``address`` within ``timeout``; or the scheduler
            refused this client (the message says which credential is missing).
    """

    def __init__(
        self,
        address: Any = None,
        loop: Any = None,
        *,
        timeout: Any = _timeouts.NO_DEFAULT,
        set_as_default: bool = True,
        asynchronous: bool = False,
        name: str | None = None,
        direct_to_workers: bool | None = None,
        scheduler_file: str | None = None,
        security: Any = None,
        **cluster_kwargs: Any,
    ) -> None:
        if timeout is _timeouts.NO_DEFAULT:
            timeout = _timeouts.connect_timeout()
        elif timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.asynchronous = bool(asynchronous)
        self.status = "connecting"
        self.id = name or f"Client-{uuid.uuid4().hex[:8]}"
        self._timeout = timeout
        self._lock = threading.Lock()
        self._states: dict[Any, FutureState] = {}
        self._refcount: dict[Any, int] = {}
        # To the scheduler, in call order (see _send); deques so that neither _send nor a
        # Future's __del__ (which may run inside any code, even while a lock is held) locks.
        self._outbox: collections.deque[Message] = collections.deque()
        self._dead: collections.deque[Any] = collections.deque()
        self._drain_scheduled = False
        self._functions = FunctionCache()
        self._ftokens: dict[int, tuple[Any, str]] = {}
        self._sent_fids: set[str] = set()
        self._generation = itertools.count()
        self._request_ids = itertools.count(1)
        self._requests: dict[int, asyncio.Future[Any]] = {}
        # Lock/Queue/Variable... requests waiting for their CoordReply (see _coordination).
        self._coord_pending: dict[int, tuple[concurrent.futures.Future[Any], Any]] = {}
        self._worker_conns: dict[str, Connection] = {}
        self._conn: Connection | None = None
        self._last_connect_error = ""  # for the error when connecting times out
        self._owns_cluster = False
        self._previous_scheduler: Any = None
        self._is_default = False
        self._set_as_default = set_as_default
        self.cluster: Any = None

        from shoal.cluster._local import LocalCluster
        from shoal.comm._security import Security

        if security is not None and not isinstance(security, Security):
            raise TypeError(f"security must be a shoal.Security, got {type(security).__name__}")
        if scheduler_file is not None:
            if address is not None:
                raise ValueError("give Client either an address or scheduler_file=, not both")
            from shoal.cluster._scheduler_file import read_scheduler_file

            info = read_scheduler_file(scheduler_file, timeout or 10.0)
            address = info["address"]
            security = security if security is not None else Security()
            if info.get("token") and not security.token:
                security.token = info["token"]
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
        """Start the own LocalCluster (off the loop: it waits on the loop), connect, and
        become the current (and perhaps dask's default) client."""
        from shoal.cluster._local import LocalCluster
        from shoal.comm._security import Security

        loop = asyncio.get_running_loop()
        try:
            if address is None:
                self.cluster = await loop.run_in_executor(
                    None, functools.partial(LocalCluster, **cluster_kwargs))
                self._owns_cluster = True
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
                await loop.run_in_executor(None, self.cluster.close)
            raise
        self.status = "running"
        if self._deployed is not None:
            self.cluster = self._deployed
        _tune_gc()
        _current.append(weakref.ref(self))
        if self._set_as_default:
            self._previous_scheduler = dask.config.get("scheduler", None)
            self._is_default = True
            dask.config.set({"scheduler": self, "dataframe.shuffle.method": "tasks"})
        return self

    async def _connect_local(self) -> None:
        sched = self.cluster.scheduler
        conn = sched.connect_local_client(self.id)
        self._conn = conn
        conn.set_handler(self._on_message)
        self.scheduler_address = sched.address

    async def _connect_retrying(self, address: str) -> Connection:
        """Connect to the scheduler, trying again while it does not answer yet (a scheduler
        still starting), as dask's client does; the caller bounds the whole by the
        client's timeout. A refusal of our credentials is final.

        Raises:
            HandshakeError: the scheduler refused us (or we it); says why.
            ValueError: the address needs credentials this client does not have.
        """
        from shoal.comm._handshake import HandshakeError

        delay = 0.01
        while True:
            try:
                return await connect(address, timeout=self._timeout or 30.0,
                                     security=self.security)
            except (ValueError, HandshakeError):
                raise
            except OSError as exc:
                self._last_connect_error = str(exc)
                logger.debug("could not reach the scheduler at %s yet (%s); retrying",
                             address, exc)
                await asyncio.sleep(delay)  # bounded by the caller's timeout
                delay = min(delay * 2, 1.0)

    async def _connect_tcp(self, address: str) -> None:
        conn = await self._connect_retrying(address)
        self._conn = conn
        hello: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[0] = hello
        conn.set_handler(self._on_message)
        conn.send(Hello("client", PROTOCOL_VERSION, self.id))
        info = await hello
        self.scheduler_address = info["address"]

    # --- incoming ---------------------------------------------------------------------------

    def _on_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            self._on_lost_connection()
            return
        states = self._states
        for msg in batch:
            kind = type(msg)
            if kind is KeyDone:
                st = states.get(msg.key)  # type: ignore[attr-defined]
                if st is not None:
                    st.inline = msg.inline  # type: ignore[attr-defined]
                    st.nbytes = msg.nbytes  # type: ignore[attr-defined]
                    st.typename = msg.typename  # type: ignore[attr-defined]
                    st.settle("finished")
            elif kind is KeyErred:
                st = states.get(msg.key)  # type: ignore[attr-defined]
                if st is not None:
                    st.error = dict(msg.error)  # type: ignore[attr-defined]
                    st.settle("error")
            elif kind is KeyCancelled:
                st = states.get(msg.key)  # type: ignore[attr-defined]
                if st is not None:
                    self._forget_state(msg.key, st)  # type: ignore[attr-defined]
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
                        fut.set_exception(RuntimeError(str(msg.value)))  # type: ignore[attr-defined]
            elif kind is CoordReply:
                _coordination.on_reply(self, msg)  # type: ignore[arg-type]
            elif kind is TopicEvent:
                _topics.on_event(self, msg)  # type: ignore[arg-type]
            elif kind is ClusterRestarted:
                _control.on_restarted(self, msg.reason)  # type: ignore[attr-defined]

    def _on_lost_connection(self) -> None:
        if self.status in ("closing", "closed"):
            return
        self.status = "closed"
        for st in self._states.values():
            if st.status == "pending":
                st.error = {
                    "kind": "lost", "type": "CommClosedError",
                    "message": "the connection to the scheduler was lost",
                    "exception": None, "traceback": None, "tb_text": "",
                }
                st.settle("lost")
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the connection to the scheduler was lost"))
        _coordination.fail_pending(self, "the connection to the scheduler was lost")

    # --- sending --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.status == "connecting" and self.asynchronous:
            raise RuntimeError("this asynchronous Client is still connecting: `await` it (or "
                               "use `async with Client(..., asynchronous=True)`) first")
        if self.status != "running":
            raise RuntimeError(
                f"this Client is {self.status}; create a new Client() to submit more work"
            )

    def _send(self, msg: Message) -> None:
        """Queue ``msg`` for the scheduler. Submissions and releases share this one ordered
        queue so that a release never overtakes the submission of a task that depends on
        the released key."""
        self._outbox.append(msg)
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            _loop.call_soon(self._drain)

    def _drain(self) -> None:
        """On the loop: send queued messages, then releases of futures that died meanwhile."""
        self._drain_scheduled = False
        released: list[Any] = []
        dead = self._dead
        if dead:
            with self._lock:
                while dead:
                    key, st = dead.popleft()
                    if st is not None and self._states.get(key) is not st:
                        continue  # a future of a cancelled key: its count was dropped then
                    n = self._refcount.get(key, 0) - 1
                    if n > 0:
                        self._refcount[key] = n
                    elif key in self._refcount:
                        del self._refcount[key]
                        self._states.pop(key, None)
                        released.append(key)
        # The outbox is taken after the releases: a submission queued before a release was
        # recorded (a dependent, then its input's future dropped) must go out before it.
        msgs: list[Message] = []
        outbox = self._outbox
        while outbox:
            msgs.append(outbox.popleft())
        if released:
            msgs.append(ReleaseKeys(released))
        if self._conn is not None and msgs:
            self._conn.send_many(msgs)

    async def _request(self, op: str, **args: Any) -> Any:
        assert self._conn is not None
        rid = next(self._request_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        self._conn.send(Request(rid, op, args))
        return await fut

    def sync(self, func: Callable[..., Any], *args: Any, asynchronous: bool | None = None,
             callback_timeout: float | None = None, **kwargs: Any) -> Any:
        """Run the coroutine function ``func(*args, **kwargs)`` on shoal's loop (a function
        returning another awaitable, or a plain value, is fine too).

        Every client operation is written once, as a coroutine; this is its two faces (as
        dask's ``Client.sync``): for an asynchronous client (or ``asynchronous=True``) it
        returns an awaitable for the caller's event loop, which is never blocked; otherwise
        it blocks the calling thread until the result is there.

        Raises:
            TimeoutError: not done within ``callback_timeout`` seconds.
            RuntimeError: a blocking call from inside shoal's own loop (it would deadlock).
        """
        if asynchronous is None:
            asynchronous = self.asynchronous
        work = as_coroutine(func(*args, **kwargs))
        if asynchronous:
            return _loop.run_async(work, callback_timeout)
        return _loop.run_sync(work, callback_timeout)

    async def _request_within(self, op: str, within: float | None, /, **args: Any) -> Any:
        """``_request`` on an open client, raising TimeoutError after ``within`` seconds."""
        self._check_open()
        try:
            return await asyncio.wait_for(self._request(op, **args), within)
        except TimeoutError:
            raise TimeoutError(f"the scheduler did not answer {op!r} within {within} s") from None

    def _sync_request(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """``_request_within`` for a caller that blocks (whatever the client's mode)."""
        return self.sync(self._request_within, op, timeout, asynchronous=False, **args)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """shoal's event loop, on which every client operation runs (its own thread)."""
        return _loop.get_loop()

    # --- reference counting -------------------------------------------------------------------

    def _state_for(self, key: Any) -> FutureState:
        st = self._states.get(key)
        if st is None:
            with self._lock:
                st = self._states.get(key)
                if st is None:
                    st = self._states[key] = FutureState()
        return st

    def _incref(self, key: Any) -> None:
        with self._lock:
            self._refcount[key] = self._refcount.get(key, 0) + 1

    def _decref(self, key: Any, state: FutureState | None = None) -> None:
        """A Future of ``key`` (sharing ``state``) went away. Lock-free: this runs from
        ``__del__``."""
        if self.status != "running":
            return
        self._dead.append((key, state))
        try:
            self._schedule_drain()
        except RuntimeError:  # interpreter shutting down
            pass

    # --- tasks --------------------------------------------------------------------------------

    def _row(
        self, key: Any, task: Any, priority: Any, retries: int, workers: Any, prefix: str
    ) -> tuple[Any, ...]:
        payload, fids = dumps_task(task, self._functions)
        return (key, payload, list(task.dependencies), fids, priority, retries, workers, prefix)

    def _submit_rows(self, rows: list[tuple[Any, ...]], wanted: list[Any],
                     actors: list[Any] | None = None,
                     restrictions: list[tuple[Any, Any, bool]] | None = None) -> None:
        # Marking a blob sent and queueing the message carrying it are one step: another
        # thread's submit that skips the blob must queue its message after this one, and
        # the loop thread's DropFunctions never interleaves.
        with self._lock:
            fids = {fid for row in rows for fid in row[3]} - self._sent_fids
            blobs = {fid: self._functions.blob(fid) for fid in fids}
            self._sent_fids |= fids
            self._outbox.append(UpdateGraph(rows, wanted, blobs, actors, restrictions))
        self._schedule_drain()

    def _forget_state(self, key: Any, st: FutureState) -> None:
        """``key`` was cancelled: its futures keep ``st``; a new submission starts afresh."""
        with self._lock:
            if self._states.get(key) is st:
                del self._states[key]
                self._refcount.pop(key, None)

    def _function_token(self, func: Any) -> str:
        """A token of ``func`` that changes when its content does. A Python function's is
        its fid, the hash of its pickle (cached while its globals, closure and defaults stay
        the same objects). Builtins and classes are tokenized once; other callables
        (partials, bound methods, callable objects may change in place) every time."""
        if type(func) is types.FunctionType:
            return self._functions.fid(func)
        if not isinstance(func, _STABLE_CALLABLES):
            return tokenize(func)
        hit = self._ftokens.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        token = tokenize(func)
        if len(self._ftokens) > 10_000:
            self._ftokens.clear()
        self._ftokens[id(func)] = (func, token)
        return token

    @staticmethod
    def _check_workers(workers: Any) -> list[str] | None:
        if workers is None:
            return None
        if isinstance(workers, str):
            return [workers]
        try:
            out = list(workers)
        except TypeError:
            raise TypeError(f"workers= takes an address or a list of addresses, got {workers!r}") from None
        if not all(isinstance(w, str) for w in out):
            raise TypeError(f"workers= takes worker addresses or names (strings), got {workers!r}")
        return out

    @staticmethod
    def _check_resources(resources: Any) -> dict[str, float] | None:
        if resources is None or resources == {}:
            return None
        if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and v >= 0 for k, v in resources.items()
        ):
            raise TypeError(
                "resources= takes a dict of resource names to non-negative amounts, like "
                f"{{'GPU': 1}}, got {resources!r}"
            )
        return {k: float(v) for k, v in resources.items()}

    def _restrictions(
        self, keys: list[Any], resources: Any, allow_other_workers: Any
    ) -> list[tuple[Any, dict[str, float] | None, bool]] | None:
        """submit's and map's resources and allow_other_workers (or those of the active
        ``dask.annotate`` block) as UpdateGraph rows; None when there are none."""
        if allow_other_workers not in (True, False, None):
            raise TypeError("allow_other_workers= must be True, False, or None")
        need = self._check_resources(resources)
        if not need and not allow_other_workers:
            return None
        return [(k, need, bool(allow_other_workers)) for k in keys]

    def _check_call(self, verb: str, func: Any, workers: Any, retries: Any) -> tuple[list[str] | None, int]:
        """What submit and map check first: an open client, a callable, and their options."""
        self._check_open()
        if not callable(func):
            raise TypeError(f"{verb} needs a callable as its first argument, got {func!r}")
        return self._check_workers(workers), self._check_retries(retries)

    @staticmethod
    def _check_retries(retries: Any) -> int:
        if retries is None:
            return 0
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        return retries

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: Any = None,
        workers: Any = None,
        retries: int | None = None,
        priority: int = 0,
        pure: bool = True,
        allow_other_workers: bool = False,
        resources: Any = None,
        fifo_timeout: Any = None,
        actor: bool = False,
        actors: bool = False,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on the cluster; returns a Future.

        Futures among the arguments (also inside lists, tuples and dicts) become
        dependencies. With ``pure=True`` equal calls share a key (and a result).
        With ``actor=True`` (or its alias ``actors=True``) the result is an
        :class:`~shoal.Actor`: ``func`` (usually a class) is called on one worker and the
        object stays there; ``pure`` is then False, since an actor has state.

        Raises:
            TypeError: ``func`` is not callable, or an argument cannot be pickled.
            RuntimeError: the client is closed.
        """
        active = dask.get_annotations()
        if active:  # a dask.annotate block: its options, unless given here (dask's merge)
            workers, retries, priority, resources, allow_other_workers = _annotated(
                active, workers, retries, priority, resources, allow_other_workers)
        wl, nretries = self._check_call("submit", func, workers, retries)
        self._restrictions([], resources, allow_other_workers)  # fail before any state
        is_actor = (actor or actors) and _actor_flag(actor, actors)
        if is_actor:
            pure = False
        if key is None:
            name = funcname(func)
            key = f"{name}-{tokenize(self._function_token(func), kwargs, *args) if pure else uuid.uuid4().hex}"
        else:
            name = _key_name(key)
        with self._lock:  # the loop thread drops released keys under this lock
            st = self._states.get(key)
            held = st is not None and key in self._refcount
            if st is None:
                st = self._states[key] = FutureState()
            self._refcount[key] = self._refcount.get(key, 0) + 1
            fut = Future._new(key, self, st)
        if held:
            return fut
        task = _payload(key, NewActor(func) if is_actor else func, args, kwargs)
        prio = (-priority, next(self._generation), 0)
        row = self._row(key, task, prio, nretries, wl, name)
        self._submit_rows([row], [key], [key] if is_actor else None,
                          self._restrictions([key], resources, allow_other_workers))
        return fut

    def map(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        key: Any = None,
        workers: Any = None,
        retries: int | None = None,
        priority: int = 0,
        pure: bool = True,
        batch_size: int | None = None,
        allow_other_workers: bool = False,
        resources: Any = None,
        fifo_timeout: Any = None,
        actor: bool = False,
        actors: bool = False,
        **kwargs: Any,
    ) -> list[Future]:
        """``submit`` over each element of ``iterables`` in one message; returns a list.
        With ``actor=True`` (alias ``actors=True``) each result is an Actor.

        Raises:
            TypeError: ``func`` is not callable, or iterables are missing or not iterable.
        """
        active = dask.get_annotations()
        if active:
            workers, retries, priority, resources, allow_other_workers = _annotated(
                active, workers, retries, priority, resources, allow_other_workers)
        wl, nretries = self._check_call("map", func, workers, retries)
        self._restrictions([], resources, allow_other_workers)
        is_actor = _actor_flag(actor, actors)
        if is_actor:
            pure = False
        if not iterables:
            raise TypeError("map needs at least one iterable of arguments")
        if isinstance(iterables[0], dict):
            raise TypeError("map over a dict is ambiguous; pass list(d.keys()) or list(d.values())")
        arg_lists = [list(it) for it in iterables]
        n = min(len(a) for a in arg_lists) if arg_lists else 0
        name = funcname(func) if not isinstance(key, str) else key
        if isinstance(key, (list, tuple)):
            keys = list(key)
            if len(keys) != n:
                raise ValueError(f"map got {len(keys)} keys for {n} tasks")
        elif pure:
            with self._functions.batch():
                ftoken = tokenize(self._function_token(func), kwargs)
            keys = [f"{name}-{tokenize(ftoken, *args)}" for args in zip(*arg_lists, strict=False)]
        else:
            keys = [f"{name}-{uuid.uuid4().hex}" for _ in range(n)]
        gen = next(self._generation)
        pkw = _parsed(kwargs)
        target = NewActor(func) if is_actor else func
        rows = []
        futures = []
        seen: set[Any] = set()
        states = self._states
        refcount = self._refcount
        with self._lock:
            for k in keys:
                st = states.get(k)
                if st is None:
                    st = states[k] = FutureState()
                elif k in refcount:
                    seen.add(k)  # already held: already on the cluster
                futures.append(Future._new(k, self, st))
                refcount[k] = refcount.get(k, 0) + 1
        with self._functions.batch():
            for i, (k, args) in enumerate(zip(keys, zip(*arg_lists, strict=False), strict=False)):
                if k in seen:
                    continue
                seen.add(k)
                task = _payload(k, target, args, kwargs, pkw)
                rows.append(self._row(k, task, (-priority, gen, i), nretries, wl, name))
        if rows:
            wanted = [r[0] for r in rows]
            self._submit_rows(rows, wanted, wanted if is_actor else None,
                              self._restrictions(wanted, resources, allow_other_workers))
        return futures

    # --- results -------------------------------------------------------------------------------

    _wait_one = _results.wait_one
    _result = _results.result
    _failure = _results.failure
    _failure_of = staticmethod(_results.failure_of)
    _exception_of = staticmethod(_results.exception_of)
    _add_callback = _results.add_callback
    gather = _results.gather
    _gather = _results.gather_async

    def scatter(self, data: Any, workers: Any = None, broadcast: bool = False,
                direct: Any = None, hash: bool = True, timeout: Any = None,
                asynchronous: Any = None) -> Any:
        """Put local data into cluster memory; returns futures in the same structure
        (a single object gives a single future); an awaitable of them when asynchronous.
        The data is pickled here, in the caller's thread."""
        self._check_open()
        wl = self._check_workers(workers)
        if isinstance(data, dict):
            items = list(data.items())
            keys = [k for k, _ in items]
            values = [v for _, v in items]
        elif isinstance(data, (list, tuple, set, frozenset)):
            values = list(data)
            keys = [
                f"{type(v).__name__}-{tokenize(v) if hash else uuid.uuid4().hex}" for v in values
            ]
        else:
            values = [data]
            keys = [f"{type(data).__name__}-{tokenize(data) if hash else uuid.uuid4().hex}"]
        from dask.sizeof import sizeof

        rows = [(k, dumps(v), int(sizeof(v)), type(v).__name__) for k, v in zip(keys, values, strict=False)]
        futures = [Future(k, self) for k in keys]
        if isinstance(data, dict):
            shaped: Any = dict(zip(keys, futures, strict=False))
        elif isinstance(data, (list, tuple, set, frozenset)):
            shaped = type(data)(futures) if not isinstance(data, (set, frozenset)) else futures
        else:
            shaped = futures[0]
        return self.sync(self._scatter, rows, wl, bool(broadcast), futures, shaped,
                         callback_timeout=timeout, asynchronous=asynchronous)

    async def _scatter(self, rows: list[Any], workers: list[str] | None, broadcast: bool,
                       futures: list[Future], shaped: Any) -> Any:
        assert self._conn is not None
        rid = next(self._request_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        self._conn.send(Scatter(rid, rows, workers, broadcast))
        await fut
        # Done once a worker acknowledged holding the data (or could not load it).
        await settled(f._state for f in futures)
        for f in futures:
            if f._state.status == "error":
                raise self._exception_of(f)
        return shaped

    def cancel(self, futures: Any, asynchronous: Any = None, force: bool = False,
               reason: Any = None, msg: Any = None) -> Any:
        """Cancel these futures: they end ``cancelled`` and this client drops its interest
        in their keys, so submitting the same task again starts a fresh computation.

        A task that other clients also want goes on for them, unless ``force=True``, which
        cancels it for every client. Dependents wanted by no one else are cancelled too.
        """
        self._check_open()
        flat: list[Future] = []
        collect_futures(futures, flat)
        keys: dict[Any, None] = {}
        with self._lock:
            for f in flat:
                current = self._states.get(f.key)
                if current is f._state:
                    del self._states[f.key]
                    self._refcount.pop(f.key, None)
                elif current is not None:
                    continue  # cancelled before; the key was submitted again since
                keys[f.key] = None
        if keys:
            self._send(CancelKeys(list(keys), bool(force)))
        for st in {id(f._state): f._state for f in flat}.values():
            if st.status != "cancelled":
                _loop.call_soon(lambda st=st: st.status == "cancelled" or st.settle("cancelled"))
        return answer(self, None, asynchronous)

    def retry(self, futures: Any, asynchronous: Any = None) -> Any:
        """Run failed futures (and their failed inputs) again."""
        self._check_open()
        flat: list[Future] = []
        collect_futures(futures, flat)
        for f in flat:
            if f._state.status == "error":
                f._state.reset()
        self._send(RetryKeys([f.key for f in flat]))
        return answer(self, None, asynchronous)

    # --- questions about the cluster, collections, debugging (sibling modules) -----------------

    _fetch = _fetch_module.fetch
    _fetch_async = _fetch_module.fetch_async
    run = two_faced(_cluster_info.run)
    scheduler_info = two_faced(_cluster_info.scheduler_info)
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
        if self._conn is not None:
            self._conn.close()
        for c in self._worker_conns.values():
            c.close()
        self._mark_closed()
        if with_cluster and self._owns_cluster and self.cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cluster.close)

    def _mark_closed(self) -> None:
        """Closed: note the keys it held, and end what its futures wait for ("lost")."""
        self.status = "closed"
        _coordination.fail_pending(self, "the client was closed while waiting")
        orphan_keys(list(self._refcount))
        for st in list(self._states.values()):
            if st.status == "pending":
                st.error = {"kind": "lost", "type": "RuntimeError",
                            "message": "the client was closed before this future finished",
                            "exception": None, "traceback": None, "tb_text": ""}
                st.settle("lost")

    def _step_down_as_default(self) -> None:
        """Hand dask's default scheduler to the newest client still open, or back to what
        it was before this client (clients may close in any order)."""
        self._is_default = False
        if dask.config.get("scheduler", None) is not self:
            return
        try:
            successor: Any = get_client()
        except ValueError:
            successor = self._previous_scheduler
            while isinstance(successor, Client) and successor.status != "running":
                successor = successor._previous_scheduler
        dask.config.set({"scheduler": successor})

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
            except Exception:
                pass

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
    if cluster is not None:  # closing it waits on shoal's loop: from a thread
        await asyncio.get_running_loop().run_in_executor(None, cluster.close)


def _payload(key: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             parsed_kwargs: Any = None) -> Any:
    """What the worker will call: a lean Call when no argument refers to a future,
    else a dask Task, which resolves the references to their values."""
    pargs = tuple(map(parse_input, args))
    pkw = _parsed(kwargs) if parsed_kwargs is None else parsed_kwargs
    if all(a is b for a, b in zip(pargs, args, strict=True)) and all(
        pkw[k] is v for k, v in kwargs.items()
    ):
        return Call(func, args, kwargs)
    return Task(key, func, *pargs, **pkw)


def _actor_flag(actor: Any, actors: Any) -> bool:
    for name, value in (("actor", actor), ("actors", actors)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}= takes True or False, got {value!r}")
    return actor or actors


def _parsed(kwargs: dict[str, Any]) -> Any:
    """Keyword arguments with futures inside them turned into graph references."""
    return {k: parse_input(v) for k, v in kwargs.items()}


def _key_name(key: Any) -> str:
    if isinstance(key, tuple) and key:
        key = key[0]
    return str(key).rsplit("-", 1)[0] if "-" in str(key) else str(key)


__all__ = ["Client", "Future", "Serialized", "default_client", "get_client"]


def _annotated(
    active: dict[str, Any], workers: Any, retries: Any, priority: int, resources: Any,
    allow_other_workers: Any,
) -> tuple[Any, Any, int, Any, Any]:
    """The options of a call made inside ``dask.annotate``: the call's own where given,
    else the block's (dask.distributed's merge)."""
    return (
        active.get("workers") if workers is None else workers,
        active.get("retries") if retries is None else retries,
        priority or int(active.get("priority", 0) or 0),
        resources if resources is not None else active.get("resources"),
        allow_other_workers or active.get("allow_other_workers", False),
    )
