"""Futures: handles on remote results, shared per key within a client.

Owns: a key's status as the client sees it (pending, finished, error, cancelled, lost),
waiting for it from user threads, done-callbacks, and reference counting so that a result
is released on the cluster when no Future for it remains.
"""

from __future__ import annotations

import _thread
import asyncio
import dis
import functools
import logging
import pickle
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dask._task_spec import TaskRef

from shoal import _interrupts, _loop
from shoal.client import _returned
from shoal.client._timeouts import duration
from shoal.protocol._errors import FutureCancelledError as FutureCancelledError
from shoal.protocol._errors import error_to_exception
from shoal.protocol._serialize import Serialized, loads
from shoal.protocol._typenames import load_class, resolve, type_name

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

_NO_VALUE = object()
NOT_PLAIN = _NO_VALUE  # ``FutureState.plain_value``: no such value known
# Guards FutureState.status changes against callback registration from user threads.
_callbacks_lock = threading.Lock()

logger = logging.getLogger("shoal.client")


# Inline results of at most this many bytes pickled are shared between futures, up to this
# many distinct ones per process (a bounded table, emptied when full).
_SHARED_FRAME_BYTES = 32
_SHARED_FRAMES = 4096
_shared_frames: dict[bytes, bytes] = {}
# What those tiny frames unpickle to, for the ones that unpickle to an immutable plain value
# (None, a bool, a number, a short string): read once, not once per future (a map's
# gather reads 20,000 Nones). Bounded and emptied as ``_shared_frames`` is.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})
_plain_values: dict[bytes, Any] = {}


def _open(latch: _thread.LockType) -> None:
    """Release a key's latch (``FutureState.wait``): settling opens it, and each waiter
    that takes it opens it again for the next. Found open already, it stays open: an
    interrupted waiter may have opened it for a waiter that held it (see ``wait``)."""
    try:
        latch.release()
    except RuntimeError:  # "release unlocked lock": open already, as it should be
        pass


class _Waiters:
    """Who waits for one key (``FutureState._waiters``)."""

    __slots__ = ("callbacks", "latch")

    def __init__(self) -> None:
        self.latch: _thread.LockType | None = None
        self.callbacks: list[Callable[[], None]] | None = None


class SentTypeName(str):
    """A result's type name that came with the class itself (``KeyDone.pickled_type``: a
    class its name does not find, one defined in a function). A str, so that everything
    reading ``FutureState.typename`` reads the name; the class rides on the rare ones
    only, instead of a slot on every state."""

    _sent: bytes | type | None

    def __new__(cls, name: str, pickled: bytes) -> SentTypeName:
        self = super().__new__(cls, name)
        self._sent = pickled
        return self

    def load(self) -> type | None:
        """The class, loaded once; None if it does not load here."""
        sent = self._sent
        if sent is None or isinstance(sent, type):
            return sent
        self._sent = load_class(sent)
        return self._sent


