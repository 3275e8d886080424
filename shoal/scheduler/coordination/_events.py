"""Events (facts) and commands (orders) of the coordination machine.

Every request that waits carries its ``deadline`` (absolute seconds, or None for "until the
holder goes away") and every event that depends on time carries ``now``: the machine never
reads a clock. ``holder`` is the scheduler's name of the client connection that asked (a
user's client or a worker's client); ``rid`` is that client's request id, echoed in the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shoal._machine import Command, Event

# A value stored in a Queue or a Variable: ("data", <Serialized>) or ("future", key).
Item = tuple[str, Any]


# --- semaphores (and Lock, which is a semaphore of one lease, as in dask) -----------------


@dataclass(frozen=True, slots=True)
class SemaphoreAcquire(Event):
    holder: str
    rid: int
    name: str
    max_leases: int
    lease: str
    lease_timeout: float | None
    deadline: float | None
    now: float


@dataclass(frozen=True, slots=True)
class SemaphoreRelease(Event):
    holder: str
    name: str
    lease: str
    now: float


@dataclass(frozen=True, slots=True)
class SemaphoreRefresh(Event):
    holder: str
    name: str
    leases: list[str]
    now: float


@dataclass(frozen=True, slots=True)
class SemaphoreValue(Event):
    holder: str
    rid: int
    name: str


@dataclass(frozen=True, slots=True)
class SemaphoreClose(Event):
    holder: str
    rid: int
    name: str


# --- multi-locks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiLockAcquire(Event):
    holder: str
    rid: int
    names: list[str]
    lock_id: str
    num_locks: int
    deadline: float | None
    now: float


@dataclass(frozen=True, slots=True)
class MultiLockRelease(Event):
    holder: str
    lock_id: str


# --- queues -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueCreate(Event):
    """Answered with the maxsize in force: the first creator's."""

    holder: str
    rid: int
    name: str
    maxsize: int


@dataclass(frozen=True, slots=True)
class QueuePut(Event):
    holder: str
    rid: int
    name: str
    item: Item
    deadline: float | None
    now: float


@dataclass(frozen=True, slots=True)
class QueueGet(Event):
    """``batch``: 0 for one item (returned bare), n > 0 for a list of n items (waits for all
    n), -1 for every item queued now (never waits)."""

    holder: str
    rid: int
    name: str
    batch: int
    deadline: float | None
    now: float


@dataclass(frozen=True, slots=True)
class QueueSize(Event):
    holder: str
    rid: int
    name: str


@dataclass(frozen=True, slots=True)
class QueueReturn(Event):
    """Items a queue gave to a getter that had stopped waiting for them (its withdrawal
    came too late): back to the front, in order."""

    holder: str
    name: str
    items: list[Item]


@dataclass(frozen=True, slots=True)
class QueueRelease(Event):
    """One Queue object closed: the queue goes once every create has been released."""

    holder: str
    name: str


# --- variables ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VariableSet(Event):
    holder: str
    rid: int
    name: str
    item: Item


@dataclass(frozen=True, slots=True)
class VariableGet(Event):
    holder: str
    rid: int
    name: str
    deadline: float | None
    now: float


@dataclass(frozen=True, slots=True)
class VariableDelete(Event):
    holder: str
    name: str


# --- events (the primitive) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventSet(Event):
    holder: str
    rid: int
    name: str


@dataclass(frozen=True, slots=True)
class EventClear(Event):
    holder: str
    rid: int
    name: str


@dataclass(frozen=True, slots=True)
class EventWait(Event):
    holder: str
    rid: int
    name: str
    deadline: float | None
    now: float


@dataclass(frozen=True, slots=True)
class EventIsSet(Event):
    holder: str
    rid: int
    name: str


# --- any primitive ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeysReceived(Event):
    """``holder`` made Futures of the keys in the reply to its request ``rid``."""

    holder: str
    rid: int


@dataclass(frozen=True, slots=True)
class Withdraw(Event):
    """``holder`` stopped waiting for its request ``rid`` (an awaiting call was cancelled):
    if the request still waits, it leaves (answered with a "CancelledError" Fail that
    nobody raises); if it was answered already, nothing changes here (the holder gives
    back what it got: a lease released, queue items returned)."""

    holder: str
    rid: int


@dataclass(frozen=True, slots=True)
class HolderLeft(Event):
    """The connection of ``holder`` closed: its leases and locks return, its waits end."""

    holder: str
    now: float


@dataclass(frozen=True, slots=True)
class Tick(Event):
    """Time passed: waits past their deadline end, leases not refreshed in time expire."""

    now: float


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply(Command):
    """Answer request ``rid`` of ``holder`` with ``value``."""

    holder: str
    rid: int
    value: Any


@dataclass(frozen=True, slots=True)
class Fail(Command):
    """Answer request ``rid`` of ``holder`` with an error: ``kind`` names the exception type
    the caller raises (TimeoutError, ValueError, RuntimeError, NotImplementedError)."""

    holder: str
    rid: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class HoldKeys(Command):
    """``owner`` (a client, or a primitive's own name such as ``queue:jobs``) now wants
    ``keys`` kept in the cluster."""

    owner: str
    keys: list[Any]


@dataclass(frozen=True, slots=True)
class DropKeys(Command):
    """``owner`` no longer wants ``keys``; ``last``: it holds nothing any more."""

    owner: str
    keys: list[Any]
    last: bool


@dataclass(frozen=True, slots=True)
class WakeAt(Command):
    """Send a :class:`Tick` at ``when`` (a waiter's deadline or a lease's expiry)."""

    when: float


@dataclass(frozen=True, slots=True)
class Warn(Command):
    """Something the holder did wrong that is not worth an error (logged by the shell)."""

    message: str
