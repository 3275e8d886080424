"""Queues: items in order, getters and putters waiting in order.

An item is data (kept serialized, never opened here) or a future's key. While a key is in
a queue the queue itself holds it in the cluster (owner ``queue:<name>``, see ``_holds``)
until the client that got it has made its Future.

A queue lives until every Queue object that created it has closed (dask's refcount of
``queue_create`` / ``queue_release``): then its items are let go and whoever still waits
on it gets a RuntimeError. A long-running cluster would otherwise keep every queue ever
named, and look at each on every tick.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shoal._machine import Command
from shoal.scheduler.coordination._events import (
    Fail,
    Item,
    QueueCreate,
    QueueGet,
    QueuePut,
    QueueRelease,
    QueueReturn,
    QueueSize,
    Reply,
    WakeAt,
)
from shoal.scheduler.coordination._holds import Holds


def owner_of(name: str) -> str:
    return f"queue:{name}"


@dataclass(slots=True)
class Getter:
    holder: str
    rid: int
    batch: int  # 0: one bare item; n > 0: a list of n
    deadline: float | None
    got: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class Putter:
    holder: str
    rid: int
    item: Item
    deadline: float | None


@dataclass(slots=True)
class Queue:
    maxsize: int
    items: deque[Item] = field(default_factory=deque)
    getters: deque[Getter] = field(default_factory=deque)
    putters: deque[Putter] = field(default_factory=deque)
    creates: int = 0  # Queue objects that created it and have not closed

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self.items)


class Queues:
    def __init__(self, out: list[Command], holds: Holds) -> None:
        self.out = out
        self.holds = holds
        self.queues: dict[str, Queue] = {}

    def _queue(self, name: str, maxsize: int = 0) -> Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queue(max(maxsize, 0))
        return q

    def create(self, ev: QueueCreate) -> None:
        q = self._queue(ev.name, ev.maxsize)
        q.creates += 1
        self.out.append(Reply(ev.holder, ev.rid, q.maxsize))

    def release(self, ev: QueueRelease) -> None:
        q = self.queues.get(ev.name)
        if q is None:
            return
        q.creates -= 1
        if q.creates > 0:
            return
        del self.queues[ev.name]
        closed = f"queue {ev.name!r} was closed (Queue.close) while waiting"
        for g in q.getters:
            q.items.extend(g.got)
            self.out.append(Fail(g.holder, g.rid, "RuntimeError", closed))
        for p in q.putters:
            q.items.append(p.item)
            self.out.append(Fail(p.holder, p.rid, "RuntimeError", closed))
        for item in q.items:
            self._forget_item(ev.name, q, item)

    def put(self, ev: QueuePut) -> None:
        q = self._queue(ev.name)
        if ev.item[0] == "future":
            self.holds.take(owner_of(ev.name), ev.item[1])
        if not q.full() and not q.putters:
            q.items.append(ev.item)
            self.out.append(Reply(ev.holder, ev.rid, None))
            self._serve(ev.name, q)
        elif ev.deadline is not None and ev.deadline <= ev.now:
            self._forget_item(ev.name, q, ev.item)
            self.out.append(Fail(ev.holder, ev.rid, "TimeoutError",
                                 f"queue {ev.name!r} stayed full (maxsize={q.maxsize})"))
        else:
            q.putters.append(Putter(ev.holder, ev.rid, ev.item, ev.deadline))
            if ev.deadline is not None:
                self.out.append(WakeAt(ev.deadline))

    def get(self, ev: QueueGet) -> None:
        q = self._queue(ev.name)
        if ev.batch < 0:  # everything there is now, without waiting
            got = list(q.items)
            q.items.clear()
            self._hand(ev.name, q, ev.holder, ev.rid, got, bare=False)
            self._admit_putters(q)
            return
        g = Getter(ev.holder, ev.rid, ev.batch, ev.deadline)
        q.getters.append(g)
        self._serve(ev.name, q)
        if q.getters and q.getters[-1] is g:  # still waiting
            if ev.deadline is not None and ev.deadline <= ev.now:
                q.getters.pop()
                self._end_getter(ev.name, q, g)
            elif ev.deadline is not None:
                self.out.append(WakeAt(ev.deadline))

    def size(self, ev: QueueSize) -> None:
        q = self.queues.get(ev.name)
        self.out.append(Reply(ev.holder, ev.rid, len(q.items) if q is not None else 0))

    def give_back(self, ev: QueueReturn) -> None:
        """Items a getter that had stopped waiting got: back to the front, held again (a
        future's key is the client's since it made its Future). A queue closed since
        keeps nothing, as it kept nothing of its own items."""
        q = self.queues.get(ev.name)
        if q is None:
            return
        for kind, value in ev.items:
            if kind == "future":
                self.holds.take(owner_of(ev.name), value)
        q.items.extendleft(reversed(ev.items))
        self._serve(ev.name, q)

    def withdraw(self, holder: str, rid: int) -> bool:
        """Take request ``rid`` of ``holder`` out of the line it waits in, if it waits."""
        for name, q in self.queues.items():
            for g in q.getters:
                if g.rid == rid and g.holder == holder:
                    q.getters.remove(g)
                    q.items.extendleft(reversed(g.got))  # half a batch goes back, in order
                    self._serve(name, q)
                    return True
            for p in q.putters:
                if p.rid == rid and p.holder == holder:
                    q.putters.remove(p)
                    self._forget_item(name, q, p.item)
                    return True
        return False

    def holder_left(self, holder: str) -> None:
        for name, q in self.queues.items():
            for g in [g for g in q.getters if g.holder == holder]:
                q.getters.remove(g)
                q.items.extendleft(reversed(g.got))  # half a batch goes back, in order
            for p in [p for p in q.putters if p.holder == holder]:
                q.putters.remove(p)
                self._forget_item(name, q, p.item)
            self._serve(name, q)

    def tick(self, now: float) -> None:
        for name, q in self.queues.items():
            for g in [g for g in q.getters if g.deadline is not None and g.deadline <= now]:
                q.getters.remove(g)
                self._end_getter(name, q, g)
            for p in [p for p in q.putters if p.deadline is not None and p.deadline <= now]:
                q.putters.remove(p)
                self._forget_item(name, q, p.item)
                self.out.append(Fail(p.holder, p.rid, "TimeoutError",
                                     f"queue {name!r} stayed full (maxsize={q.maxsize})"))
            self._serve(name, q)

    # --- moving items ---------------------------------------------------------------------------

    def _serve(self, name: str, q: Queue) -> None:
        """Hand items to the getters in order, letting waiting putters in as room appears."""
        self._admit_putters(q)
        while q.getters and q.items:
            g = q.getters[0]
            g.got.append(q.items.popleft())
            self._admit_putters(q)
            if len(g.got) >= max(g.batch, 1):
                q.getters.popleft()
                self._hand(name, q, g.holder, g.rid, g.got, bare=not g.batch)

    def _admit_putters(self, q: Queue) -> None:
        while q.putters and not q.full():
            p = q.putters.popleft()
            q.items.append(p.item)
            self.out.append(Reply(p.holder, p.rid, None))

    def _hand(self, name: str, q: Queue, holder: str, rid: int, items: list[Item],
              bare: bool) -> None:
        """Reply with ``items`` (the one item if ``bare``); their keys are handed over."""
        self.out.append(Reply(holder, rid, items[0] if bare else items))
        keys = [item[1] for item in items if item[0] == "future"]
        if keys:
            self.holds.hand_over(owner_of(name), holder, rid, keys)
            for key in keys:  # the hand-over holds them now, not the queue
                self.holds.let_go(owner_of(name), key)

    def _end_getter(self, name: str, q: Queue, g: Getter) -> None:
        q.items.extendleft(reversed(g.got))
        self.out.append(Fail(g.holder, g.rid, "TimeoutError", f"queue {name!r} stayed empty"))

    def _forget_item(self, name: str, q: Queue, item: Item) -> None:
        if item[0] == "future":
            self.holds.let_go(owner_of(name), item[1])

    def validate(self) -> None:
        for name, q in self.queues.items():
            assert not (q.getters and q.items), name  # someone waits while items sit there
            assert not q.putters or q.full(), name
            for item in [*q.items, *(p.item for p in q.putters),
                         *(i for g in q.getters for i in g.got)]:
                if item[0] == "future":
                    assert self.holds.held_by(owner_of(name))[item[1]] > 0, (name, item)
