"""Which future keys the primitives keep alive in the cluster, and their hand-over to the
clients that get them.

A queue or variable holding a future's key is an owner (``queue:<name>``,
``variable:<name>``) that wants the key, as a client would. A get hands the key to the
getting client in two steps: the reply carries the key and the owner's hold stays until
the client says it made its Future (:class:`KeysReceived`); only then does the client
take its own hold and the owner let go. Anything the client sent before its
acknowledgement (such as the release of an older Future of the same key) therefore
reaches the scheduler while the key is still held.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shoal._machine import Command
from shoal.scheduler.coordination._events import DropKeys, HoldKeys


class Holds:
    def __init__(self, out: list[Command]) -> None:
        self.out = out
        self.counts: dict[str, Counter[Any]] = {}  # owner -> key -> how many reasons to hold
        self.handing: dict[tuple[str, int], tuple[str, list[Any]]] = {}  # (holder, rid) -> ...

    def take(self, owner: str, key: Any) -> None:
        keys = self.counts.setdefault(owner, Counter())
        if not keys[key]:
            self.out.append(HoldKeys(owner, [key]))
        keys[key] += 1

    def let_go(self, owner: str, key: Any) -> None:
        keys = self.counts[owner]
        keys[key] -= 1
        if keys[key] <= 0:
            del keys[key]
            if not keys:
                del self.counts[owner]
            self.out.append(DropKeys(owner, [key], last=not keys))

    def hand_over(self, owner: str, holder: str, rid: int, keys: list[Any]) -> None:
        """The reply to ``(holder, rid)`` carries ``keys``: hold them until it says so."""
        for key in keys:
            self.take(owner, key)
        self.handing[(holder, rid)] = (owner, keys)

    def received(self, holder: str, rid: int) -> None:
        entry = self.handing.pop((holder, rid), None)
        if entry is None:
            return
        owner, keys = entry
        self.out.append(HoldKeys(holder, list(keys)))
        for key in keys:
            self.let_go(owner, key)

    def holder_left(self, holder: str) -> None:
        for handing in [h for h in self.handing if h[0] == holder]:
            owner, keys = self.handing.pop(handing)
            for key in keys:
                self.let_go(owner, key)

    def held_by(self, owner: str) -> Counter[Any]:
        return self.counts.get(owner, Counter())

    def validate(self) -> None:
        for owner, counts in self.counts.items():
            assert counts and all(n > 0 for n in counts.values()), owner
        for (holder, _rid), (owner, keys) in self.handing.items():
            for key in keys:
                assert self.counts[owner][key] > 0, (holder, owner, key)
