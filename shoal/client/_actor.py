"""Actors as callers see them: the ``Actor`` proxy, the ``ActorFuture`` of a method call,
and the connections that carry calls straight to the worker holding the actor.

Owns: turning attribute access on a proxy into calls (methods return ActorFutures,
attribute reads return the value), one connection per worker address per process (on
shoal's background loop), matching answers to calls, and failing every call that waits on
a connection that closed, with an error naming the actor and the worker. Also
``NewActor``, the payload that builds an actor in a task on its worker.
Must not know: the scheduler (calls never go through the task graph) or a worker's
internals beyond the wire messages. It works the same in a client process and in tasks,
and imports neither the Client nor the worker unless they are already loaded.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import functools
import itertools
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from dask._task_spec import TaskRef

from shoal import _loop
from shoal.comm import Connection, connect
from shoal.protocol._errors import error_to_exception
from shoal.protocol._messages import PROTOCOL_VERSION, ActorCall, ActorResult, Hello, Message
from shoal.protocol._serialize import Serialized, dumps, loads

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
_MISSING = object()


class Actor(TaskRef):
    """Controls an object that lives on one worker (dask.distributed's ``Actor``).

    Create one with ``client.submit(Counter, actor=True).result()``. Calling a method of
    the proxy returns an :class:`ActorFuture` at once; reading an attribute returns its
    value (an awaitable of it when the holding Client is asynchronous). Calls go straight to the worker holding the object and run there, one at a
    time, on that worker's actor thread. An Actor passed to a task arrives as a working
    proxy. In the process of a Client that holds the actor's key, the proxy also holds
    that key, so the actor lives while the proxy does.

    Raises (on a call, from ``result()``):
        RuntimeError: the worker holding the actor was lost, or the actor was released.
        The method's own exception, with the remote traceback, when it raised.
    """

    __slots__ = ("_address", "_cls", "_future")

    def __init__(self, cls: type, address: str, key: Any, worker: Any = None) -> None:
        super().__init__(key)
        self._cls = cls
        self._address = address
        # Built on the worker (``worker`` given): no Client's hold, or the worker's copy
        # would keep the actor alive for ever.
        self._future = _holding_future(key) if worker is None else None

    def __reduce__(self) -> Any:
        return Actor, (self._cls, self._address, self.key)

    def __dask_tokenize__(self) -> Any:
        return ("Actor", self.key)

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self.key}>"

    def __dir__(self) -> list[str]:
        names = set(dir(type(self)))
        names.update(n for n in dir(self._cls) if not n.startswith("_"))
        return sorted(names)

    @property
    def client(self) -> Any:
        """The Client whose future keeps this actor alive (None inside tasks)."""
        return None if self._future is None else self._future.client

    def __getattr__(self, name: str) -> Any:
        dunder = name.startswith("__") and name.endswith("__")
        probe = name.startswith(("_repr_", "_ipython_")) and not hasattr(self._cls, name)
        if dunder or probe:  # Python's and IPython's protocol lookups are not remote calls
            raise AttributeError(name)
        self._check_alive()
        attr = getattr(self._cls, name, _MISSING)
        method = attr is not _MISSING and callable(attr)
        host = _actor_thread_host(self._address)
        if host is not None:
            return _call_here(host, self.key, name, method)
        if method:
            assert callable(attr)

            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> ActorFuture[Any]:
                self._check_alive()
                return _send(self, name, dumps((args, kwargs)))

            return call
        read = _send(self, name, None)
        client = self.client
        if client is not None and client.asynchronous:
            return read  # ``await actor.attribute``, as with dask's asynchronous client
        return read.result()  # ends: the worker's reply, or the actor channel's close fails it

    def _check_alive(self) -> None:
        fut = self._future
        if fut is not None and fut.status in ("error", "lost", "cancelled"):
            detail = ""
            if fut.status == "error":
                exc = fut.client._failure_of(fut, "exception")  # done: no waiting
                detail = f": {exc}" if exc is not None else ""
            raise RuntimeError(
                f"actor {self.key!r} ({self._cls.__name__}) on {self._address} cannot be "
                f"used: its key is {fut.status}{detail}"
            )


class BaseActorFuture(abc.ABC, Awaitable[T]):
    """The result of a method call on an Actor: ``result()`` waits for it; awaitable."""

    __slots__ = ()

    @abc.abstractmethod
    def result(self, timeout: Any = None) -> T: ...

    @abc.abstractmethod
    def done(self) -> bool: ...

    def __repr__(self) -> str:
        return "<ActorFuture>"


class ActorFuture(BaseActorFuture[T]):
    """A method call on an actor, running or finished (dask.distributed's ``ActorFuture``).

    ``result(timeout=None)`` waits for the value and returns it, or raises what the
    method raised (with the remote traceback), ``TimeoutError`` when ``timeout`` seconds
    passed, or ``RuntimeError`` naming the actor and worker when the worker was lost.
    ``await future`` works on any event loop.
    """

    __slots__ = ("_cf", "_label", "_outcome", "_value")

    def __init__(self, label: str = "") -> None:
        self._label = label
        # Set (on shoal's loop) to ("ok", Serialized) | ("error", error dict) |
        # ("value", object) | ("raise", exception); decoded by the caller's thread.
        self._cf: concurrent.futures.Future[tuple[str, Any]] = concurrent.futures.Future()
        self._value: Any = _MISSING
        self._outcome: tuple[str, Any] | None = None

    def done(self) -> bool:
        return self._cf.done()

    def result(self, timeout: Any = None) -> T:
        if not self._cf.done() and _loop.in_loop_thread():
            raise RuntimeError(
                "ActorFuture.result() was called inside shoal's event loop (for example in "
                "a done-callback), where it would wait forever; use `await future` there"
            )
        if timeout is not None:
            from dask.utils import parse_timedelta

            timeout = parse_timedelta(timeout)
        try:
            outcome = _loop.result_of(self._cf, timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{self._label} did not finish within {timeout} s") from None
        return self._unwrap(outcome)

    def _unwrap(self, outcome: tuple[str, Any]) -> T:
        kind, value = outcome
        if kind == "ok":
            if self._value is _MISSING:
                self._value = loads(value)
            return self._value  # type: ignore[no-any-return]
        if kind == "value":
            return value  # type: ignore[no-any-return]
        if kind == "error":
            raise error_to_exception(value)
        raise value

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        if not self._cf.done():
            await asyncio.wrap_future(self._cf)
        return self._unwrap(self._cf.result())

    def _when_done(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(self)`` once done (at once if it is; else on the thread settling it)."""
        self._cf.add_done_callback(lambda _cf: fn(self))

    def _settle(self, kind: str, value: Any) -> None:
        if not self._cf.done():
            self._cf.set_result((kind, value))

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<ActorFuture: {self._label}, {state}>"


# --- calls ------------------------------------------------------------------------------------


def _holding_future(key: Any) -> Any:
    """A Future of ``key`` on a running Client of this process that holds the key, so the
    proxy keeps the actor alive; None when there is none (inside tasks, usually)."""
    from shoal.client import _current

    for ref in reversed(_current.clients):
        client = ref()
        if client is not None and client.status == "running" and client._held(key):
            from shoal.client._future import Future

            return Future(key, client)
    return None


def _actor_thread_host(address: str) -> Any:
    """The worker's actor host when this thread is the actor thread of the worker at
    ``address``: an actor calling an actor on its own worker runs the call directly
    (queueing it behind itself would wait forever)."""
    module = sys.modules.get("shoal.worker._actors")
    if module is None:
        return None
    host = module.running_actor_host()
    return host if host is not None and host.address == address else None


def _call_here(host: Any, key: Any, name: str, method: bool) -> Any:
    obj = host.objects.get(key, _MISSING)
    if obj is _MISSING:
        raise RuntimeError(f"actor {key!r} is not held by worker {host.address} any more")
    value = getattr(obj, name)
    if not method:
        return value

    def call(*args: Any, **kwargs: Any) -> ActorFuture[Any]:
        fut: ActorFuture[Any] = ActorFuture(f"{type(obj).__name__}.{name}() of actor {key!r}")
        try:
            fut._settle("value", value(*args, **kwargs))
        except Exception as exc:
            fut._settle("raise", exc)
        return fut

    return call


_request_ids = itertools.count(1)


def _send(actor: Actor, name: str, args: Serialized | None) -> ActorFuture[Any]:
    what = f"{actor._cls.__name__}.{name}{'()' if args is not None else ''}"
    fut: ActorFuture[Any] = ActorFuture(f"{what} of actor {actor.key!r}")
    msg = ActorCall(next(_request_ids), actor.key, name, args)
    _channel(actor._address).submit(msg, fut, f"actor {actor.key!r} ({what})")
    return fut


def _security() -> Any:
    """The credentials of this process's newest running Client, else None (the process's
    default: in a worker process, the worker's own)."""
    from shoal.client import _current

    for ref in reversed(_current.clients):
        client = ref()
        if client is not None and client.status == "running":
            return client.security
    return None


_channels: dict[str, _Channel] = {}
_channels_lock = threading.Lock()


def _channel(address: str) -> _Channel:
    with _channels_lock:
        ch = _channels.get(address)
        if ch is None or ch.state == "closed":
            ch = _channels[address] = _Channel(address)
        return ch


class _Channel:
    """This process's connection to one worker for actor calls. States: new →
    connecting → open → closed; a closed channel is replaced by a new one on the next
    call (which fails at once if the worker is gone)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.state = "new"
        self.conn: Connection | None = None
        # (message, future, label) from any thread, sent in order by _drain on the loop.
        self.outbox: collections.deque[tuple[ActorCall, ActorFuture[Any], str]] = collections.deque()
        self.pending: dict[int, tuple[ActorFuture[Any], str]] = {}
        self._scheduled = False
        self._connecting: asyncio.Task[None] | None = None

    def submit(self, msg: ActorCall, fut: ActorFuture[Any], label: str) -> None:
        self.outbox.append((msg, fut, label))
        if not self._scheduled:
            self._scheduled = True
            _loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        if self.state == "closed":
            self._fail_outbox("was closed")
            return
        if self.state == "new":
            self.state = "connecting"
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        if self.state != "open" or self.conn is None:
            return  # _connect drains once connected
        msgs: list[Message] = []
        outbox = self.outbox
        while outbox:
            msg, fut, label = outbox.popleft()
            self.pending[msg.request_id] = (fut, label)
            msgs.append(msg)
        self.conn.send_many(msgs)

    async def _connect(self) -> None:
        try:
            conn = await connect(self.address, timeout=CONNECT_TIMEOUT, security=_security())
        except OSError as exc:
            self._close(f"could not be opened ({exc})")
            return
        conn.set_handler(self._on_message)
        conn.send(Hello("client", PROTOCOL_VERSION, f"actor-caller-{os.getpid()}"))
        self.conn = conn
        self.state = "open"
        self._drain()

    def _on_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            self._close("closed")
            return
        for msg in batch:
            if type(msg) is ActorResult:
                entry = self.pending.pop(msg.request_id, None)
                if entry is not None:
                    entry[0]._settle("ok" if msg.ok else "error", msg.value)

    def _close(self, reason: str) -> None:
        self.state = "closed"
        with _channels_lock:
            if _channels.get(self.address) is self:
                del _channels[self.address]
        pending, self.pending = self.pending, {}
        for fut, label in pending.values():
            fut._settle("raise", _lost(label, self.address, reason))
        self._fail_outbox(reason)

    def _fail_outbox(self, reason: str) -> None:
        while self.outbox:
            _msg, fut, label = self.outbox.popleft()
            fut._settle("raise", _lost(label, self.address, reason))


def _lost(label: str, address: str, reason: str) -> RuntimeError:
    return RuntimeError(
        f"Worker holding Actor was lost: the call to {label} did not complete because the "
        f"connection to worker {address}, which holds the actor, {reason}. The actor's "
        "state lived only on that worker; create the actor again."
    )


# --- creating actors ---------------------------------------------------------------------------


class NewActor:
    """The function of an ``actor=True`` task: builds the object in the task, hands it to
    its worker's actor host, and returns the :class:`Actor` proxy as the task's result
    (so the result that travels, and that dependent tasks receive, is the proxy)."""

    __slots__ = ("cls",)

    def __init__(self, cls: Callable[..., Any]) -> None:
        self.cls = cls

    @property
    def __name__(self) -> str:
        return getattr(self.cls, "__name__", "actor")

    def __call__(self, *args: Any, **kwargs: Any) -> Actor:
        from shoal.worker._actors import host_of_this_task

        host, key = host_of_this_task()
        obj = self.cls(*args, **kwargs)
        proxy = Actor(type(obj), host.address, key, worker=host)
        host.adopt(key, obj)
        return proxy

    def __reduce__(self) -> Any:
        return NewActor, (self.cls,)

    def __repr__(self) -> str:
        return f"NewActor({self.__name__})"
