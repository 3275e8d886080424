"""Events (the primitive, called flags here to tell them from state-machine events): a
boolean per name, False until set, and the waiters for it to become True."""

from __future__ import annotations

from dataclasses import dataclass

from shoal._machine import Command
from shoal.scheduler.coordination._events import (
    EventClear,
    EventIsSet,
    EventSet,
    EventWait,
    Reply,
    WakeAt,
)
from shoal.scheduler.coordination._waiting import take_out


@dataclass(slots=True)
class Waiter:
    holder: str
    rid: int
    deadline: float | None


class Flags:
    def __init__(self, out: list[Command]) -> None:
        self.out = out
        self.raised: set[str] = set()  # names that are set; unknown names are clear
        self.waiters: dict[str, list[Waiter]] = {}

    def set(self, ev: EventSet) -> None:
        self.raised.add(ev.name)
        for w in self.waiters.pop(ev.name, []):
            self.out.append(Reply(w.holder, w.rid, True))
        self.out.append(Reply(ev.holder, ev.rid, None))

    def clear(self, ev: EventClear) -> None:
        self.raised.discard(ev.name)
        self.out.append(Reply(ev.holder, ev.rid, None))

    def wait(self, ev: EventWait) -> None:
        if ev.name in self.raised:
            self.out.append(Reply(ev.holder, ev.rid, True))
        elif ev.deadline is not None and ev.deadline <= ev.now:
            self.out.append(Reply(ev.holder, ev.rid, False))
        else:
            self.waiters.setdefault(ev.name, []).append(Waiter(ev.holder, ev.rid, ev.deadline))
            if ev.deadline is not None:
                self.out.append(WakeAt(ev.deadline))

    def is_set(self, ev: EventIsSet) -> None:
        self.out.append(Reply(ev.holder, ev.rid, ev.name in self.raised))

    def withdraw(self, holder: str, rid: int) -> bool:
        return take_out(self.waiters, holder, rid)

    def holder_left(self, holder: str) -> None:
        for name in list(self.waiters):
            left = [w for w in self.waiters[name] if w.holder != holder]
            if left:
                self.waiters[name] = left
            else:
                del self.waiters[name]

    def tick(self, now: float) -> None:
        for name in list(self.waiters):
            waiting = []
            for w in self.waiters[name]:
                if w.deadline is not None and w.deadline <= now:
                    self.out.append(Reply(w.holder, w.rid, False))
                else:
                    waiting.append(w)
            if waiting:
                self.waiters[name] = waiting
            else:
                del self.waiters[name]

    def validate(self) -> None:
        for name, waiters in self.waiters.items():
            assert waiters, name
            assert name not in self.raised, name  # setting answers every waiter
