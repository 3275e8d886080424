"""Find the futures held by arbitrary, possibly nested, user objects.

Owns only the walk: futures are recognised by the public Future interface (``key``,
``status``, ``done()``, ``add_done_callback()``), so this module does not import the client.
"""

from __future__ import annotations

from typing import Any

import dask


def is_future(obj: object) -> bool:
    """True for objects that behave like a shoal (or dask.distributed) Future.

    The check is on the type, not the instance: ``dask.delayed`` objects answer every
    attribute lookup, so an instance check would take them for futures.
    """
    cls = type(obj)
    return (
        not isinstance(obj, type)
        and callable(getattr(cls, "add_done_callback", None))
        and callable(getattr(cls, "done", None))
        and hasattr(obj, "key")
        and hasattr(obj, "status")
    )


def futures_of(obj: Any) -> list[Any]:
    """Return the futures found in ``obj``, in order of first appearance, without duplicates.

    Args:
        obj: a future; a list, tuple, set or dict nesting futures; or a dask collection
            (persisted array, dataframe, bag, delayed...) whose graph values are futures.

    Returns:
        A list of futures, one per distinct key. Objects that hold no futures give ``[]``.
    """
    found: list[Any] = []
    seen: set[Any] = set()
    stack: list[Any] = [obj]
    while stack:
        x = stack.pop()
        if is_future(x):
            key = x.key
            if key not in seen:
                seen.add(key)
                found.append(x)
        elif type(x) in (list, tuple, set, frozenset):
            stack.extend(reversed(list(x)))
        elif type(x) is dict:
            stack.extend(reversed(list(x.values())))
        elif dask.is_dask_collection(x):
            stack.extend(reversed(list(x.__dask_graph__().values())))
    return found
