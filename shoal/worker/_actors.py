"""A worker's actors: the objects, the one thread that runs their methods, and the calls
arriving from callers (clients and tasks) on the worker's listening socket.

Owns: actor objects by key, the "shoal-actor" thread (one per worker, started with the
first actor: methods of this worker's actors run there one at a time, in arrival order,
and never take a task thread), unpickling arguments and pickling results on that thread
(like task results), and answering callers. ``async def`` methods run on the worker's
event loop instead, as in dask.distributed. Whether a call runs or is refused is the
:class:`~shoal.worker._actor_book.ActorBook`'s decision.
Must not know: the scheduler or the worker's task state; the Worker shell hands it calls,
released keys and its loop.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import queue
import threading
import time
from typing import Any

from shoal.comm import Connection
from shoal.protocol._errors import exception_to_error
from shoal.protocol._messages import ActorCall, ActorResult
from shoal.protocol._serialize import dumps
from shoal.worker._actor_book import (
    ActorBook,
    ActorCreated,
    ActorsReleased,
    CallFinished,
    CallReceived,
    RefuseCall,
    RunCall,
)
from shoal.worker._execute import (
    _user_frames,
    current_task_key,
    current_worker_address,
    unpickle,
)

logger = logging.getLogger("shoal.worker")

Key = Any

_HOSTS: dict[str, ActorHost] = {}  # worker address -> its actor host, in this process
_local = threading.local()
_GONE = object()
_LATER = object()  # an async method: it answers when it finishes on the loop


def running_actor_host() -> ActorHost | None:
    """The host whose actor thread this is, or None."""
    return getattr(_local, "host", None)


def host_of_this_task() -> tuple[ActorHost, Key]:
    """The actor host of the worker running the current task, and the task's key.

    Raises:
        RuntimeError: not called from a task running on a shoal worker.
    """
    address = current_worker_address()
    host = _HOSTS.get(address) if address is not None else None
    key = current_task_key()
    if host is None or key is None:
        raise RuntimeError(
            "an actor can only be created by a task on a shoal worker: use "
            "client.submit(cls, actor=True)"
        )
    return host, key


class ActorHost:
    """The actors of the worker at ``address``; methods other than :meth:`adopt` run on
    the worker's event loop ``loop``."""

    def __init__(self, address: str, loop: asyncio.AbstractEventLoop) -> None:
        self.address = address
        self.book = ActorBook(address)
        self.objects: dict[Key, Any] = {}
        self._loop = loop
        self._calls: dict[int, tuple[Connection, ActorCall]] = {}
        self._ids = itertools.count(1)
        self._queue: queue.SimpleQueue[tuple[int, ActorCall] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done: list[tuple[int, bool, Any]] = []
        self._wakeup_pending = False
        self._closed = False
        _HOSTS[address] = self

    # --- from the task thread that built an actor -------------------------------------------

    def adopt(self, key: Key, obj: Any) -> None:
        """Hold ``obj`` as actor ``key``. Runs in the task thread, before the task's result
        is reported, so the book knows the actor before any caller can."""
        self.objects[key] = obj
        self._loop.call_soon_threadsafe(self._apply, [ActorCreated(key, type(obj).__name__)])

    # --- on the loop ----------------------------------------------------------------------------

    def on_call(self, conn: Connection, msg: ActorCall) -> None:
        call = next(self._ids)
        self._calls[call] = (conn, msg)
        if self._closed:  # the actor thread is stopping: nothing would run the call
            self._refuse(call, f"worker {self.address} is closing; its actors are gone")
            return
        self._apply([CallReceived(call, msg.key, msg.name)])

    def release(self, keys: list[Key]) -> None:
        """The worker dropped ``keys``; the actors among them go."""
        gone = [k for k in keys if k in self.objects]
        if gone:
            for key in gone:
                self.objects.pop(key, None)
            self._apply([ActorsReleased(gone)])

    def close(self) -> None:
        """Drop every actor; calls still queued on the actor thread are refused."""
        self._closed = True
        if _HOSTS.get(self.address) is self:
            del _HOSTS[self.address]
        if self.objects:
            keys = list(self.objects)
            self.objects.clear()
            self._apply([ActorsReleased(keys)])
        if self._thread is not None:
            self._queue.put(None)

    def _apply(self, events: list[Any]) -> None:
        for cmd in self.book.handle(*events):
            if type(cmd) is RunCall:
                entry = self._calls.get(cmd.call)
                if entry is not None:
                    self._start_thread()
                    self._queue.put((cmd.call, entry[1]))
            elif type(cmd) is RefuseCall:
                self._refuse(cmd.call, cmd.message)

    def _refuse(self, call: int, message: str) -> None:
        entry = self._calls.get(call)
        key = entry[1].key if entry is not None else None
        error = exception_to_error(RuntimeError(message), None, key, self.address, time.time())
        self._answer(call, False, error)

    def _answer(self, call: int, ok: bool, value: Any) -> None:
        entry = self._calls.pop(call, None)
        if entry is not None:  # None: already refused (its actor was released meanwhile)
            conn, msg = entry
            conn.send(ActorResult(msg.request_id, ok, value))

    def _drain(self) -> None:
        with self._lock:
            batch, self._done = self._done, []
            self._wakeup_pending = False
        for call, ok, value in batch:
            self._answer(call, ok, value)
        self._apply([CallFinished(call) for call, _, _ in batch])

    # --- the actor thread -----------------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shoal-actor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        _local.host = self
        while True:
            item = self._queue.get()  # ends: close() puts None
            if item is None:
                return
            call, msg = item
            ok, value = self._execute(call, msg)
            if value is not _LATER:
                self._post(call, ok, value)

    def _execute(self, call: int, msg: ActorCall) -> tuple[bool, Any]:
        obj = self.objects.get(msg.key, _GONE)
        try:
            if obj is _GONE:
                raise RuntimeError(f"actor {msg.key!r} was released on worker {self.address}")
            attr = getattr(obj, msg.name)
            if msg.args is None:
                value = attr
            else:
                args, kwargs = unpickle(msg.args)
                if inspect.iscoroutinefunction(attr):
                    self._run_on_loop(call, msg, attr(*args, **kwargs))
                    return True, _LATER
                value = attr(*args, **kwargs)
        except BaseException as exc:  # a method's SystemExit must not end the actor thread
            return False, self._error(exc, msg)
        return self._pickled(value, msg)

    def _run_on_loop(self, call: int, msg: ActorCall, coro: Any) -> None:
        done = asyncio.run_coroutine_threadsafe(coro, self._loop)

        def finished(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                self._post(call, False, self._error(exc, msg))
            else:
                self._post(call, *self._pickled(f.result(), msg))

        done.add_done_callback(finished)

    def _pickled(self, value: Any, msg: ActorCall) -> tuple[bool, Any]:
        try:
            return True, dumps(value)
        except Exception as exc:
            unsendable = TypeError(
                f"{msg.name} of actor {msg.key!r} returned a {type(value).__name__} that "
                f"cannot be sent to the caller: {exc}"
            )
            return False, self._error(unsendable, msg)

    def _error(self, exc: BaseException, msg: ActorCall) -> dict[str, Any]:
        return exception_to_error(exc, _user_frames(exc.__traceback__), msg.key, self.address,
                                  time.time())

    def _post(self, call: int, ok: bool, value: Any) -> None:
        with self._lock:
            self._done.append((call, ok, value))
            wake = not self._wakeup_pending
            self._wakeup_pending = True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed: the worker is shutting down
                logger.debug("actor call %d finished after worker %s closed", call, self.address)
