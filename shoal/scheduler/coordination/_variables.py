"""Variables: one value per name (data kept serialized, or a future's key), and the
getters waiting for a first value.

While a key is a variable's value the variable holds it in the cluster (owner
``variable:<name>``, see ``_holds``); replacing or deleting the value lets it go, once the
clients that got it have made their Futures.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal._machine import Command
from shoal.scheduler.coordination._events import (
    Fail,
    Item,
    Reply,
    VariableDelete,
    VariableGet,
    VariableSet,
    WakeAt,
)
from shoal.scheduler.coordination._holds import Holds
from shoal.scheduler.coordination._waiting import take_out


def owner_of(name: str) -> str:
    return f"variable:{name}"


@dataclass(slots=True)
class Getter:
    holder: str
    rid: int
    deadline: float | None


class Variables:
    def __init__(self, out: list[Command], holds: Holds) -> None:
        self.out = out
        self.holds = holds
        self.values: dict[str, Item] = {}
        self.getters: dict[str, list[Getter]] = {}

    def set(self, ev: VariableSet) -> None:
        old = self.values.get(ev.name)
        new_key = ev.item[1] if ev.item[0] == "future" else None
        old_key = old[1] if old is not None and old[0] == "future" else None
        if new_key is not None:
            self.holds.take(owner_of(ev.name), new_key)
        if old_key is not None:
            self.holds.let_go(owner_of(ev.name), old_key)
        self.values[ev.name] = ev.item
        self.out.append(Reply(ev.holder, ev.rid, None))
        for g in self.getters.pop(ev.name, []):
            self._answer(ev.name, g.holder, g.rid, ev.item)

    def get(self, ev: VariableGet) -> None:
        item = self.values.get(ev.name)
        if item is not None:
            self._answer(ev.name, ev.holder, ev.rid, item)
        elif ev.deadline is not None and ev.deadline <= ev.now:
            self.out.append(Fail(ev.holder, ev.rid, "TimeoutError",
                                 f"variable {ev.name!r} was not set"))
        else:
            self.getters.setdefault(ev.name, []).append(Getter(ev.holder, ev.rid, ev.deadline))
            if ev.deadline is not None:
                self.out.append(WakeAt(ev.deadline))

    def delete(self, ev: VariableDelete) -> None:
        old = self.values.pop(ev.name, None)
        if old is not None and old[0] == "future":
            self.holds.let_go(owner_of(ev.name), old[1])

    def withdraw(self, holder: str, rid: int) -> bool:
        return take_out(self.getters, holder, rid)

    def holder_left(self, holder: str) -> None:
        for name in list(self.getters):
            left = [g for g in self.getters[name] if g.holder != holder]
            if left:
                self.getters[name] = left
            else:
                del self.getters[name]

    def tick(self, now: float) -> None:
        for name in list(self.getters):
            waiting = []
            for g in self.getters[name]:
                if g.deadline is not None and g.deadline <= now:
                    self.out.append(Fail(g.holder, g.rid, "TimeoutError",
                                         f"variable {name!r} was not set"))
                else:
                    waiting.append(g)
            if waiting:
                self.getters[name] = waiting
            else:
                del self.getters[name]

    def _answer(self, name: str, holder: str, rid: int, item: Item) -> None:
        self.out.append(Reply(holder, rid, item))
        if item[0] == "future":
            self.holds.hand_over(owner_of(name), holder, rid, [item[1]])

    def validate(self) -> None:
        for name, getters in self.getters.items():
            assert getters, name
            assert name not in self.values, name  # a set value answers every getter