class FutureState:
    """What the client knows about one key; shared by every Future of that key."""

    __slots__ = ("_waiters", "error", "inline", "nbytes", "refs", "status", "typename")

    def __init__(self) -> None:
        self.status = "pending"
        # How many of this client's Futures hold the key (changed under the client's lock):
        # a slot here, not a separate key -> count table (a hash-table entry per held key).
        self.refs = 0
        # A small result that came with the key-done message: its one frame alone when it
        # has one (the Serialized around it would cost 88 bytes more per held future).
        self.inline: Serialized | bytes | None = None
        self.error: dict[str, Any] | None = None
        self.nbytes = -1
        # The result's type name; a ``SentTypeName`` when the worker sent the class too.
        self.typename = ""
        # Who waits for it (a latch for threads, callbacks for the loop): made on the first
        # wait or callback and dropped when it settles; one slot for both, since most
        # states never get either (a million held futures: 8 MB less than two slots).
        self._waiters: _Waiters | None = None

    @property
    def _event(self) -> _thread.LockType | None:
        """The waiters' latch (see ``wait``), or None."""
        w = self._waiters
        return None if w is None else w.latch

    @property
    def callbacks(self) -> list[Callable[[], None]] | None:
        """The callbacks ``settle`` will run, or None."""
        w = self._waiters
        return None if w is None else w.callbacks

    def done(self) -> bool:
        return self.status != "pending"

    def keep_inline(self, ser: Serialized) -> None:
        """Keep the inline result ``ser`` (compactly; ``inline_value`` gives it back)."""
        frames = ser.frames
        if len(frames) != 1 or type(frames[0]) is not bytes:
            self.inline = ser
            return
        frame = frames[0]
        if len(frame) <= _SHARED_FRAME_BYTES:
            # Tiny results repeat (None, True, small numbers): held futures share one copy
            # of each (a 37-byte bytes object per future for None otherwise).
            shared = _shared_frames.get(frame)
            if shared is not None:
                frame = shared
            else:
                if len(_shared_frames) >= _SHARED_FRAMES:
                    _shared_frames.clear()  # full: start again with the values now coming
                _shared_frames[frame] = frame
        self.inline = frame

    def inline_value(self) -> Any:
        """The inline result, unpickled (there must be one)."""
        inline = self.inline
        assert inline is not None
        if isinstance(inline, Serialized):
            return loads(inline)
        if len(inline) > _SHARED_FRAME_BYTES:
            return pickle.loads(inline)  # (``loads`` of its one-frame Serialized)
        value = _plain_values.get(inline, _NO_VALUE)
        if value is _NO_VALUE:
            value = pickle.loads(inline)
            if type(value) in _PLAIN_TYPES:  # immutable: one object serves every reader
                if len(_plain_values) >= _SHARED_FRAMES:
                    _plain_values.clear()
                _plain_values[inline] = value
        return value

    def plain_value(self) -> Any:
        """The inline result if it is a tiny frame read before as an immutable plain value
        (``inline_value`` keeps those: no unpickling, and no Future can be in it), else
        :data:`NOT_PLAIN`."""
        inline = self.inline
        if type(inline) is bytes and len(inline) <= _SHARED_FRAME_BYTES:
            return _plain_values.get(inline, _NO_VALUE)
        return _NO_VALUE

    def wait(self, timeout: float | None) -> bool:
        if self.status != "pending":
            return True
        # The latch is a lock held until ``settle`` releases it; each waiter takes it and
        # hands it on at once. A bare lock costs a few µs less per wait than a
        # threading.Event (its Condition allocates a lock per waiter, in Python).
        with _callbacks_lock:
            if self.status != "pending":
                return True
            w = self._waiters
            if w is None:
                w = self._waiters = _Waiters()
            latch = w.latch
            if latch is None:
                latch = w.latch = _thread.allocate_lock()
                latch.acquire()
        if timeout is not None:
            timeout = min(max(timeout, 0.0), threading.TIMEOUT_MAX)
        try:
            took = _interrupts.blocking_wait(
                lambda t: latch.acquire(True, -1 if t is None else t), timeout)
        except BaseException:
            # Interrupted (Ctrl-C) maybe right after the acquire took the latch, before it
            # could say so: once settled, open it again, or the other threads waiting on
            # this key would wait for good. Opening one that another waiter holds for a
            # moment, or settle has yet to open, is harmless: every opening tolerates a
            # latch found open.
            if self.status != "pending" and latch.locked():
                _open(latch)
            raise
        if took:
            _open(latch)
            return True
        return self.status != "pending"

    def settle(self, status: str) -> None:
        """Called on the loop thread when the key reaches a final status."""
        with _callbacks_lock:
            self.status = status
            w, self._waiters = self._waiters, None  # released once, by this call only
            watches = _watches[:] if _watches and status != "finished" else None
        if watches:
            _tell_watches(watches, (self,))
        if w is None:
            return
        if w.latch is not None:
            _open(w.latch)
        for cb in w.callbacks or ():
            cb()

    @staticmethod
    def settle_all(states: list[FutureState], status: str) -> None:
        """``settle`` each of ``states`` (on the loop thread): a batch of results takes the
        lock once, not once per key; every status is set before any waiter is woken or
        callback run."""
        latches = []
        callbacks: list[Callable[[], None]] = []
        with _callbacks_lock:
            for st in states:
                st.status = status
                w = st._waiters
                if w is not None:
                    st._waiters = None
                    if w.callbacks is not None:
                        callbacks += w.callbacks
                    if w.latch is not None:
                        latches.append(w.latch)
            watches = _watches[:] if _watches and status != "finished" else None
        if watches:
            _tell_watches(watches, states)
        for latch in latches:
            _open(latch)
        for cb in callbacks:
            cb()

    def cancel_now(self) -> None:
        """``settle("cancelled")`` from any thread, as ``Client.cancel`` does: the status
        reads ``cancelled`` and ``result()`` waiters wake when it returns (dask's cancel
        returns once its futures are cancelled), while the done-callbacks still run on the
        loop thread, as :meth:`Future.add_done_callback` promises."""
        with _callbacks_lock:
            if self.status == "cancelled":
                return
            self.status = "cancelled"
            w, self._waiters = self._waiters, None
            watches = _watches[:] if _watches else None
        if watches:
            _tell_watches(watches, (self,))
        if w is None:
            return
        if w.latch is not None:
            _open(w.latch)
        for cb in w.callbacks or ():
            _loop.call_soon(cb)

    def add_callback_if_pending(self, cb: Callable[[], None]) -> bool:
        """Register ``cb`` to run when the key settles; False if it already has (any
        thread may call this; ``settle`` runs the callbacks on the loop thread)."""
        with _callbacks_lock:
            if self.status != "pending":
                return False
            w = self._waiters
            if w is None:
                w = self._waiters = _Waiters()
            if w.callbacks is None:
                w.callbacks = [cb]
            else:
                w.callbacks.append(cb)
            return True

    def reset(self) -> None:
        self.status = "pending"
        self.inline = None
        self.error = None
        if self._waiters is not None:
            self._waiters.latch = None


