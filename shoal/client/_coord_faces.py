"""The two faces of a coordination primitive's method (Lock.acquire, Queue.get...): each is
written once, as a generator of the requests it makes, and run either blocking (a
synchronous client, or no running event loop) or as a coroutine of the caller's event loop
(an asynchronous client, as dask's primitives are there).

Owns: the steps a method yields (``Ask``: a request and its reply; ``Tell``: a message
without reply) and the two drivers that carry them out. Blocking, an ``Ask`` is
``_coordination.call`` (or a task thread's channel for leases); awaited, it is
``_coordination.ask``, which no thread waits for, and which, when cancelled, withdraws the
request and gives back what its answer gave. A method's own logic (arguments, which
requests, what their answers mean) is the same code on both faces.

Awaited calls start when first awaited, as dask's coroutines do (a task cancelled before
it ran sent nothing); a method that only tells (a release) does so at once and returns an
already-done awaitable, as the Client's queued operations do.
Must not know: the primitives (shoal/client/_locks.py, _queue.py...).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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

T = TypeVar("T")


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs ~1 µs a call)
class Ask:
    """Send ``make(request_id)`` and take its reply (``decode``d on shoal's loop as it is
    read). ``undo(value)``: give back what the answer gave, for an awaiting caller that
    stopped waiting. ``channel``: a task thread may send it on its own channel."""

    client: Client
    make: Callable[[int], Message]
    decode: Decode | None = None
    undo: Undo | None = None
    channel: bool = False


@dataclass(slots=True)
class Tell:
    """Send ``msg``, which gets no reply, in order with the client's other messages."""

    client: Client
    msg: Message
    channel: bool = False


Step = Ask | Tell
Steps = Generator[Step, Any, T]


def two_faced(method: Callable[..., Steps[Any]]) -> Callable[..., Any]:
    """A primitive's method written as a generator of steps (or returning one, after
    checks that raise at the call), given its two faces: its value (blocking), or an
    awaitable of it when its client is asynchronous and it is called from a running event
    loop other than shoal's."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        steps = method(self, *args, **kwargs)
        try:
            step = next(steps)  # the method's checks of its arguments raise here, at the call
        except StopIteration as done:
            return Ready(done.value) if awaited_here(_client_of(self)) else done.value
        if not step.client.asynchronous or not awaited_here(step.client):
            return _blocking(steps, step)
        return _started(steps, step)

    return wrapper


def _started(steps: Steps[T], step: Step) -> Any:
    """The awaitable of an asynchronous call: what only tells is done now (a release),
    what asks is a coroutine that starts when awaited."""
    while type(step) is Tell:
        send(step.client, step.msg)
        try:
            step = steps.send(None)
        except StopIteration as done:
            return Ready(done.value)
    return _awaiting(steps, step)


def blocking(steps: Steps[T]) -> T:
    """Carry out ``steps`` blocking, whatever the client (a constructor's own request)."""
    try:
        step = next(steps)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    return _blocking(steps, step)  # type: ignore[no-any-return]


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


def _blocking(steps: Steps[T], step: Step) -> Any:
    while True:
        try:
            if step.channel:
                value = _blocking_step(step)
            elif type(step) is Ask:  # the usual steps, at once
                value = call(step.client, step.make, step.decode)
            else:
                send(step.client, step.msg)  # type: ignore[union-attr]
                value = None
        except BaseException as exc:  # not swallowed: raised in the method, at its step
            finished, step = _after_error(steps, exc)
        else:
            try:
                step = steps.send(value)
            except StopIteration as done:
                return done.value
            continue
        if finished:
            return step


def _after_value(steps: Steps[T], value: Any) -> tuple[bool, Any]:
    """Hand the method its step's value: (False, its next step) or (True, what it
    returned)."""
    try:
        return False, steps.send(value)
    except StopIteration as done:
        return True, done.value


def _after_error(steps: Steps[T], exc: BaseException) -> tuple[bool, Any]:
    """Raise ``exc`` in the method at its step (it raises it on, as a rule): as
    :func:`_after_value`."""
    try:
        return False, steps.throw(exc)
    except StopIteration as done:
        return True, done.value


def _blocking_step(step: Step) -> Any:
    channel = _channel.for_thread(step.client) if step.channel else None
    if type(step) is Tell:
        if channel is not None:
            channel.send(step.msg)
        else:
            send(step.client, step.msg)
        return None
    assert type(step) is Ask
    if channel is None:
        return call(step.client, step.make, step.decode)
    value = answer(channel.call(step.make))  # a task thread: no loop in between
    return step.decode(step.client, 0, value) if step.decode is not None else value


async def _awaiting(steps: Steps[T], step: Step) -> Any:
    while True:
        try:
            value = await _awaited_step(step)
        except BaseException as exc:  # cancelled too: raised in the method, which ends
            finished, step = _after_error(steps, exc)
        else:
            finished, step = _after_value(steps, value)
        if finished:
            return step


async def _awaited_step(step: Step) -> Any:
    if type(step) is Tell:
        send(step.client, step.msg)
        return None
    assert type(step) is Ask
    return await ask(step.client, step.make, step.decode, step.undo)
