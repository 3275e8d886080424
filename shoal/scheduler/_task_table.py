"""``Scheduler.tasks`` as users and plugins read it: dask hands out its live dict of
``TaskState`` by key, and plugins look tasks up in every hook.

Owns: a read-only mapping over the state's current task table, whose values are dask's
``TaskState`` as plugins read it (``_records.TaskStateView``, made per lookup). A lookup
(``tasks[key]``, ``in``, ``get``, ``len``) costs what the dict's does and one small view,
never a copy; iterating (and
``keys``/``values``/``items``) walks a copy taken when it starts, so that code in another
thread (``client.cluster.scheduler.tasks`` in the user's process) or a loop that lets the
scheduler run meanwhile never sees the table change under it. The table is read through the
state each time, so a view kept for long follows ``client.restart()`` (a new table).
Must not change anything.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any

from shoal.scheduler._records import TaskStateView

if TYPE_CHECKING:
    from shoal.scheduler._server import Scheduler


class TaskTable(Mapping[Any, TaskStateView]):
    """Key → task record (``.state``, ``.who_has``, ``.prefix.name``...), live and
    read-only."""

    __slots__ = ("_sched",)

    def __init__(self, sched: Scheduler) -> None:
        self._sched = sched

    def __getitem__(self, key: Any) -> TaskStateView:
        return TaskStateView(self._sched.state.tasks[key], self._sched)

    def __contains__(self, key: object) -> bool:
        return key in self._sched.state.tasks

    def get(self, key: Any, default: Any = None) -> Any:
        ts = self._sched.state.tasks.get(key)
        return default if ts is None else TaskStateView(ts, self._sched)

    def __len__(self) -> int:
        return len(self._sched.state.tasks)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._sched.state.tasks))

    def keys(self) -> KeysView[Any]:
        return self._sched.state.tasks.copy().keys()

    def values(self) -> ValuesView[TaskStateView]:
        return self._views().values()

    def items(self) -> ItemsView[Any, TaskStateView]:
        return self._views().items()

    def _views(self) -> dict[Any, TaskStateView]:
        sched = self._sched
        return {k: TaskStateView(ts, sched) for k, ts in list(sched.state.tasks.items())}

    def __repr__(self) -> str:
        return f"<scheduler tasks: {len(self._sched.state.tasks)}>"