# The state of a Future unpickled outside a client's reading (``Future._unbound``): no
# client holds its key, so nothing ever changes it; "unbound" is not a status dask reports.
UNBOUND = FutureState()
UNBOUND.status = "unbound"


class _FailureWatch:
    """A blocking ``gather``'s wait (``settled_or_failed``): its latch opens when the key it
    waits for settles, or when any of its keys fails."""

    __slots__ = ("failed", "futures", "ids", "latch")

    def __init__(self, futures: list[Future]) -> None:
        self.futures = futures
        self.ids: frozenset[int] | None = None  # of their states: made at the first failure
        self.failed = False
        self.latch = _thread.allocate_lock()
        self.latch.acquire()



# The blocking gathers waiting now (one per waiting thread at most), told of each failure:
# changed and copied under ``_callbacks_lock``, where statuses change.
_watches: list[_FailureWatch] = []


def _tell_watches(watches: list[_FailureWatch], states: Iterable[FutureState]) -> None:
    """``states`` just failed (error, cancelled, lost): wake the watches holding one."""
    for watch in watches:
        ids = watch.ids
        if ids is None:  # (two threads may make it at once: the same set)
            ids = watch.ids = frozenset([id(f._state) for f in watch.futures])
        if any(id(st) in ids for st in states):
            watch.failed = True
            _open(watch.latch)


def failure_of_state(key: Any, st: FutureState) -> BaseException:
    """What asking for the value of ``key``, settled unsuccessfully as ``st``, raises."""
    if st.status == "cancelled":
        error = st.error or {}
        if "reason" in error:  # Client.cancel(reason=, msg=): dask's message
            exc = FutureCancelledError(f"{key} {error['message']}")
        else:
            why = f": {error['message']}" if error else ""
            exc = FutureCancelledError(f"future {key!r} was cancelled{why}")
        # dask's attributes (pickled with the exception's __dict__)
        exc.key, exc.reason, exc.msg = (  # type: ignore[attr-defined]
            key, error.get("reason") or "unknown", error.get("msg"))
        return exc
    if st.error is not None:
        return error_to_exception(st.error)
    return RuntimeError(f"future {key!r} is {st.status}")


def first_failed(futures: list[Future], start: int = 0) -> Future | None:
    """The first of ``futures[start:]`` that settled unsuccessfully, or None."""
    for i in range(start, len(futures)):
        f = futures[i]
        status = f._state.status
        if status != "pending" and status != "finished":
            return f
    return None


