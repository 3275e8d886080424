"""The scheduler's wiring of the coordination machine: client messages in, replies out.

Owns: turning ``Coord*`` messages into events (with the clock's ``now`` and the deadline a
request's timeout gives), replies to the asking connection, the timers that end waits at
their deadline and check lease expiry every ``lease-validation-interval``, and handing
key holds to the task machine (HoldKeys -> GraphSubmitted, DropKeys -> KeysReleased).
Also the connections of role ``"coordination"``: a task thread's own channel for Lock and
Semaphore requests (shoal/client/_channel.py), a holder like a client's connection but not
a client (no futures, no topics). Decides nothing itself.

Threads: the machine is fed on the loop, and also, for a client living in this process
(its in-process connection), straight from the client's calling thread
(:meth:`CoordinationShell.receive_direct`, used by shoal/client/_direct.py): no hand-off to
the loop and back. ``_lock`` makes each ``handle`` of the machine atomic; commands of a
direct request other than the caller's own answer run on the loop afterwards, in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dask
from dask.utils import parse_timedelta

from shoal.protocol import _coord_messages as cm
from shoal.protocol import _messages as m
from shoal.scheduler._events import ClientLeft, GraphSubmitted, KeysReleased
from shoal.scheduler.coordination import _events as ev
from shoal.scheduler.coordination._state import CoordinationState

if TYPE_CHECKING:
    from shoal.comm._connection import Connection
    from shoal.scheduler._server import Scheduler

logger = logging.getLogger("shoal.scheduler.coordination")


def _deadline(timeout: float | None, now: float) -> float | None:
    return None if timeout is None else now + max(float(timeout), 0.0)


def _item(item: Any) -> ev.Item:
    kind, value = item
    if kind not in ("data", "future"):
        raise TypeError(f"a queued or set value must be data or a future, got {kind!r}")
    return (kind, value)


# Message type -> event builder(holder, message, now).
_BUILD: dict[type, Callable[[str, Any, float], Any]] = {
    cm.CoordSemaphoreAcquire: lambda h, x, now: ev.SemaphoreAcquire(
        h, x.request_id, x.name, x.max_leases, x.lease, x.lease_timeout,
        _deadline(x.timeout, now), now),
    cm.CoordSemaphoreRelease: lambda h, x, now: ev.SemaphoreRelease(h, x.name, x.lease, now),
    cm.CoordSemaphoreRefresh: lambda h, x, now: ev.SemaphoreRefresh(h, x.name, list(x.leases), now),
    cm.CoordSemaphoreValue: lambda h, x, now: ev.SemaphoreValue(h, x.request_id, x.name),
    cm.CoordSemaphoreClose: lambda h, x, now: ev.SemaphoreClose(h, x.request_id, x.name),
    cm.CoordMultiLockAcquire: lambda h, x, now: ev.MultiLockAcquire(
        h, x.request_id, list(x.names), x.lock_id, x.num_locks, _deadline(x.timeout, now), now),
    cm.CoordMultiLockRelease: lambda h, x, now: ev.MultiLockRelease(h, x.lock_id),
    cm.CoordQueueCreate: lambda h, x, now: ev.QueueCreate(h, x.request_id, x.name, x.maxsize),
    cm.CoordQueuePut: lambda h, x, now: ev.QueuePut(
        h, x.request_id, x.name, _item(x.item), _deadline(x.timeout, now), now),
    cm.CoordQueueGet: lambda h, x, now: ev.QueueGet(
        h, x.request_id, x.name, x.batch, _deadline(x.timeout, now), now),
    cm.CoordQueueSize: lambda h, x, now: ev.QueueSize(h, x.request_id, x.name),
    cm.CoordQueueRelease: lambda h, x, now: ev.QueueRelease(h, x.name),
    cm.CoordVariableSet: lambda h, x, now: ev.VariableSet(h, x.request_id, x.name, _item(x.item)),
    cm.CoordVariableGet: lambda h, x, now: ev.VariableGet(
        h, x.request_id, x.name, _deadline(x.timeout, now), now),
    cm.CoordVariableDelete: lambda h, x, now: ev.VariableDelete(h, x.name),
    cm.CoordEventSet: lambda h, x, now: ev.EventSet(h, x.request_id, x.name),
    cm.CoordEventClear: lambda h, x, now: ev.EventClear(h, x.request_id, x.name),
    cm.CoordEventWait: lambda h, x, now: ev.EventWait(
        h, x.request_id, x.name, _deadline(x.timeout, now), now),
    cm.CoordEventIsSet: lambda h, x, now: ev.EventIsSet(h, x.request_id, x.name),
    cm.CoordKeysReceived: lambda h, x, now: ev.KeysReceived(h, x.request_id),
    cm.CoordQueueReturn: lambda h, x, now: ev.QueueReturn(h, x.name, [_item(i) for i in x.items]),
    cm.CoordWithdraw: lambda h, x, now: ev.Withdraw(h, x.request_id),
}

MESSAGES = frozenset(_BUILD)
"""The client messages :meth:`CoordinationShell.receive` takes."""

CHANNEL_ROLE = "coordination"
"""The ``Hello`` role of a task thread's coordination channel."""

