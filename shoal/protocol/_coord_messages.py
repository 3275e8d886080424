"""The messages of the coordination primitives (Lock, MultiLock, Semaphore, Queue,
Variable, Event): declared with the others through ``_messages``, which imports this
module, so every kind is still registered and reachable from ``shoal.protocol._messages``.
Kept apart only for length."""

from __future__ import annotations

from typing import Any

from shoal.protocol._messages import Message, _message

# --- coordination primitives (Lock, MultiLock, Semaphore, Queue, Variable, Event) -----------
# Client -> scheduler; ``timeout`` is relative (the scheduler turns it into a deadline), a
# request with a request_id is answered by one CoordReply (request_id 0: no answer wanted).
# See shoal/scheduler/coordination.


@_message("coord-semaphore-acquire")
class CoordSemaphoreAcquire(Message):
    request_id: int
    name: str
    max_leases: int
    lease: str
    lease_timeout: float | None
    timeout: float | None


@_message("coord-semaphore-release")
class CoordSemaphoreRelease(Message):
    name: str
    lease: str


@_message("coord-semaphore-refresh")
class CoordSemaphoreRefresh(Message):
    name: str
    leases: list[str]


@_message("coord-semaphore-value")
class CoordSemaphoreValue(Message):
    request_id: int
    name: str


@_message("coord-semaphore-close")
class CoordSemaphoreClose(Message):
    request_id: int
    name: str


@_message("coord-multi-lock-acquire")
class CoordMultiLockAcquire(Message):
    request_id: int
    names: list[str]
    lock_id: str
    num_locks: int
    timeout: float | None


@_message("coord-multi-lock-release")
class CoordMultiLockRelease(Message):
    lock_id: str


@_message("coord-queue-create")
class CoordQueueCreate(Message):
    """Answered with the queue's maxsize (the first creator's)."""

    request_id: int
    name: str
    maxsize: int


@_message("coord-queue-put")
class CoordQueuePut(Message):
    """``item``: ("data", Serialized) or ("future", key)."""

    request_id: int
    name: str
    item: tuple[str, Any]
    timeout: float | None


@_message("coord-queue-get")
class CoordQueueGet(Message):
    """``batch``: 0 one item, n > 0 a list of n, -1 everything queued now."""

    request_id: int
    name: str
    batch: int
    timeout: float | None


@_message("coord-queue-size")
class CoordQueueSize(Message):
    request_id: int
    name: str


@_message("coord-queue-return")
class CoordQueueReturn(Message):
    """Items of a get whose caller had stopped waiting (cancelled) when they came: back
    to the front of the queue, in order (no reply)."""

    name: str
    items: list[tuple[str, Any]]


@_message("coord-queue-release")
class CoordQueueRelease(Message):
    """``Queue.close()``: one Queue object is done with ``name`` (no reply)."""

    name: str


@_message("coord-variable-set")
class CoordVariableSet(Message):
    request_id: int
    name: str
    item: tuple[str, Any]


@_message("coord-variable-get")
class CoordVariableGet(Message):
    request_id: int
    name: str
    timeout: float | None


@_message("coord-variable-delete")
class CoordVariableDelete(Message):
    name: str


@_message("coord-event-set")
class CoordEventSet(Message):
    request_id: int
    name: str


@_message("coord-event-clear")
class CoordEventClear(Message):
    request_id: int
    name: str


@_message("coord-event-wait")
class CoordEventWait(Message):
    request_id: int
    name: str
    timeout: float | None


@_message("coord-event-is-set")
class CoordEventIsSet(Message):
    request_id: int
    name: str


@_message("coord-keys-received")
class CoordKeysReceived(Message):
    """The client made Futures of the keys in the reply to ``request_id``: the primitive
    may hand its hold on them over to the client."""

    request_id: int


@_message("coord-withdraw")
class CoordWithdraw(Message):
    """The caller stopped waiting for request ``request_id`` (cancelled): the scheduler
    drops it if it still waits, answering it with a CancelledError that nobody raises."""

    request_id: int


@_message("coord-reply")
class CoordReply(Message):
    """Scheduler -> client: the answer to a coordination request. Not ok: ``value`` is
    (exception kind, message)."""

    request_id: int
    ok: bool
    value: Any