def settled_or_failed(futures: list[Future]) -> Future | None:
    """Wait, in a blocking caller's thread, until every one of ``futures`` has settled or
    one has failed, as dask's ``gather`` stops at the first failure (error, cancelled,
    lost) instead of waiting for the others. Returns the first failed future in order,
    or None. The thread waits for one pending key at a time, as ``FutureState.wait``
    does, and a failure of any other wakes it (``_watches``): nothing is registered
    per key beyond the one waited for. It waits for the last one first: a map's keys
    settle about in order, so it usually wakes once, to find all settled, not once per
    batch of results (each wake-up takes the GIL from the loop thread settling them).

    Raises:
        KeyboardInterrupt: Ctrl-C while waiting.
    """
    start = 0
    for f in futures:  # the common case, all settled: no lock, no watch
        status = f._state.status
        if status == "pending":
            break
        start += 1
        if status != "finished":
            return f
    else:
        return None
    watch = _FailureWatch(futures)
    with _callbacks_lock:
        _watches.append(watch)
    try:
        failed = first_failed(futures, start)  # one that failed before the watch was there
        if failed is not None:
            return failed
        latch = watch.latch
        wake = functools.partial(_open, latch)
        for i in range(len(futures) - 1, start - 1, -1):
            st = futures[i]._state
            # ends: every key settles (a closed client or lost connection settles them
            # all); a wake by another key's failure comes back here at most once each
            while st.status == "pending":
                if st.add_callback_if_pending(wake):
                    _interrupts.blocking_wait(
                        lambda t: latch.acquire(True, -1 if t is None else t), None)
                if watch.failed:
                    watch.failed = False
                    failed = first_failed(futures, start)
                    if failed is not None:
                        return failed  # (else retried meanwhile: pending again)
            if st.status != "finished":  # the first failed in order, this one or earlier
                failed = first_failed(futures, start)
                return futures[i] if failed is None else failed
        return None
    finally:
        with _callbacks_lock:
            _watches.remove(watch)


async def settled(states: Iterable[FutureState], first: Callable[[FutureState], bool] | None = None
                  ) -> None:
    """Until every state has settled, or one settled state satisfies ``first`` (run on
    shoal's loop, where ``settle`` runs the callbacks). The asynchronous counterpart of
    ``FutureState.wait``, which a blocking caller's thread uses instead."""
    states = list(states)
    pending = [st for st in {id(st): st for st in states}.values() if not st.done()]
    if not pending or (first is not None and any(first(st) for st in states if st.done())):
        return
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    left = len(pending)

    def count(st: FutureState) -> None:
        nonlocal left
        left -= 1
        if (left == 0 or (first is not None and first(st))) and not woken.done():
            woken.set_result(None)

    def one(st: FutureState) -> None:  # settle() runs it, on the loop thread (or close()'s)
        if woken.done():  # the waiter is gone (cancelled) or already woken
            return
        if _in_loop(loop):
            count(st)
        else:
            loop.call_soon_threadsafe(count, st)

    callbacks = []
    for st in pending:
        cb = functools.partial(one, st)
        if st.add_callback_if_pending(cb):
            callbacks.append((st, cb))
        else:
            one(st)
    try:
        await woken
    finally:  # a cancelled waiter leaves no callback behind
        with _callbacks_lock:
            for st, cb in callbacks:
                cbs = st.callbacks
                if cbs and cb in cbs:
                    cbs.remove(cb)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# How long ``bind_client`` waits for each client's round trip to the scheduler.
_MOVE_WITHIN = 30.0


async def _move_hold(key: Any, old: Client | None, old_state: Any, new: Client,
                     tell: bool) -> None:
    """``bind_client``'s move: ``new`` wants ``key`` once ``old``'s submission of it is in
    (a round trip on ``old``'s ordered outbox), then ``old`` lets go once ``new``'s want is
    in. A round trip that fails (a client closing) is logged and the move goes on."""
    from shoal.protocol._messages import UpdateGraph

    try:
        if tell:
            if old is not None and old.status == "running":
                await old._request_within("who_has", _MOVE_WITHIN, keys=[key])
            new._send(UpdateGraph([], [key], {}))
        await new._request_within("who_has", _MOVE_WITHIN, keys=[key])
    except Exception as exc:
        logger.warning("bind_client of %r: a round trip to the scheduler failed (%r); the "
                       "hold moves all the same", key, exc)
    finally:
        if old is not None:
            old._decref(key, old_state)


def _log_move_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("bind_client failed", exc_info=task.exception())


