"""Futures inside the structures users pass around (lists, tuples, sets, dicts, nested,
persisted dask collections): finding them, and putting results back in their place."""

from __future__ import annotations

from typing import Any

import dask

from shoal.client._future import Future


def collect_futures(obj: Any, out: list[Future], collections: bool = False) -> None:
    """Append every Future found in ``obj`` (depth first) to ``out``; with ``collections``,
    also those a dask collection's graph holds (a persisted array...), as dask's operations
    on futures read them (``who_has``, ``replicate``, ``rebalance``, ``cancel``, ``retry``)."""
    if isinstance(obj, Future):
        out.append(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for o in obj:
            collect_futures(o, out, collections)
    elif isinstance(obj, dict):
        for o in obj.values():
            collect_futures(o, out, collections)
    elif collections and dask.is_dask_collection(obj):
        for o in obj.__dask_graph__().values():
            if isinstance(o, Future):
                out.append(o)


def rebuild(obj: Any, values: dict[Any, Any], failed: set[Any]) -> Any:
    """``obj`` with each Future replaced by its value, as dask's ``gather(errors="skip")``
    shapes it: a future in ``failed`` that is an item of ``obj`` itself, a list, is left
    out; anywhere else (a tuple, dict or set, nested, or ``obj`` alone) it becomes None."""
    if failed and type(obj) is list:
        return [_rebuilt(o, values, failed) for o in obj
                if not (isinstance(o, Future) and o.key in failed)]
    return _rebuilt(obj, values, failed)


def _rebuilt(obj: Any, values: dict[Any, Any], failed: set[Any]) -> Any:
    if isinstance(obj, Future):
        return None if obj.key in failed else values[obj.key]
    if isinstance(obj, list):
        return [_rebuilt(o, values, failed) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_rebuilt(o, values, failed) for o in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_rebuilt(o, values, failed) for o in obj)
    if isinstance(obj, dict):
        return {k: _rebuilt(v, values, failed) for k, v in obj.items()}
    return obj


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


def futures_of(o: Any, client: Any = None) -> list[Any]:
    """Return the futures found in ``o``, in order of first appearance.

    As dask's: each Future object once (a future seen twice is listed once), but distinct
    Future objects of one key are each listed.

    Args:
        o: a future; a list, tuple, set or dict nesting futures; or a dask collection
            (persisted array, dataframe, bag, delayed...) whose graph values are futures.
        client: when given, a cancelled future among those found is an error.

    Returns:
        A list of futures. Objects that hold no futures give ``[]``.

    Raises:
        concurrent.futures.CancelledError: ``client`` was given and a future found was
            cancelled (dask's ``FuturesCancelledError``); the message names their keys.
    """
    found = _futures_in(o)
    if client is not None:
        cancelled = [f.key for f in found if f.cancelled()]
        if cancelled:
            import concurrent.futures

            shown = ", ".join(repr(k) for k in cancelled[:5])
            more = f" and {len(cancelled) - 5} more" if len(cancelled) > 5 else ""
            raise concurrent.futures.CancelledError(
                f"{len(cancelled)} future(s) were cancelled: {shown}{more}; submit them again "
                "(or leave client= out to list them without this check)")
    return found


def _futures_in(obj: Any) -> list[Any]:
    # The usual argument, a map's list of futures: checked and deduplicated in bulk
    # (is_future's four lookups per item were most of ``wait`` on a million).
    if (type(obj) in (list, tuple) and len(obj) > 1 and set(map(type, obj)) == {Future}
            and len(set(map(id, obj))) == len(obj)):
        return list(obj)
    found: list[Any] = []
    seen: set[int] = set()
    stack: list[Any] = [obj]
    while stack:
        x = stack.pop()
        if is_future(x):
            if id(x) not in seen:  # the object, not its key: dask keeps each Future
                seen.add(id(x))
                found.append(x)
        elif type(x) in (list, tuple, set, frozenset):
            stack.extend(reversed(list(x)))
        elif type(x) is dict:
            stack.extend(reversed(list(x.values())))
        elif dask.is_dask_collection(x):
            stack.extend(reversed(list(x.__dask_graph__().values())))
    return found
