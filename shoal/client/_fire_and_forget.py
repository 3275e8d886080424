"""``fire_and_forget``: run futures to completion even after every client let go of them.

Owns: telling each future's client's scheduler which keys to hold. The scheduler holds them
(and so their inputs) with a pseudo-client until each finishes (``SchedulerState``).
"""

from __future__ import annotations

from typing import Any

from shoal.client._structure import futures_of
from shoal.protocol._messages import FireAndForget


def fire_and_forget(obj: Any) -> None:
    """Run the tasks behind ``obj`` at least once, even if their futures are released and
    their client closes. Results are not kept (unless a future still holds them): use it
    for tasks run for their side effects.

    Args:
        obj: a Future, a list/dict nesting futures, or a persisted dask collection.

    Raises:
        TypeError: ``obj`` holds no futures.
    """
    futures = futures_of(obj)
    if not futures and obj is not None and not isinstance(obj, (list, tuple, set, dict)):
        raise TypeError(
            f"fire_and_forget takes futures (or collections of them), got {type(obj).__name__}"
        )
    by_client: dict[int, tuple[Any, list[Any]]] = {}
    for fut in futures:
        client = fut.client
        if client is None:
            continue  # a released future: nothing to hold on its behalf
        by_client.setdefault(id(client), (client, []))[1].append(fut.key)
    for client, keys in by_client.values():
        client._check_open()
        client._send(FireAndForget(keys))  # in order, after the keys' submission
