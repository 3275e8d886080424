"""The payload of a plain ``client.submit``/``map`` call: a function and literal arguments.

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
        from shoal._p import C  # a short name: it is in every payload

        return C, (self.func, self.args, self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"<Call {name}(...)>"