CHANNEL_MESSAGES = frozenset({
    cm.CoordSemaphoreAcquire, cm.CoordSemaphoreRelease, cm.CoordSemaphoreRefresh,
    cm.CoordSemaphoreValue,
})
"""What a channel may send: leases carry no future, so nothing on a channel needs to be
ordered with a client's task messages."""

DIRECT_MESSAGES = frozenset({
    cm.CoordQueueCreate, cm.CoordQueuePut, cm.CoordQueueGet, cm.CoordQueueSize,
    cm.CoordEventSet, cm.CoordEventClear, cm.CoordEventWait, cm.CoordEventIsSet,
    cm.CoordVariableGet,
})
"""What :meth:`CoordinationShell.receive_direct` takes (a put only of data): requests whose
events never hold or drop keys in the task machine, so that applying them outside the
loop's order of task messages changes nothing there. Not Lock and Semaphore: the client's
loop refreshes their leases on the connection, which a direct release could overtake."""


class CoordinationShell:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.state = CoordinationState()
        self._timers: set[asyncio.TimerHandle] = set()
        self._validation: asyncio.TimerHandle | None = None
        self._channels: dict[str, Connection] = {}  # holder name -> a task thread's channel
        self._lock = threading.Lock()  # one handle of the machine at a time (see above)
        self._closed = False

    def receive(self, holder: str, msg: m.Message) -> None:
        """A coordination message from client connection ``holder``."""
        now = time.time()
        event = _BUILD[type(msg)](holder, msg, now)
        item = getattr(event, "item", None)
        if item is not None and item[0] == "future" and item[1] not in self.scheduler.state.tasks:
            self._send(holder, cm.CoordReply(event.rid, False, [
                "ValueError",
                f"future {item[1]!r} is unknown to the scheduler: it was released (or never "
                "submitted); keep a reference to it until it is stored",
            ]))
            return
        if type(event) is ev.SemaphoreAcquire and event.lease_timeout is not None:
            self._validate_leases_soon()
        self._run([event])

    def receive_direct(self, holder: str, conn: Connection, msg: m.Message,
                       call_soon: Callable[..., Any]) -> list[ev.Reply | ev.Fail] | None:
        """From any thread: apply ``msg`` of client ``holder``, whose in-process connection
        is ``conn``, now; a message of ``DIRECT_MESSAGES`` (a put only of data).
        ``call_soon(fn, *args)``: runs ``fn`` on the loop of ``conn`` (this scheduler's) from
        any thread. Returns the
        answer to ``msg`` if it has one now (else it comes later on ``conn``, as after
        :meth:`receive`), or None if ``holder`` is gone or this scheduler closed: nothing
        was applied. Applied at once or never, so the caller orders it with what it sends
        on ``conn`` (see shoal/client/_direct.py)."""
        if type(msg) not in DIRECT_MESSAGES:
            raise TypeError(f"{msg.tag!r} cannot be applied outside the loop")
        item = getattr(msg, "item", None)
        if item is not None and item[0] != "data":
            raise TypeError("a future put must travel in order with its submission")
        event = _BUILD[type(msg)](holder, msg, time.time())
        with self._lock:
            # The scheduler forgets the connection before the holder leaves the machine
            # (under this lock): a holder found here has not left, and will leave after.
            if self._closed or self.scheduler._clients.get(holder) is not conn:
                return None
            commands = self.state.handle(event)
        rid = getattr(event, "rid", 0)
        mine: list[ev.Reply | ev.Fail] = []
        rest: list[Any] = []
        for cmd in commands:
            if (rid and isinstance(cmd, (ev.Reply, ev.Fail)) and cmd.holder == holder
                    and cmd.rid == rid):
                mine.append(cmd)
            elif type(cmd) is not ev.Reply or cmd.rid:  # (a Reply to id 0 goes to nobody:
                rest.append(cmd)  # no loop wake-up for it, a thread hand-off per put)
        if rest:
            try:
                call_soon(self._execute, rest)
            except RuntimeError:  # the loop closed: so did this scheduler and its clients
                logger.debug("scheduler loop closed; dropping %d coordination commands",
                             len(rest))
        return mine

    def holder_left(self, holder: str) -> None:
        """``holder``'s connection closed."""
        self._run([ev.HolderLeft(holder, time.time())])

    def accept_channel(self, conn: Connection, hello: m.Hello, name: str) -> None:
        """``conn`` said ``hello`` with the channel role: from now on it is holder ``name``
        (unique among holders), told so in its answer."""
        conn.info["role"] = CHANNEL_ROLE
        conn.info["name"] = name
        self._channels[name] = conn
        conn.set_handler(self._on_channel_message)
        conn.send(m.Response(0, True, {"client": name, "address": self.scheduler.address}))

    def _on_channel_message(self, conn: Connection, batch: list[m.Message] | None) -> None:
        name = conn.info["name"]
        if batch is None:
            if self._channels.pop(name, None) is not None:
                self.holder_left(name)
            return
        for msg in batch:
            if type(msg) not in CHANNEL_MESSAGES:
                logger.error("closing coordination channel %s: it may not send %r", name,
                             msg.tag)
                conn.close()
                return
            self.receive(name, msg)
        conn.flush()  # its thread waits for the answer: write it before the loop goes on

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for conn in list(self._channels.values()):
            conn.close()  # a task waiting on its channel hears that the scheduler is gone
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._validation is not None:
            self._validation.cancel()
            self._validation = None

    # --- commands ---------------------------------------------------------------------------

    def _run(self, events: list[Any]) -> None:
        with self._lock:
            commands = self.state.handle(*events)
        self._execute(commands)

    def _execute(self, commands: list[Any]) -> None:
        for cmd in commands:
            if isinstance(cmd, ev.Reply):
                if cmd.rid:  # request id 0: the sender wants no answer
                    self._send(cmd.holder, cm.CoordReply(cmd.rid, True, cmd.value))
            elif isinstance(cmd, ev.Fail):
                if cmd.rid:
                    self._send(cmd.holder, cm.CoordReply(cmd.rid, False, [cmd.kind, cmd.message]))
                else:
                    logger.warning("%s (for %s, who asked for no answer)", cmd.message, cmd.holder)
            elif isinstance(cmd, ev.HoldKeys):
                self.scheduler._apply([GraphSubmitted(cmd.owner, [], list(cmd.keys))])
            elif isinstance(cmd, ev.DropKeys):
                self.scheduler._apply([KeysReleased(cmd.owner, list(cmd.keys))])
                if cmd.last:
                    self.scheduler._apply([ClientLeft(cmd.owner)])
            elif isinstance(cmd, ev.WakeAt):
                self._wake_at(cmd.when)
            elif isinstance(cmd, ev.Warn):
                logger.warning(cmd.message)

    def _send(self, holder: str, msg: m.Message) -> None:
        conn = self.scheduler._clients.get(holder) or self._channels.get(holder)
        if conn is not None:
            conn.send(msg)

    def _wake_at(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def wake() -> None:
            self._timers.discard(handle)
            # Timers may fire a hair early on the wall clock; the deadline has passed.
            self._run([ev.Tick(max(time.time(), when))])

        handle = loop.call_later(max(when - time.time(), 0.0), wake)
        self._timers.add(handle)

    def _validate_leases_soon(self) -> None:
        """Check lease expiry every ``lease-validation-interval`` while semaphores exist."""
        if self._validation is not None:
            return
        interval = parse_timedelta(dask.config.get(
            "distributed.scheduler.locks.lease-validation-interval", "10s"), default="s")

        def validate() -> None:
            self._validation = None
            self._run([ev.Tick(time.time())])
            if self.state.semaphores.semaphores:
                self._validate_leases_soon()

        self._validation = asyncio.get_running_loop().call_later(float(interval), validate)
