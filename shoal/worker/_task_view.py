"""``get_worker().tasks`` / a WorkerPlugin's ``self.worker.tasks[key]``: dask's
``Worker.tasks``, the worker's task records as plugin and task code read them (``.key``,
``.state``, ``.dependencies``, and for a task that failed ``.exception``, ``.traceback``,
``.exception_text``, ``.traceback_text``), as in WorkerPlugin's docstring example. The
values the worker holds read as tasks in ``"memory"`` (with ``.nbytes``), as dask keeps
them: shoal's worker state drops a task's record once its value is stored.

Owns: a read-only view over ``WorkerState.tasks`` and ``.held`` and the move a transition hook is being
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

    __slots__ = ("_error", "dependencies", "key", "nbytes", "state")

    def __init__(self, key: Any, state: str, dependencies: tuple[Any, ...],
                 error: dict[str, Any] | None, nbytes: int | None = None) -> None:
        self.key = key
        self.state = state
        self.dependencies = dependencies  # keys (dask has their records)
        self._error = error
        self.nbytes = nbytes  # of its value, once held (None before)

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
    """Key → :class:`TaskView` of the tasks the worker has now and the values it holds
    (read-only)."""

    def __init__(self, tasks: Mapping[Any, Any], moving: Moving | None,
                 held: Mapping[Any, int] | None = None) -> None:
        self._tasks = tasks
        self._moving = moving
        self._held: Mapping[Any, int] = {} if held is None else held

    def __getitem__(self, key: Any) -> TaskView:
        ts = self._tasks.get(key)
        nbytes = self._held.get(key)
        if ts is None and nbytes is None:
            raise KeyError(key)
        deps = () if ts is None else ts.deps
        moving = self._moving
        if moving is not None and moving.key == key:
            return TaskView(key, moving.finish, deps, moving.error, nbytes)
        return TaskView(key, "memory" if ts is None else ts.state, deps, None, nbytes)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks or key in self._held

    def __iter__(self) -> Iterator[Any]:
        tasks = self._tasks
        return iter([*tasks, *(k for k in self._held if k not in tasks)])

    def __len__(self) -> int:
        tasks = self._tasks
        return len(tasks) + sum(1 for k in self._held if k not in tasks)
