"""``Scheduler.tasks`` as users and plugins read it: dask hands out its live dict of
``TaskState`` by key, and plugins look tasks up in every hook.

Owns: a read-only mapping over the state's current task table. A lookup (``tasks[key]``,
``in``, ``get``, ``len``) costs what the dict's does, never a copy; iterating (and
``keys``/``values``/``items``) walks a copy taken when it starts, so that code in another
thread (``client.cluster.scheduler.tasks`` in the user's process) or a loop that lets the
scheduler run meanwhile never sees the table change under it. The table is read through the
state each time, so a view kept for long follows ``client.restart()`` (a new table).
Must not change anything.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.scheduler._state import SchedulerState
    from shoal.scheduler._tasks import TaskState


class TaskTable(Mapping[Any, "TaskState"]):
    """Key → task record (``.state``, ``.who_has``, ``.exception``...), live and read-only."""

    __slots__ = ("_state",)

    def __init__(self, state: SchedulerState) -> None:
        self._state = state

    def __getitem__(self, key: Any) -> TaskState:
        return self._state.tasks[key]

    def __contains__(self, key: object) -> bool:
        return key in self._state.tasks

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.tasks.get(key, default)

    def __len__(self) -> int:
        return len(self._state.tasks)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._state.tasks))

    def keys(self) -> KeysView[Any]:
        return dict(self._state.tasks).keys()

    def values(self) -> ValuesView[TaskState]:
        return dict(self._state.tasks).values()

    def items(self) -> ItemsView[Any, TaskState]:
        return dict(self._state.tasks).items()

    def __repr__(self) -> str:
        return f"<scheduler tasks: {len(self._state.tasks)}>"
