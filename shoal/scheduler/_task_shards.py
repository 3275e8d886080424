"""The scheduler's task table past a few hundred thousand tasks: one dict split in parts.

Owns: ``TaskShards``, a key → ``TaskState`` table with the dict methods the scheduler uses,
and the sizes at which the state swaps its plain dict for one (``SHARD_AT``) and back
(``MERGE_AT``).

Why: a dict grows by rebuilding its whole table in one C call, at the next power of two. At
699,050 tasks that is a 2^21-slot table (42 MB of fresh pages) built in one step of the
scheduler's loop: 27-121 ms measured during ``da.ones(1_000_000, chunks=1).sum()``, the step
that kept issue 14's "loop never blocked for more than 100 ms" from being met. Here the table
the plain dict had when it got large stays as it is (``base``: no insert goes to it again, so
it never grows) and is moved into the parts ``MOVE_STEP`` tasks per graph piece; new tasks go
to 16 parts chosen by the key's hash. The parts take unequal shares of the keys (from 1x to
2x, in steps of 2^(1/16)), so they reach their growth points at different sizes of the whole
table: one piece of a graph grows at most about one part, a sixteenth of the table, never all
of them at once.

A lookup costs a Python call, a ``hash`` and a list index more than a dict's (+0.35 µs
measured, ~5 a task; more while the base is still being moved), which only tables past
``SHARD_AT`` pay; smaller ones stay a plain dict. Iteration order is the base's, then each
part's: not insertion order across parts. Must not know: tasks' states.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any, TypeVar, overload

from shoal.scheduler._tasks import Key, TaskState

# A graph piece that would take a plain table past this many tasks swaps it for shards:
# below the 349,525 entries at which a dict's 2^19-slot table is rebuilt into 2^20 slots
# (21 MB), with room for the deleted entries a long-running table also counts.
SHARD_AT = 300_000
# Shards whose tasks fall below this many (a large graph released) become one dict again, at
# a copy of at most this many entries (a few ms).
MERGE_AT = 50_000
# Tasks of the base moved into the parts per graph piece (about 1-2 ms): a 300,000-task base
# is gone after 60 pieces, and from then on a lookup is one dict's.
MOVE_STEP = 5_000

PARTS = 16
_ROUTES = 256  # hash(key) & (_ROUTES - 1) picks a route; each route names one part


def _shares() -> list[int]:
    """Routes per part: proportional to 2^(i/PARTS), so the parts' sizes are spread over a
    factor of 2 and their growth points over each doubling of the whole table."""
    weights = [2 ** (i / PARTS) for i in range(PARTS)]
    total = sum(weights)
    shares = [round(_ROUTES * w / total) for w in weights]
    shares[-1] += _ROUTES - sum(shares)
    return shares


_SHARES = _shares()
_T = TypeVar("_T")
_MISSING: Any = object()


class TaskShards:
    """Key → ``TaskState``, as a dict (``get``, ``[]``, ``in``, ``pop``, ``del``, ``len``,
    ``keys``/``values``/``items``, iteration, ``copy``), kept in parts that each grow alone."""

    __slots__ = ("_base", "_parts", "_route")

    def __init__(self, base: dict[Key, TaskState]) -> None:
        self._base = base  # takes no new key, so it never grows; moved into the parts
        self._parts: list[dict[Key, TaskState]] = [{} for _ in range(PARTS)]
        self._route = [part for part, n in zip(self._parts, _SHARES, strict=True)
                       for _ in range(n)]

    @overload
    def get(self, key: Key) -> TaskState | None: ...
    @overload
    def get(self, key: Key, default: _T) -> TaskState | _T: ...

    def get(self, key: Key, default: Any = None) -> Any:
        ts = self._route[hash(key) & 255].get(key)
        if ts is None:
            base = self._base
            if base:
                ts = base.get(key)
            if ts is None:
                return default
        return ts

    def __getitem__(self, key: Key) -> TaskState:
        ts = self.get(key)
        if ts is None:
            raise KeyError(key)
        return ts

    def __setitem__(self, key: Key, ts: TaskState) -> None:
        base = self._base
        if base and key in base:
            base[key] = ts
        else:
            self._route[hash(key) & 255][key] = ts

    def __delitem__(self, key: Key) -> None:
        if self.pop(key, _MISSING) is _MISSING:
            raise KeyError(key)

    @overload
    def pop(self, key: Key) -> TaskState: ...
    @overload
    def pop(self, key: Key, default: _T) -> TaskState | _T: ...

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        ts = self._route[hash(key) & 255].pop(key, _MISSING)
        if ts is _MISSING:
            base = self._base
            ts = base.pop(key, default) if base else default
            if ts is _MISSING:
                raise KeyError(key)
        return ts

    def __contains__(self, key: object) -> bool:
        if key in self._route[hash(key) & 255]:
            return True
        base = self._base
        return bool(base) and key in base

    def move(self, n: int) -> None:
        """Move up to ``n`` tasks of the base into the parts; an empty base is let go of."""
        base = self._base
        if not base:
            return
        route = self._route
        pop = base.popitem
        for _ in range(min(n, len(base))):
            key, ts = pop()
            route[hash(key) & 255][key] = ts
        if not base:
            self._base = {}  # (its table, sized for the whole base, is freed)

    def __len__(self) -> int:
        return len(self._base) + sum(map(len, self._parts))

    def __bool__(self) -> bool:
        return bool(self._base) or any(self._parts)

    def __iter__(self) -> Iterator[Key]:
        return chain(self._base, *self._parts)

    def keys(self) -> Iterable[Key]:
        return chain(self._base, *self._parts)

    def values(self) -> Iterable[TaskState]:
        return chain(self._base.values(), *[p.values() for p in self._parts])

    def items(self) -> Iterable[tuple[Key, TaskState]]:
        return chain(self._base.items(), *[p.items() for p in self._parts])

    def copy(self) -> dict[Key, TaskState]:
        """One dict of every task (each part copied whole, in one C call)."""
        merged = dict(self._base)
        for part in self._parts:
            merged.update(part)
        return merged

    def parts(self) -> list[dict[Key, TaskState]]:
        """The dicts the tasks are kept in, the base first (for measuring their sizes)."""
        return [self._base, *self._parts]

    def __eq__(self, other: object) -> bool:
        """Equal to a mapping of the same tasks by key, as a dict is (order aside)."""
        if isinstance(other, TaskShards | dict):
            return self.copy() == (other if type(other) is dict else other.copy())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable, as a dict)

    def __repr__(self) -> str:
        return f"<TaskShards: {len(self)} tasks in {PARTS} parts and a base of {len(self._base)}>"


Tasks = dict[Key, TaskState] | TaskShards


def sharded_for(tasks: Tasks, adding: int) -> Tasks:
    """``tasks``, or shards over it when a plain table would pass ``SHARD_AT`` with
    ``adding`` more tasks (shards already: ``MOVE_STEP`` more of their base moved)."""
    if isinstance(tasks, TaskShards):
        tasks.move(MOVE_STEP)
    elif len(tasks) + adding > SHARD_AT:
        return TaskShards(tasks)
    return tasks


def merged_if_small(tasks: Tasks) -> Tasks:
    """``tasks`` as one plain dict again once shards hold fewer than ``MERGE_AT`` tasks."""
    if type(tasks) is TaskShards and len(tasks) < MERGE_AT:
        return tasks.copy()
    return tasks
