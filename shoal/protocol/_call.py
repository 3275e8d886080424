"""The payloads of plain calls: ``Call`` (``client.submit``/``map`` with literal arguments)
and ``RefCall`` (a dask task whose arguments refer to other keys).

dask's ``Task`` handles futures inside arguments; a call without any is pickled and run
through this smaller object instead (a third of the pickling cost on the per-task path).
Both are called the same way by the worker: ``payload(values)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_NO_DEPS: frozenset[Any] = frozenset()


class Call:
    __slots__ = ("args", "func", "kwargs")

    dependencies = _NO_DEPS

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def __call__(self, values: Any = ()) -> Any:
        return self.func(*self.args, **self.kwargs)

    def __reduce__(self) -> Any:
        return Call, (self.func, self.args, self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"<Call {name}(...)>"


class RefCall:
    """The payload of a dask ``Task`` whose arguments are literals and references to other
    keys (``TaskRef``), nothing nested: the shape of nearly every task of a ``delayed``
    graph. It runs as the Task would (each reference replaced by its key's value) and
    pickles as a function, builtins and one small object, where a Task also pickles its
    dependency set, token, repr cache and a ``TaskRef`` object per input: about half the
    cost on the client, and less to load on the worker.

    ``args``/``kwargs`` hold None where ``refs`` says a key's value goes: ``refs`` is a
    tuple of ``(position or keyword, key)``.
    """

    __slots__ = ("_deps", "args", "func", "kwargs", "refs")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 refs: tuple[tuple[int | str, Any], ...],
                 dependencies: frozenset[Any] | None = None) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.refs = refs
        self._deps = dependencies  # the task's, known where it is made (not pickled)

    @property
    def dependencies(self) -> frozenset[Any]:
        if self._deps is None:
            self._deps = frozenset(key for _, key in self.refs)
        return self._deps

    def __call__(self, values: Any = ()) -> Any:
        if not self.refs:
            return self.func(*self.args, **self.kwargs)
        args = list(self.args)
        kwargs = dict(self.kwargs) if self.kwargs else self.kwargs
        for slot, key in self.refs:
            if isinstance(slot, int):
                args[slot] = values[key]
            else:
                kwargs[slot] = values[key]
        return self.func(*args, **kwargs)

    def __reduce__(self) -> Any:
        return RefCall, (self.func, self.args, self.kwargs, self.refs)

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"<RefCall {name}(...)>"

