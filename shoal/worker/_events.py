"""Worker events (facts: a task was assigned, finished, an input arrived...) and commands
(orders for the I/O shell: execute, fetch, drop, report). Time arrives in the events.

The few built once or more per task are plain slotted dataclasses rather than frozen ones
(a frozen one sets each field through ``object.__setattr__``, 3-5x slower to build); nobody
mutates them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shoal._machine import Command, Event
from shoal.protocol._messages import Compute, Computes
from shoal.protocol._serialize import Serialized

Key = Any


@dataclass(slots=True)  # not frozen: built per task (see the header)
class ComputeAssigned(Event):
    msg: Compute


@dataclass(slots=True)  # not frozen: built per batch of computes
class ComputesAssigned(Event):
    """Several assignments in one message (a ``Computes``): handled as its rows'
    ``ComputeAssigned`` one after the other, with no event or message object per row."""

    msg: Computes


@dataclass(frozen=True, slots=True)
class KeysFreed(Event):
    keys: list[Key]


@dataclass(frozen=True, slots=True)
class DataStored(Event):
    """Data arrived by scatter (the shell already holds the value)."""

    key: Key
    nbytes: int


@dataclass(frozen=True, slots=True)
class CopiesStored(Event):
    """Copies the scheduler asked for arrived (``replicate``/``rebalance``): key -> nbytes.
    Held until the scheduler frees them; not a scatter, so nothing is acknowledged (the
    shell's answer to ``CopyKeys`` is the acknowledgement)."""

    got: dict[Key, int]


@dataclass(frozen=True, slots=True)
class StoreFailed(Event):
    """Scattered data arrived but could not be loaded here (``error`` says why)."""

    key: Key
    error: dict[str, Any]


@dataclass(slots=True)  # not frozen: built per task (see the header)
class ExecuteDone(Event):
    key: Key
    nbytes: int
    typename: str
    start: float
    stop: float
    thread: int
    inline: Serialized | None
    error: dict[str, Any] | None  # set when the task raised
    # The result's class pickled, for a client that wants the result, gets no ``inline``
    # and cannot find the class by ``typename`` (``protocol._typenames.pickled_class``).
    pickled_type: bytes | None = None


@dataclass(frozen=True, slots=True)
class FetchDone(Event):
    """A fetch from ``peer`` finished: ``got`` maps key → nbytes; ``missing`` it didn't have."""

    peer: str
    got: dict[Key, int]
    missing: list[Key]
    start: float
    stop: float
    errors: dict[Key, Any] = field(default_factory=dict)  # inputs that cannot be sent


@dataclass(frozen=True, slots=True)
class FetchFailed(Event):
    peer: str
    keys: list[Key]


@dataclass(slots=True)  # not frozen: built per task (see the header)
class Execute(Command):
    key: Key
    payload: Serialized
    priority: Any
    send_inline: bool
    deps: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    peer: str
    keys: list[Key]
    # The scheduler's sizes of the keys, where known: a worker under a memory limit keeps
    # the bytes it has in flight under its transfer budget. Not part of the order's identity.
    sizes: dict[Key, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Drop(Command):
    """Forget these values (the shell deletes them from its data store)."""

    keys: list[Key]


@dataclass(slots=True)  # not frozen: built per task (see the header)
class Report(Command):
    """Send this message to the scheduler."""

    msg: Any
