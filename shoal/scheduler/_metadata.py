"""``client.set_metadata`` / ``get_metadata``: small administrative data kept on the
scheduler (dask's ``Scheduler.task_metadata``), beside the task machine, not inside it.

Owns: one nested dict. A path of keys indexes into it, the inner dicts made on demand when
setting. A top-level entry whose key is a task's goes when that task is forgotten (the shell
asks the scheduler to watch each top-level key, ``ForgetWatched``, and calls ``forget``).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_MISSING = object()


class Metadata:
    """A nested dict addressed by paths of keys (a path of one key is the top level)."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def set(self, path: Sequence[Any], value: Any) -> None:
        """Set ``value`` at ``path``, making the dicts on the way.

        Raises:
            ValueError: an empty path, or a value that is not a dict on the way.
        """
        if not path:
            raise ValueError("set_metadata needs at least one key")
        where = self.data
        for i, key in enumerate(path[:-1]):
            inner = where.setdefault(key, {})
            if not isinstance(inner, dict):
                raise ValueError(f"metadata at {list(path[:i + 1])!r} is {type(inner).__name__}, "
                                 "not a dict: cannot set a key inside it")
            where = inner
        where[path[-1]] = value

    def get(self, path: Sequence[Any]) -> tuple[bool, Any]:
        """``(True, value)`` at ``path``, or ``(False, None)`` when nothing is there."""
        if not path:
            return True, self.data
        where: Any = self.data
        for key in path:
            if not isinstance(where, dict):
                return False, None
            where = where.get(key, _MISSING)
            if where is _MISSING:
                return False, None
        return True, where

    def forget(self, keys: Sequence[Any]) -> None:
        """Tasks of ``keys`` were forgotten: drop their top-level entries (dask drops a
        task's metadata with the task; entries under keys no task has stay)."""
        for key in keys:
            self.data.pop(key, None)

    def validate(self) -> None:
        assert isinstance(self.data, dict)
