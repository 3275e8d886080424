"""Which worker takes the next queued task: an index, so placing a task costs O(log workers).

The choice is exactly :func:`placement.least_busy` over the workers that
:func:`placement.has_room` for the task's expected duration, ties going to the worker that
joined first; but instead of scanning every worker for every task, workers sit in a heap keyed
by their load per thread. Workers whose load changed since they were last pushed are marked
dirty (:meth:`RoomIndex.touch`) and re-pushed on the next :meth:`RoomIndex.pick`; the entries
they leave behind are dropped when they surface (lazy invalidation). A worker without room
for the task asking is parked, keyed by the longest task it has room for
(:func:`placement.room_left`), until it changes or a task that short asks: a saturated
cluster costs nothing per event, even while the expected duration moves a little with every
report (parked by the duration it refused, every worker was looked at again each time the
estimate dipped). Pure: no I/O, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

from shoal.scheduler._placement import room_left
from shoal.scheduler._tasks import WorkerState

# (load per thread, join order, worker): the join order is unique, so workers never compare.
# An entry is told apart from a stale one by identity (``is``), so it is spelled as a tuple
# of any length: compiled (mypyc, see README) a fixed-length tuple is an unboxed struct,
# boxed into a new object at each use, and no entry would ever be found current.
_Entry = tuple[Any, ...]


def load(ws: WorkerState) -> float:
    """The key :func:`placement.least_busy` minimises."""
    return (ws.occupancy + (len(ws.processing) - len(ws.long_running)) * 1e-6) / ws.nthreads


class RoomIndex:
    """The workers that may take queued tasks, least busy first."""

    def __init__(self) -> None:
        self._order = itertools.count()
        self._seq: dict[WorkerState, int] = {}  # live workers -> join order
        self._entry: dict[WorkerState, _Entry] = {}  # each worker's one valid entry
        self._heap: list[_Entry] = []  # entries of workers that may have room
        self._full: list[tuple[float, int, _Entry]] = []  # parked: (-room left, order, entry)
        self._dirty: set[WorkerState] = set()
        # Told of every pick (est, the worker picked or None) while set: tests check the
        # scheduler's picks against a scan of all workers. A hook, because in the compiled
        # build (mypyc) neither the index nor the scheduler's attribute holding it can be
        # replaced by a wrapper. Read once per fill (``picker``), not per pick.
        self.check: Callable[[float, WorkerState | None], None] | None = None

    def picker(self) -> Callable[[float], WorkerState | None]:
        """:meth:`pick`, or while :attr:`check` is set, pick-then-check."""
        check = self.check
        if check is None:
            return self.pick
        pick = self.pick

        def checked(est: float) -> WorkerState | None:
            ws = pick(est)
            check(est, ws)
            return ws

        return checked

    def add(self, ws: WorkerState) -> None:
        self._seq[ws] = next(self._order)
        self._dirty.add(ws)

    def remove(self, ws: WorkerState) -> None:
        self._seq.pop(ws, None)
        self._entry.pop(ws, None)  # its entries go stale and drop out when they surface
        self._dirty.discard(ws)

    def touch(self, ws: WorkerState) -> None:
        """``ws``'s occupancy or task counts changed."""
        if ws in self._seq:
            self._dirty.add(ws)

    def pick(self, est: float) -> WorkerState | None:
        """The least busy worker with room for a task expected to last ``est`` seconds (the
        first joined among equals), or None. The caller touches it once it assigns to it."""
        entries = self._entry
        heap = self._heap
        full = self._full
        fresh: _Entry | None = None  # the last entry re-keyed here, known to have room
        if self._dirty:
            seq = self._seq
            for ws in self._dirty:
                entry: _Entry = (load(ws), seq[ws], ws)
                stale = entries.get(ws)
                entries[ws] = entry
                left = room_left(ws)
                if left >= est:
                    if heap and heap[0] is stale:
                        # Its old entry on top (the worker just picked, given a task):
                        # swapped in one sift, not pushed and later popped as stale.
                        heapreplace(heap, entry)
                    else:
                        heappush(heap, entry)
                    fresh = entry
                else:  # parked at once: it would only surface to be parked (below)
                    heappush(full, (-left, entry[1], entry))
            self._dirty.clear()
            if len(heap) + len(full) > 2 * len(seq) + 64:
                self._compact()
                heap, full = self._heap, self._full
        while full and -full[0][0] >= est:  # has room for this one
            entry = heappop(full)[2]
            if entries.get(entry[2]) is entry:
                heappush(heap, entry)
        while heap:
            entry = heap[0]
            ws = entry[2]
            if entries.get(ws) is not entry:
                heappop(heap)  # stale: the worker changed or left
            elif entry is fresh:  # its room measured above (nothing changed since)
                return ws
            else:
                left = room_left(ws)
                if left >= est:  # placement.has_room
                    return ws
                heappop(heap)
                heappush(full, (-left, entry[1], entry))
        return None

    def _compact(self) -> None:
        entries = self._entry
        self._heap = [e for e in self._heap if entries.get(e[2]) is e]
        self._full = [f for f in self._full if entries.get(f[2][2]) is f[2]]
        heapify(self._heap)
        heapify(self._full)

    def validate(self, workers: dict[str, WorkerState]) -> None:
        """Every live worker is indexed with its current load, or marked to be re-pushed."""
        live = set(workers.values())
        assert set(self._seq) == live, ("room index out of date", self._seq, live)
        for ws in live:
            if ws not in self._dirty:
                entry = self._entry.get(ws)
                assert entry is not None and entry[0] == load(ws), (ws.address, entry, load(ws))
