"""Futures inside results: a Future that a task puts in its result (made there with
``get_client()`` or ``worker_client()``) comes back as a Future of the client reading the
result, which holds its key from then on.

Owns: how a Future pickles (``Future.__reduce__`` names ``rebuild``), and which client, if
any, the Futures being unpickled in this thread belong to (``reading`` / ``done_reading``
around the client's loads of results). A worker loading a task's arguments or data
(``shoal._task_refs.task_refs``) gets the bare ``TaskRef`` of its key, which the task's
graph resolves to the key's value. Anywhere else (``pickle.loads`` in the user's code) it
is a Future bound to no client, as dask's, which raises at its first use saying to
``bind_client`` it.

The key stays on the cluster until the reader holds it: the worker keeps the result (and so
the Futures in it, held by its worker client) in memory until the result is released, and
the reader's "I want these keys" goes out on its ordered outbox before any release of the
result it read them from. Spilled to disk first, the result drops those holds (a key
nobody else holds is then forgotten, and its Future reports it cancelled).

Must not import the facade (``_client.py``); imports ``_future`` only when binding.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dask._task_spec import TaskRef

from shoal._task_refs import loading_task_data
from shoal.protocol._messages import UpdateGraph

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client

_binding = threading.local()  # .client, .fresh: the reader in this thread, keys it newly holds


def rebuild(key: Any) -> Any:
    """Unpickling a Future: one of the reading client when one reads in this thread; a
    ``TaskRef`` of its key in a worker's loading of task data (``_task_refs.task_refs``);
    elsewhere (``pickle.loads`` in the user's code) a Future bound to no client, as
    dask's, whose ``result()`` says to bind it."""
    client = getattr(_binding, "client", None)
    if client is None and loading_task_data():
        return TaskRef(key)
    from shoal.client._future import Future

    if client is None:
        return Future._unbound(key)

    held = client._held(key)
    fut = Future(key, client)
    if not held:
        _binding.fresh.append(key)
    return fut


def reading(client: Client) -> tuple[Any, Any]:
    """Futures unpickled in this thread from now on belong to ``client``; returns what
    ``done_reading`` needs to restore the thread's earlier reader."""
    before = (getattr(_binding, "client", None), getattr(_binding, "fresh", None))
    _binding.client = client
    _binding.fresh = []
    return before


def done_reading(client: Client, before: tuple[Any, Any]) -> None:
    """End ``reading``: the scheduler hears which keys ``client`` holds now (it reports their
    state to it, and keeps them while it holds them)."""
    fresh = _binding.fresh
    _binding.client, _binding.fresh = before
    if fresh:
        client._send(UpdateGraph([], list(dict.fromkeys(fresh)), {}))


# Pickled Futures name this module (``rebuild``): a pickle stream without the name holds
# none, and is loaded without binding (a substring test instead of the thread-local's
# set-up, on every result read).
_MARK = __name__.encode()


def may_hold_futures(pickled: Any) -> bool:
    """Whether ``pickled`` (an inline result's one frame, or a ``Serialized``) may hold
    pickled Futures."""
    head = pickled if type(pickled) is bytes else pickled.frames[0]
    if not isinstance(head, (bytes, bytearray)):
        head = bytes(head)
    return _MARK in head


def settle_submissions(client: Client) -> None:
    """Block until the scheduler has read every message ``client`` queued so far: the
    answer to a request queued after them (``who_has`` of nothing) comes after them.

    Raises:
        TimeoutError: no answer within the client's timeout.
    """
    client._sync_request("who_has", client._timeout, keys=[])


def load_for(client: Client, load: Any, arg: Any) -> Any:
    """``load(arg)`` with the Futures in what it unpickles bound to ``client``."""
    before = reading(client)
    try:
        return load(arg)
    finally:
        done_reading(client, before)
