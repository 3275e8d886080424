"""The two faces of a coordination primitive's method (Lock.acquire, Queue.get...): each is
written once, as the request it makes and what to do with the answer, and carried out
either blocking (a synchronous client, or no running event loop) or as a coroutine of the
caller's event loop (an asynchronous client, as dask's primitives are there).

Owns: the steps a method returns (``Ask``: a request and its reply; ``Tell``: a message
without reply; each with ``then``, what the answer means: the method's value, or the next
step) and the two drivers that carry them out. Blocking, an ``Ask`` is
``_coordination.call`` (or a task thread's channel for leases); awaited, it is
``_coordination.ask``, which no thread waits for. Either, when its wait ends without the
answer (cancelled; interrupted by Ctrl-C), withdraws the request and gives back what its
answer gave. A method's own logic (arguments, which
requests, what their answers mean) is the same code on both faces. (Steps with ``then``
rather than generators: a generator's round, with its StopIteration, cost ~0.7 µs a call
on the blocking face, a tenth of a Queue.put.)

Awaited calls start when first awaited, as dask's coroutines do (a task cancelled before
it ran sent nothing); a method that only tells (a release) does so at once and returns an
already-done awaitable, as the Client's queued operations do.
Must not know: the primitives (shoal/client/_locks.py, _queue.py...).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.client import _channel
from shoal.client._coordination import (
    Decode,
    NoClientError,
    Undo,
    answer,
    ask,
    call,
    find_client,
    send,
)
from shoal.client._faces import Ready
from shoal.protocol._messages import Message

if TYPE_CHECKING:
    from shoal.client._client import Client

Then = Callable[[Any], Any]


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs ~1 µs a call)
class Ask:
    """Send ``make(request_id)`` and take its reply (``decode``d on shoal's loop as it is
    read); ``then(value)``: the method's value, or its next step (None: the value as is).
    ``undo(client, value)``: give back what the answer gave, for a caller that stopped
    waiting (cancelled, or interrupted by Ctrl-C); ``late_undo``: also when the answer comes
    after the withdrawal was sent (False: the scheduler's withdrawal gives it back itself,
    as a MultiLock's grant, whose release could not tell it from the object's next one).
    ``failed(error)``: told when the request failed (its error is raised on).
    ``channel``: a task thread may send it on its own channel."""

    client: Client
    make: Callable[[int], Message]
    decode: Decode | None = None
    undo: Undo | None = None
    then: Then | None = None
    failed: Callable[[BaseException], None] | None = None
    channel: bool = False
    late_undo: bool = True


@dataclass(slots=True)
class Tell:
    """Send ``msg``, which gets no reply, in order with the client's other messages;
    ``then(None)``: as :class:`Ask`'s."""

    client: Client
    msg: Message
    then: Then | None = None
    channel: bool = False


Step = Ask | Tell


def two_faced(method: Callable[..., Any]) -> Callable[..., Any]:
    """A primitive's method that returns its first step (or its value, if it needs none),
    given its two faces: its value (blocking), or an awaitable of it when its client is
    asynchronous and it is called from a running event loop other than shoal's. Checks
    of the arguments raise at the call, on both faces."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        step = method(self, *args, **kwargs)
        kind = type(step)
        if kind is not Ask and kind is not Tell:  # answered without a request
            return Ready(step) if awaited_here(_client_of(self)) else step
        client = step.client
        if client._asynchronous and awaited_here(client):
            return _started(step)
        if kind is Tell and not step.channel and step.then is None:  # (a put: at once)
            send(client, step.msg)  # type: ignore[union-attr]
            return None
        return _blocking(step)

    return wrapper


def blocking(step: Any) -> Any:
    """Carry out ``step`` blocking, whatever the client (a constructor's own request)."""
    return _blocking(step) if type(step) is Ask or type(step) is Tell else step


def awaited_here(client: Client | None) -> bool:
    """Whether a call with ``client`` is awaited: an asynchronous client, called from a
    running event loop that is not shoal's (whose thread a blocking call would stall)."""
    if client is None or not getattr(client, "asynchronous", False) or _loop.in_loop_thread():
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running in this thread: block, as a sync call
        return False
    return True


def _client_of(owner: Any) -> Client | None:
    client = getattr(owner, "_client", None)
    if client is None:
        try:
            client = find_client(None, "")
        except NoClientError:
            return None
    return client


def _then(step: Step, value: Any) -> tuple[bool, Any]:
    """What ``step``'s answer ``value`` leads to: (True, the method's value) or (False,
    the next step)."""
    if step.then is None:
        return True, value
    out = step.then(value)
    return type(out) is not Ask and type(out) is not Tell, out


def _failed(step: Step, exc: BaseException) -> None:
    if type(step) is Ask and step.failed is not None:
        step.failed(exc)


def _blocking(step: Step) -> Any:
    while True:  # ends: each step is one answered request; a method has few steps
        try:
            if step.channel:
                value = _on_channel(step)
            elif type(step) is Ask:  # the usual steps, at once
                undo = step.undo
                value = call(step.client, step.make, step.decode, undo,
                             undo if step.late_undo else None)
            else:
                send(step.client, step.msg)  # type: ignore[union-attr]
                value = None
        except BaseException as exc:
            _failed(step, exc)
            raise
        then = step.then  # (inline: a call less on the usual path, see _then)
        if then is None:
            return value
        value = then(value)
        if type(value) is not Ask and type(value) is not Tell:
            return value
        step = value


def _on_channel(step: Step) -> Any:
    """A step that a task thread may send on its own channel (no loop in between)."""
    channel = _channel.for_thread(step.client)
    if type(step) is Tell:
        if channel is not None:
            channel.send(step.msg)
        else:
            send(step.client, step.msg)
        return None
    assert type(step) is Ask
    if channel is None:
        return call(step.client, step.make, step.decode, step.undo,
                    step.undo if step.late_undo else None)
    value = answer(channel.call(step.make))
    return step.decode(step.client, 0, value) if step.decode is not None else value


def _started(step: Step) -> Any:
    """The awaitable of an asynchronous call: what only tells is done now (a release),
    what asks is a coroutine that starts when awaited."""
    while type(step) is Tell:
        send(step.client, step.msg)
        done, step = _then(step, None)
        if done:
            return Ready(step)
    return _awaiting(step)


async def _awaiting(step: Step) -> Any:
    while True:  # ends: each step is one answered request; a method has few steps
        try:
            if type(step) is Ask:
                value = await ask(step.client, step.make, step.decode, step.undo,
                                  step.undo if step.late_undo else None)
            else:
                send(step.client, step.msg)  # type: ignore[union-attr]
                value = None
        except BaseException as exc:  # cancelled too
            _failed(step, exc)
            raise
        done, step = _then(step, value)
        if done:
            return step