class Future(TaskRef):
    """A remote result. ``result()`` waits for it; dropping every Future of a key releases it.

    Subclasses dask's ``TaskRef`` so dask graphs (``delayed(f)(future)``) see it as a
    dependency.
    """

    __slots__ = ("__weakref__", "_client", "_state")
    _client: Client
    _state: FutureState

    def __init__(self, key: Any, client: Client | None = None, state: FutureState | None = None,
                 _id: Any = None) -> None:
        """A handle on ``key`` held by ``client`` (default: the current client, as dask's;
        ``_id`` is dask's and ignored).

        Raises:
            ValueError: no client was given and none is running."""
        if client is None:
            from shoal.client._current import get_client

            client = get_client()
        super().__init__(key)
        self._client = client
        client._hold(key, state, self)  # sets self._state

    @classmethod
    def _new(cls, key: Any, client: Client, state: FutureState) -> Future:
        """A future whose reference the caller has already counted (bulk creation)."""
        fut = cls.__new__(cls)
        fut.key = key
        fut._client = client
        fut._state = state
        return fut

    @classmethod
    def _unbound(cls, key: Any) -> Future:
        """A Future of ``key`` unpickled outside any client's reading (``_returned``): it
        holds nothing, and says so when used, until ``bind_client``."""
        fut = cls.__new__(cls)
        fut.key = key
        fut._client = None  # type: ignore[assignment]
        fut._state = UNBOUND
        return fut

    # --- status -------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        return self._client

    def bind_client(self, client: Client) -> None:
        """dask's ``Future.bind_client``: hold the key through ``client`` (of the same
        cluster) from now on. shoal binds a Future to a client when it is made (the
        current one, as dask binds late), so this moves the hold: ``client`` tells the
        scheduler it wants the key, and the former client lets go once that is in (after
        its own submission of the key), so the key is never without a holder. From a
        user thread this waits for those two round trips; on shoal's loop (an
        asynchronous client) they run in the background."""
        old = self._client
        if client is old:
            return
        key = self.key
        old_state = getattr(self, "_state", None)
        tell = not client._held(key)
        client._hold(key, None, self)
        self._client = client
        if not tell and old is None:
            return
        move = _move_hold(key, old, old_state, client, tell)
        if _loop.in_loop_thread():
            task = asyncio.get_running_loop().create_task(move)
            task.add_done_callback(_log_move_failure)
        else:
            _loop.run_sync(move)  # ends: two round trips, each within _MOVE_WITHIN

    @property
    def executor(self) -> Client:
        """The client, as dask's ``Future.executor`` (concurrent.futures' word for it)."""
        return self._client

    @property
    def status(self) -> str:
        """'pending', 'finished', 'error', 'cancelled' or 'lost'."""
        return self._state.status

    @property
    def type(self) -> type | None:
        """The result's class once finished (as dask's), else None. A class this process
        cannot find by its name (one defined inside a function) is the one the worker sent
        with a big result, or read from a small result that came with the report; None if
        neither (a class that does not pickle)."""
        st = self._state
        typename = st.typename
        found = resolve(typename)
        if found is None and type(typename) is SentTypeName:
            found = typename.load()
        if found is None and st.status == "finished" and st.inline is not None:
            try:
                found = type(st.inline_value())
            except Exception as exc:  # not loadable here: None, as dask's
                logger.debug("Future.type of %r: its result does not load here: %r",
                             self.key, exc)
            if found is not None and type_name(found) != st.typename:
                found = None  # (not the class the worker named)
        return found

    def done(self) -> bool:
        """True once the result is in memory, failed, or was cancelled."""
        return self._state.done()

    def cancelled(self) -> bool:
        return self._state.status == "cancelled"

    # --- results ----------------------------------------------------------------------------

    def result(self, timeout: float | str | None = None) -> Any:
        """Wait for the result and return it; raise the task's exception if it failed.
        With an asynchronous client, an awaitable of it (``await future`` is the same).
        ``timeout``: seconds, or a duration as dask reads it (``"1s"``).

        Raises:
            TimeoutError: not done within ``timeout``.
            CancelledError: the future was cancelled.
        """
        if timeout is not None and isinstance(timeout, str):  # (None: no call at all)
            timeout = duration(timeout)
        client = self._client
        return (client if client is not None else self._live())._result(self, timeout)

    def exception(self, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The exception the task raised, or None if it succeeded (an awaitable of it with
        an asynchronous client, or ``asynchronous=True``)."""
        return self._live()._failure(self, duration(timeout), "exception", **kwargs)

    def traceback(self, timeout: float | str | None = None, **kwargs: Any) -> Any:
        """The remote traceback of a failed task (a traceback object), or None (an
        awaitable of it with an asynchronous client, or ``asynchronous=True``)."""
        return self._live()._failure(self, duration(timeout), "traceback", **kwargs)

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call ``fn(future)`` once the future is done (on shoal's event-loop thread;
        exceptions in it are logged, not raised)."""
        self._live()._add_callback(self, fn)

    def cancel(self, reason: Any = None, msg: Any = None, **kwargs: Any) -> Any:
        """Cancel the computation of this key (if nothing else needs it, it stops);
        ``reason`` and ``msg`` as in :meth:`Client.cancel`. Returns what the client's
        ``cancel`` does: None, or an awaitable with an asynchronous client (as dask's)."""
        return self._live().cancel([self], reason=reason, msg=msg, **kwargs)

    def retry(self, **kwargs: Any) -> Any:
        """Run a failed task (and its failed inputs) again; an awaitable with an
        asynchronous client, as :meth:`cancel`."""
        return self._live().retry([self], **kwargs)

    def _live(self) -> Client:
        """The client, while this future holds its key.

        Raises:
            FutureCancelledError: ``release()`` was called (as dask's, whose released
                future is cancelled).
        """
        client = self._client
        if client is None and self._state is UNBOUND:
            raise RuntimeError(
                f"future {self.key!r} was unpickled outside a client's reading of results "
                "(pickle.loads in this program): it is not bound to a client, so it has no "
                "result here. Call future.bind_client(client) first, or pass it to "
                "client.submit as an argument")
        if client is None:
            raise FutureCancelledError(
                f"future {self.key!r} was released (future.release()): it no longer holds "
                "its result; keep a Future you still need, or submit the work again")
        return client

    def release(self) -> None:
        """Drop this future's hold on the result now rather than at garbage collection;
        its result, exception and callbacks are not available after that."""
        client, self._client = self._client, None  # type: ignore[assignment]
        if client is not None:
            client._decref(self.key, self._state)

    # --- dask integration ---------------------------------------------------------------------

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.key)

    def __reduce__(self) -> Any:
        # A Future of the client that reads it back from a result, else a TaskRef of the key
        # (a task's argument, which its graph resolves): see _returned.
        return _returned.rebuild, (self.key,)

    def __del__(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client._decref(self.key, self._state)
            except Exception:  # garbage collection must not raise
                logger.debug("releasing future %r on garbage collection failed", self.key,
                             exc_info=True)

    def __await__(self) -> Any:
        """``await future``: its result, without blocking the awaiting loop (whatever the
        client's mode)."""
        return self._live()._result(self, None, asynchronous=True).__await__()

    def __repr__(self) -> str:
        extra = f", type: {self._state.typename}" if self._state.typename else ""
        return f"<Future: {self._state.status}{extra}, key: {self.key}>"

    def _repr_html_(self) -> str:
        import html

        return (
            f"<strong>Future: {html.escape(str(self.key))}</strong> "
            f"<span>status: {self._state.status}</span>"
            + (f", <span>type: {html.escape(self._state.typename)}</span>" if self._state.typename else "")
        )

    # As dask's Futures: each Future object is equal (and hashes equal) only to itself, even
    # beside another Future of the same key (compare ``.key`` for that). TaskRef's key-based
    # equality is overridden both ways: Python asks the subclass first.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other


def line_of(function: Any, name: str) -> int:
    """The line where ``function`` first loads the attribute ``name`` (the line of a call
    whose effect ``_interrupts`` must know happened or not)."""
    for ins in dis.get_instructions(function):
        if ins.argval == name and ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            assert ins.positions is not None and ins.positions.lineno is not None
            return ins.positions.lineno
    raise LookupError(f"{function.__qualname__} loads no {name!r}")


_DECREF_LINE = line_of(Future.__del__, "_decref")


def _resume_del(frame: Any, line: int) -> None:
    """An interrupt came in ``Future.__del__`` before its ``_decref`` call (the only
    eval-breaker check on that line is after the call returns): give the reference back."""
    if line < _DECREF_LINE:
        Future.__del__(frame.f_locals["self"])


_interrupts.resume_with(Future.__del__, _resume_del)
