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


def _check_slot(where: Any, key: Any, at: Sequence[Any]) -> None:
    if isinstance(where, list) and not (
            isinstance(key, int) and -len(where) <= key < len(where)):
        raise ValueError(f"metadata at {list(at)!r} is a list: {key!r} is not an index of it")


class Metadata:
    """A nested dict addressed by paths of keys (a path of one key is the top level)."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def set(self, path: Sequence[Any], value: Any) -> None:
        """Set ``value`` at ``path``, making the dicts on the way. As in dask, a value on
        the way that is not a dict or a list is replaced by a dict, and a list on the way is
        indexed (``set_metadata("x", 1)`` then ``set_metadata(["x", "y"], 2)`` leaves
        ``{"y": 2}`` at ``x``).

        Raises:
            ValueError: an empty path, or a key on the way into a list that is not an index
                of it.
        """
        if not path:
            raise ValueError("set_metadata needs at least one key")
        where: Any = self.data
        for i, key in enumerate(path[:-1]):
            _check_slot(where, key, path[:i])
            inner = where.get(key) if isinstance(where, dict) else where[key]
            if not isinstance(inner, (dict, list)):
                inner = where[key] = {}
            where = inner
        _check_slot(where, path[-1], path[:-1])
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
