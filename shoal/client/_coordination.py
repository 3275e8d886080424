"""The client's side of the coordination primitives: finding a client, sending a request
and waiting for its one reply, and values that cross as data or as futures.

Owns: request ids and pending replies of coordination requests (answered on the loop, in
message order), the errors those replies carry, and turning a future key in a reply into a
Future of this client before any later message about that key is read. The scheduler
decides everything (shoal/scheduler/coordination); nothing here polls: a wait ends with
the reply, which comes at the latest at the request's deadline, or with the connection.
A client in the scheduler's own process may have a request applied from the calling
thread instead of sending it (shoal/client/_direct.py, whose order rule ``call``, ``ask``
and ``send`` keep by counting what they send on the connection); its answer settles the
same pending Future.

Two ways to wait for a reply: ``call`` blocks the calling thread; ``ask`` is a coroutine
of the caller's event loop (an asynchronous client), woken by the reply, with no thread
per waiting call. A wait that ends without the answer (an ``ask`` cancelled; a ``call``
interrupted by Ctrl-C) withdraws its request (``CoordWithdraw``) and gives back an answer
that came all the same: ``undo`` if the answer was there already, ``late`` if it comes
after the withdrawal was sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.client import _channel, _direct
from shoal.client._future import Future
from shoal.protocol._coord_messages import CoordKeysReceived, CoordReply, CoordWithdraw
from shoal.protocol._messages import Message
from shoal.protocol._serialize import Serialized, dumps, loads

if TYPE_CHECKING:
    from shoal.client._client import Client

Decode = Callable[["Client", int, Any], Any]
Undo = Callable[["Client", Any], None]

logger = logging.getLogger("shoal.client")


class NoClientError(ValueError, RuntimeError):
    """A primitive was used where no shoal Client exists. A ValueError, as shoal asks, and
    a RuntimeError, as dask.distributed raises for an uninitialized primitive."""


_ERRORS: dict[str, type[Exception]] = {
    "TimeoutError": TimeoutError,
    "ValueError": ValueError,
    "RuntimeError": RuntimeError,
    "NotImplementedError": NotImplementedError,
    "TypeError": TypeError,
}


def find_client(client: Client | None, what: str) -> Client:
    """``client`` if given, else the current one (the task's worker client inside a task).

    Raises:
        ValueError: no client is open in this process.
    """
    if client is not None:
        return client
    import shoal  # the public get_client: inside a task, the worker's client

    try:
        return shoal.get_client()
    except ValueError:
        raise NoClientError(
            f"{what} needs a shoal Client to reach the scheduler and none is running here: "
            "start one with shoal.Client(...) first, or pass client=..."
        ) from None


class AwaitableSelf:
    """dask's asynchronous constructor: ``sem = await Semaphore(...)`` gives the object
    back (shoal makes a primitive on the scheduler at its first use, so nothing waits)."""

    def __await__(self) -> Generator[Any, None, Any]:
        async def itself() -> Any:
            return self

        return itself().__await__()


class ClientProperty:
    """dask's ``client`` attribute of a Queue, Event or Variable: the one given, else the
    current client (kept from then on), else None."""

    _client: Client | None

    @property
    def client(self) -> Client | None:
        if self._client is None:
            try:
                self._client = find_client(None, type(self).__name__)
            except NoClientError:
                return None
        return self._client


def _pending(client: Client) -> dict[int, tuple[concurrent.futures.Future[Any], Decode | None,
                                              Undo | None]]:
    return client._coord_pending


def _start(client: Client, make: Callable[[int], Message], decode: Decode | None,
           late: Undo | None) -> tuple[int, concurrent.futures.Future[Any], int]:
    """Register the request ``make(request_id)`` and send it, in order with the client's
    other messages: its id, the Future its reply settles, and its number on the
    connection for :func:`_finish` (0: applied directly, nothing to count). ``late``:
    what :func:`on_reply` does with an answer whose caller stopped waiting."""
    client._check_open()
    _channel.before_client_message(client)
    rid = next(client._request_ids)
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    pending = _pending(client)
    pending[rid] = (fut, decode, late)
    # The client marks itself closed before failing what is pending: if it closed after
    # the check above, either this entry was failed, or the check below sees it.
    if not client._usable():
        pending.pop(rid, None)
        client._check_open()
    msg = make(rid)
    answer_now = _direct.apply(client, msg)
    if answer_now is not None:  # applied: answered now, or later on the connection
        for cmd in answer_now:
            on_reply(client, _as_reply(cmd))
        return rid, fut, 0
    return rid, fut, _direct.send_on_connection(
        client, lambda: _queue_if_awaited(client, rid, msg))


def _finish(client: Client, fut: concurrent.futures.Future[Any], number: int) -> None:
    """The wait for a request sent on the connection as ``number`` (not 0) ended."""
    _channel.client_sent(client, answered=True)
    if fut.done() and not fut.cancelled() and not isinstance(fut.exception(), ConnectionError):
        _direct.answered(client, number)  # an error the scheduler answered counts


def call(client: Client, make: Callable[[int], Message], decode: Decode | None = None,
         undo: Undo | None = None, late: Undo | None = None) -> Any:
    """Send the request ``make(request_id)`` in order with the client's other messages and
    wait for its reply, blocking the calling thread. ``decode`` runs on the loop, as the
    reply is read.

    Interrupted while it waits (Ctrl-C; a blocking call in a coroutine whose task is
    cancelled), the request is withdrawn as :func:`ask`'s is, and ``undo`` / ``late`` give
    back what its answer gave.

    Raises:
        the error the scheduler answered with (TimeoutError, ValueError...), or
        ConnectionError: the connection closed before the reply came.
    """
    if _loop.in_loop_thread():
        raise RuntimeError(
            "a blocking shoal call was made from inside shoal's event loop (for example in a "
            "done-callback); call it from another thread"
        )
    rid, fut, number = _start(client, make, decode, late)
    try:
        return _loop.result_of(fut)  # ends: answered, or failed with the client's connection
    except BaseException as exc:
        if not isinstance(exc, Exception):  # interrupted: not the answer's error
            _withdraw(client, rid, fut, undo)
        raise
    finally:
        if number:  # (0: applied directly, nothing to count)
            _finish(client, fut, number)


async def ask(client: Client, make: Callable[[int], Message], decode: Decode | None = None,
              undo: Undo | None = None, late: Undo | None = None) -> Any:
    """:func:`call` for a coroutine on the caller's event loop (an asynchronous client):
    nothing blocks and no thread waits; the reply, read on shoal's loop, wakes it.

    Cancelled while it waits, the request is withdrawn (the scheduler drops it if it still
    waits) and whatever its answer gives if it came all the same is given back, with the
    decoded value (release the lease, return the queue items): ``undo(client, value)``
    here if the answer came already; ``late(client, value)`` on shoal's loop if it comes
    after the withdrawal (None: the withdrawal itself gives it back, or there is nothing
    to give back).

    Raises:
        as :func:`call`.
    """
    rid, fut, number = _start(client, make, decode, late)
    if not fut.done():
        try:
            await _settled(fut)  # ends: the reply, or the connection's loss, settles fut
        except asyncio.CancelledError:
            _withdraw(client, rid, fut, undo)
            raise
    if number:
        _finish(client, fut, number)
    return fut.result()  # ends: done (settled above, or before the wait)


def _settled(fut: concurrent.futures.Future[Any]) -> asyncio.Future[None]:
    """A future of the running loop, done once ``fut`` (settled on shoal's loop) is."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: Any) -> None:
        try:
            loop.call_soon_threadsafe(_wake, waiter)
        except RuntimeError:  # the caller's loop is closed: nobody awaits it any more
            logger.debug("a coordination reply came after its caller's event loop closed")

    fut.add_done_callback(wake)
    return waiter


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _withdraw(client: Client, rid: int, fut: concurrent.futures.Future[Any],
              undo: Undo | None) -> None:
    """The caller of request ``rid`` stopped waiting: no answer yet, the scheduler drops
    it (and :func:`on_reply` gives back an answer already on its way); answered, its
    answer is given back here. (Nothing marks a pending Future running: cancel fails only
    on one that is done.)"""
    if fut.cancel():
        try:
            send(client, CoordWithdraw(rid))
        except Exception as exc:  # a client closed: its requests went with its connection
            logger.debug("withdrawing coordination request %d: %r", rid, exc)
        return
    try:
        value = fut.result(0)  # (done: the cancel failed)
    except Exception as exc:  # an error answer gave nothing to give back
        logger.debug("cancelled coordination request %d had failed: %r", rid, exc)
        return
    if undo is not None:
        try:
            undo(client, value)
        except Exception:  # the interrupt or cancellation goes on; the scheduler frees it
            logger.exception("giving back the answer to cancelled coordination request %d",
                             rid)  # with the connection


def _queue_if_awaited(client: Client, rid: int, msg: Message) -> None:
    """Queue the request unless its wait already ended: a connection lost since ``call``
    registered it failed it (and dropped the outbox), and a request whose caller heard
    it failed must never reach the next session (a Lock granted to nobody)."""
    with client._lock:  # (the loss fails pending requests under this lock)
        awaited = rid in client._coord_pending
        if awaited:
            client._outbox.append(msg)
    if awaited:
        client._schedule_drain()


def _as_reply(cmd: Any) -> CoordReply:
    from shoal.scheduler.coordination._events import Fail

    if type(cmd) is Fail:
        return CoordReply(cmd.rid, False, [cmd.kind, cmd.message])
    return CoordReply(cmd.rid, True, cmd.value)


def send(client: Client, msg: Message) -> None:
    """A message that gets no reply (release, delete...), in order with the others."""
    client._check_open()
    _channel.before_client_message(client)
    if _direct.apply(client, msg) is not None:
        return  # applied
    _direct.send_on_connection(client, lambda: client._send(msg))
    _channel.client_sent(client, answered=False)


def answer(reply: CoordReply) -> Any:
    """The value of a reply read in the caller's thread (on a channel).

    Raises:
        the error the scheduler answered with.
    """
    if not reply.ok:
        kind, text = reply.value
        raise _ERRORS.get(kind, RuntimeError)(text)
    return reply.value


def on_reply(client: Client, msg: CoordReply) -> None:
    """On the loop: the scheduler answered a request."""
    entry = _pending(client).pop(msg.request_id, None)
    if entry is None:
        return
    fut, decode, late = entry
    if not msg.ok:
        try:
            answer(msg)
        except Exception as exc:
            _fail(fut, exc)  # (cancelled: nothing was given, or the withdrawal's answer)
        return
    try:
        value = decode(client, msg.request_id, msg.value) if decode is not None else msg.value
    except Exception as exc:  # reported to the caller, who waits for this reply
        _fail(fut, exc)
        return
    try:
        fut.set_result(value)
    except concurrent.futures.InvalidStateError:  # cancelled: its caller stopped waiting
        if late is not None:
            _give_back(client, msg.request_id, value, late)


def _fail(fut: concurrent.futures.Future[Any], exc: BaseException) -> None:
    try:
        fut.set_exception(exc)
    except concurrent.futures.InvalidStateError:  # cancelled: nobody waits for it
        logger.debug("coordination error for a caller that stopped waiting: %r", exc)


def _give_back(client: Client, rid: int, value: Any, late: Undo) -> None:
    """On the loop: the answer to a request whose caller had stopped waiting came before
    its withdrawal reached the scheduler. Taken as usual (a future key became a Future, a
    lease this object's), now given back."""
    try:
        late(client, value)
    except Exception:  # the loop reads on; the scheduler frees it with the connection
        logger.exception("giving back the answer to cancelled coordination request %d", rid)


def fail_pending(client: Client, reason: str) -> None:
    """The connection is gone or the client closed: end every wait with an error."""
    pending = _pending(client)
    while pending:
        _, (fut, _, _) = pending.popitem()
        if not fut.done():
            _fail(fut, ConnectionError(reason))


# --- values that travel: data or futures -----------------------------------------------------


def encode(value: Any) -> tuple[str, Any]:
    """A value to store: a Future travels as its key, anything else pickled.

    Raises:
        TypeError: the value cannot be pickled.
    """
    if isinstance(value, Future):
        return ("future", value.key)
    return ("data", dumps(value))


def encode_again(item: Any) -> tuple[str, Any]:
    """An item as :func:`adopt` made it (a Future, or data still serialized), to send
    back: as :func:`encode` made it."""
    kind, value = item
    return ("future", value.key) if kind == "future" else (kind, value)


def adopt(client: Client, rid: int, item: Any) -> Any:
    """On the loop, as the reply is read: a future key becomes a Future of ``client`` now,
    then the scheduler hears so (and only then moves the key's hold to this client, so a
    release this client sent earlier, for an older Future of the key, cannot drop it)."""
    if item[0] != "future":  # (data: as it is, the usual case)
        return item
    return adopt_all(client, rid, [item])[0]


def adopt_all(client: Client, rid: int, items: Any) -> Any:
    out = [("future", Future(value, client)) if kind == "future" else (kind, value)
           for kind, value in items]
    if any(kind == "future" for kind, _ in items):
        client._send(CoordKeysReceived(rid))
    return out


def value_of(item: Any) -> Any:
    """In the caller's thread: the stored value (unpickled) or the Future."""
    kind, value = item
    if kind == "data" and isinstance(value, Serialized):
        return loads(value)
    return value


