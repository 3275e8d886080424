"""The coordination machine: Lock, MultiLock, Semaphore, Queue, Variable and Event state.

Owns: which holder has which lease or lock, who waits for what and until when, queued
items and variable values (opaque: serialized data or future keys). Must not know about
sockets, clocks, config or tasks: time arrives in events; keeping future keys alive is
ordered with HoldKeys/DropKeys commands that the shell passes on to the task machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal._machine import Command, Event
from shoal.scheduler.coordination import _events as ev
from shoal.scheduler.coordination._flags import Flags
from shoal.scheduler.coordination._holds import Holds
from shoal.scheduler.coordination._multilocks import MultiLocks
from shoal.scheduler.coordination._queues import Queues
from shoal.scheduler.coordination._semaphores import Semaphores
from shoal.scheduler.coordination._variables import Variables


class CoordinationState:
    """Feed events to :meth:`handle`; carry out the commands it returns, in order."""

    def __init__(self) -> None:
        self._out: list[Command] = []
        self.semaphores = Semaphores(self._out)
        self.multilocks = MultiLocks(self._out)
        self.holds = Holds(self._out)
        self.queues = Queues(self._out, self.holds)
        self.variables = Variables(self._out, self.holds)
        self.flags = Flags(self._out)
        self._handlers: dict[type, Callable[[Any], None]] = {
            ev.SemaphoreAcquire: self.semaphores.acquire,
            ev.SemaphoreRelease: self.semaphores.release,
            ev.SemaphoreRefresh: self.semaphores.refresh,
            ev.SemaphoreValue: self.semaphores.value,
            ev.SemaphoreClose: self.semaphores.close,
            ev.MultiLockAcquire: self.multilocks.acquire,
            ev.MultiLockRelease: self.multilocks.release,
            ev.QueueCreate: self.queues.create,
            ev.QueuePut: self.queues.put,
            ev.QueueGet: self.queues.get,
            ev.QueueSize: self.queues.size,
            ev.QueueRelease: self.queues.release,
            ev.QueueReturn: self.queues.give_back,
            ev.VariableSet: self.variables.set,
            ev.VariableGet: self.variables.get,
            ev.VariableDelete: self.variables.delete,
            ev.EventSet: self.flags.set,
            ev.EventClear: self.flags.clear,
            ev.EventWait: self.flags.wait,
            ev.EventIsSet: self.flags.is_set,
            ev.KeysReceived: self._keys_received,
            ev.Withdraw: self._withdraw,
            ev.HolderLeft: self._holder_left,
            ev.Tick: self._tick,
        }

    def handle(self, *events: Event) -> list[Command]:
        """Apply events in order; return the commands they lead to, in order."""
        for event in events:
            self._handlers[type(event)](event)
        out = list(self._out)
        self._out.clear()
        return out

    def _keys_received(self, event: ev.KeysReceived) -> None:
        self.holds.received(event.holder, event.rid)

    def _withdraw(self, event: ev.Withdraw) -> None:
        for primitives in (self.queues, self.semaphores, self.flags, self.variables,
                           self.multilocks):
            if primitives.withdraw(event.holder, event.rid):
                self._out.append(ev.Fail(event.holder, event.rid, "CancelledError",
                                         "the caller stopped waiting (cancelled)"))
                return

    def _holder_left(self, event: ev.HolderLeft) -> None:
        self.semaphores.holder_left(event.holder, event.now)
        self.multilocks.holder_left(event.holder)
        self.queues.holder_left(event.holder)
        self.variables.holder_left(event.holder)
        self.flags.holder_left(event.holder)
        self.holds.holder_left(event.holder)

    def _tick(self, event: ev.Tick) -> None:
        self.semaphores.tick(event.now)
        self.multilocks.tick(event.now)
        self.queues.tick(event.now)
        self.variables.tick(event.now)
        self.flags.tick(event.now)

    def validate(self) -> None:
        """Check every invariant; raises AssertionError naming the primitive. For tests."""
        self.semaphores.validate()
        self.multilocks.validate()
        self.queues.validate()
        self.variables.validate()
        self.flags.validate()
        self.holds.validate()
