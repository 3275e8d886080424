"""Coordination requests of a client whose scheduler lives in its own process, applied from
the calling thread: no hand-off to the client's loop and back.

Owns: deciding whether a request may skip the client's connection (the client talks to
this process's scheduler over its in-process connection; the message is one of the
scheduler's ``DIRECT_MESSAGES``: Queue, Event and Variable.get requests, a put only of
data), and the rule that keeps such requests in order with the client's other messages.

Why: on the connection, a request from the user's thread wakes the client's loop thread
(which also runs the scheduler), and the answer wakes the user's thread again: two thread
hand-offs, about 20-40 µs each on a virtual machine, nearly all of a Queue put + get
(benchmarks/RESULTS.md). Applied directly, the request runs in the calling thread under
the coordination machine's lock (shoal/scheduler/coordination/_shell.py
``receive_direct``); only commands for others (an answer to another waiter, a timer) go
to the loop.

Order (the rule): a direct request is applied by the time its call returns. A coordination
message the client sent on its connection is known applied only once a request sent on
the connection after it has been answered (the connection keeps order). So the client
counts, across its threads, the coordination messages it sent on the connection and the
ones known applied; while any is not known applied (a put of a future, which must stay
behind its submission; a Lock release; an unanswered request), requests take the
connection too, and the first answer there restores the direct path. Messages that are no
coordination requests (submissions, releases of keys, the Future hand-over's
``CoordKeysReceived``) are not counted: direct requests carry no futures and hold no keys.
A request waiting on the scheduler (a get of an empty queue) gets its answer on the
connection, like any other.
Must not know: the primitives' APIs (shoal/client/_queue.py...).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.comm._inproc import InprocConnection
from shoal.protocol._messages import Message

if TYPE_CHECKING:
    from shoal.client._client import Client
    from shoal.scheduler.coordination import _events as ev


class _Order:
    """One client's count of coordination messages sent on its connection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0  # coordination messages sent on the connection
        self.applied = 0  # the first this many of them are known applied


_orders: weakref.WeakKeyDictionary[Client, _Order] = weakref.WeakKeyDictionary()
_orders_lock = threading.Lock()


def _order(client: Client) -> _Order:
    order = _orders.get(client)
    if order is None:
        with _orders_lock:
            order = _orders.setdefault(client, _Order())
    return order


def _direct_messages() -> frozenset[type]:
    global _DIRECT
    if _DIRECT is None:  # the scheduler's modules load once a scheduler is used
        from shoal.scheduler.coordination._shell import DIRECT_MESSAGES

        _DIRECT = DIRECT_MESSAGES
    return _DIRECT


_DIRECT: frozenset[type] | None = None


def apply(client: Client, msg: Message) -> list[ev.Reply | ev.Fail] | None:
    """Apply ``msg`` to the client's scheduler now, if the rule allows: the answer if there
    is one now (empty: it comes on the connection later), or None: not applied, send it on
    the connection."""
    conn = client._conn
    if type(conn) is not InprocConnection or conn.closed:
        return None  # first: a worker process does not load the scheduler's modules
    if type(msg) not in _direct_messages():
        return None
    item = getattr(msg, "item", None)
    if item is not None and item[0] != "data":
        return None
    server_end = conn.other
    cluster = getattr(client, "cluster", None)
    scheduler = getattr(cluster, "scheduler", None)
    if server_end is None or scheduler is None:
        return None
    order = _order(client)
    if order.applied != order.sent:
        return None
    return scheduler.coordination.receive_direct(client.id, server_end, msg, _loop.call_soon)


def send_on_connection(client: Client, send: Callable[[], Any]) -> int:
    """Run ``send`` (which puts a coordination message on the client's connection), counted;
    returns its number for :func:`answered`."""
    order = _order(client)
    with order.lock:  # numbers in the order of the connection
        order.sent += 1
        send()
        return order.sent


def answered(client: Client, number: int) -> None:
    """The request of ``number`` was answered: it and everything before it are applied."""
    order = _order(client)
    with order.lock:
        if number > order.applied:
            order.applied = number
