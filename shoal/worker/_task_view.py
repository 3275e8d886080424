"""``get_worker().tasks`` / a WorkerPlugin's ``self.worker.tasks[key]``: dask's
``Worker.tasks``, the worker's task records as plugin and task code read them (``.key``,
``.state``, ``.dependencies``, and for a task that failed ``.exception``, ``.traceback``,
``.exception_text``, ``.traceback_text``), as in WorkerPlugin's docstring example.

Owns: a read-only view over ``WorkerState.tasks`` and the move a transition hook is being
told about (``Moving``: during the hook, the task reads as in its new state, with its error,
as dask's record does then). Must not know: task logic, plugins' registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple


class Moving(NamedTuple):
    """The move a worker plugin's ``transition`` hook is being told about."""

    key: Any
    finish: str
    error: dict[str, Any] | None


class TaskView:
    """One task as dask's worker ``TaskState`` reads (the attributes plugins use)."""

    __slots__ = ("_error", "dependencies", "key", "state")

    def __init__(self, key: Any, state: str, dependencies: tuple[Any, ...],
                 error: dict[str, Any] | None) -> None:
        self.key = key
        self.state = state
        self.dependencies = dependencies  # keys (dask has their records)
        self._error = error

    @property
    def exception(self) -> BaseException | None:
        """The exception the task raised (rebuilt from what the worker sends), or None."""
        from shoal.protocol._errors import error_to_exception

        return None if self._error is None else error_to_exception(self._error)

    @property
    def traceback(self) -> Any:
        from shoal.protocol._errors import error_traceback

        return None if self._error is None else error_traceback(self._error)

    @property
    def exception_text(self) -> str:
        if self._error is None:
            return ""
        return f"{self._error.get('type', 'Exception')}({self._error.get('message', '')!r})"

    @property
    def traceback_text(self) -> str:
        return "" if self._error is None else str(self._error.get("tb_text", ""))

    def __repr__(self) -> str:
        return f"<TaskState {self.key!r} {self.state}>"


class TasksView(Mapping[Any, TaskView]):
    """Key → :class:`TaskView` of the tasks the worker has now (read-only)."""

    def __init__(self, tasks: Mapping[Any, Any], moving: Moving | None) -> None:
        self._tasks = tasks
        self._moving = moving

    def __getitem__(self, key: Any) -> TaskView:
        ts = self._tasks[key]
        moving = self._moving
        if moving is not None and moving.key == key:
            return TaskView(key, moving.finish, ts.deps, moving.error)
        return TaskView(key, ts.state, ts.deps, None)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
