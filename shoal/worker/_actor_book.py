"""Which actors a worker holds and what becomes of each call to them, as a pure machine.

Owns: the actors this worker holds (key -> class name), the calls received and not yet
answered, the decision to run a call or refuse it (the actor is not here: never was, or
was released), and refusing the calls still queued for an actor when it is released.
Must not know: the actor objects, threads, sockets or clocks. The shell
(``shoal.worker._actors``) runs what this orders on the worker's one actor thread.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from shoal._machine import Command, Event

Key = Any

_RELEASED_MEMORY = 10_000  # how many released actor keys are remembered, for the messages


@dataclass(frozen=True, slots=True)
class ActorCreated(Event):
    """A task on this worker built the actor ``key`` (an instance of ``typename``)."""

    key: Key
    typename: str


@dataclass(frozen=True, slots=True)
class ActorsReleased(Event):
    """The scheduler freed these keys here; those that are actors go."""

    keys: list[Key]


@dataclass(frozen=True, slots=True)
class CallReceived(Event):
    """A caller asked to run method ``name`` (or read attribute ``name``) of actor ``key``."""

    call: int
    key: Key
    name: str


@dataclass(frozen=True, slots=True)
class CallFinished(Event):
    """The actor thread finished ``call`` (its answer goes straight to the caller)."""

    call: int


@dataclass(frozen=True, slots=True)
class RunCall(Command):
    """Queue ``call`` on the actor thread (which runs calls one at a time, in order)."""

    call: int
    key: Key


@dataclass(frozen=True, slots=True)
class RefuseCall(Command):
    """Answer ``call`` with a RuntimeError carrying ``message``; nothing runs."""

    call: int
    message: str


class ActorBook:
    """A worker's actors and their calls. Feed events to :meth:`handle`."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.actors: dict[Key, str] = {}
        self.calls: dict[int, Key] = {}  # received, not finished -> actor key
        self.released: OrderedDict[Key, str] = OrderedDict()
        self._out: list[Command] = []

    def handle(self, *events: Event) -> list[Command]:
        for ev in events:
            if isinstance(ev, CallReceived):
                self._on_call(ev)
            elif isinstance(ev, CallFinished):
                self.calls.pop(ev.call, None)
            elif isinstance(ev, ActorCreated):
                self.actors[ev.key] = ev.typename
                self.released.pop(ev.key, None)
            elif isinstance(ev, ActorsReleased):
                self._on_released(ev.keys)
            else:
                raise TypeError(f"actor book got an unknown event {ev!r}")
        out, self._out = self._out, []
        return out

    def _on_call(self, ev: CallReceived) -> None:
        typename = self.actors.get(ev.key)
        if typename is None:
            self._out.append(RefuseCall(ev.call, self._absent(ev.key)))
            return
        self.calls[ev.call] = ev.key
        self._out.append(RunCall(ev.call, ev.key))

    def _on_released(self, keys: list[Key]) -> None:
        gone = {}
        for key in keys:
            typename = self.actors.pop(key, None)
            if typename is not None:
                gone[key] = typename
                self.released[key] = typename
        while len(self.released) > _RELEASED_MEMORY:
            self.released.popitem(last=False)
        if not gone:
            return
        # Calls already handed to the actor thread are refused there when they find the
        # object gone; the book answers for them now so no caller waits on a dead actor.
        for call, key in list(self.calls.items()):
            if key in gone:
                del self.calls[call]
                self._out.append(RefuseCall(call, self._absent(key)))

    def _absent(self, key: Key) -> str:
        typename = self.released.get(key)
        if typename is not None:
            return (
                f"actor {key!r} ({typename}) was released on worker {self.address}: no Client "
                "holds its Actor or future any more, so its state is gone. Keep the Actor (or "
                "the future it came from) while you use it."
            )
        return (
            f"actor {key!r} is not held by worker {self.address} (the worker restarted, or "
            "the key is not an actor)."
        )

    def validate(self) -> None:
        """Check the invariants; raises AssertionError. For tests."""
        for call, key in self.calls.items():
            assert key in self.actors, (call, key)
        for key in self.released:
            assert key not in self.actors, key
