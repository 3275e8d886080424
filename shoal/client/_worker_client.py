"""Clients for code running inside tasks: ``get_client``, ``worker_client`` and
``Client.current`` (dask.distributed's names and semantics).

Owns: the worker's own Client (created on first use inside a task, connected over TCP to
the worker's scheduler, shared by the workers of one process, closed with the last of them)
and the choice between it and the user's newest client. Must not know the executor's threads (``secede`` and
``rejoin`` are ``shoal/worker/_context.py``'s).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.client import _channel
from shoal.worker import _execute
from shoal.worker._context import current_executor, get_worker, rejoin, secede

if TYPE_CHECKING:
    from shoal.client._client import Client
    from shoal.worker._server import Worker

_create_lock = threading.Lock()  # one worker client per worker, even when tasks race
# The workers of one process share one client per scheduler, as dask's do (``shoal worker
# --no-nanny --nworkers N``, a processes=False cluster): with a client each, the newest took
# dask's default scheduler from the others, so ``x.compute()`` in their tasks ran on a
# client worker_client() had not given them, and on a closed one once its worker left.
# Guarded by _users_lock, which is never held across a wait (closing takes it on the loop).
_shared: dict[str, Client] = {}
_users: dict[int, weakref.WeakSet[Any]] = {}  # by id(client): the workers using it
_users_lock = threading.Lock()


def get_client(address: str | None = None, timeout: float | str | None = None,
               resolve_address: bool = True) -> Client:
    """A client connected to the cluster.

    Inside a task: the worker's own client, connected to the worker's scheduler, created
    on first use and shared by every task of that worker. Tasks use it to submit tasks and
    wait on them (call :func:`secede` first, or use :func:`worker_client`, so the waiting
    task does not hold a thread slot). Elsewhere: the most recently created client that is
    still open (or, with ``address``, one connected to that scheduler, else a new one).

    Raises:
        ValueError: outside a task, no client is open; create one with ``Client()``.
        OSError: the scheduler did not answer within ``timeout`` (seconds, or a dask
            duration such as ``"10s"``).
    """
    seconds = _seconds(timeout)
    executor = current_executor()
    if executor is not None and executor.worker is not None:
        worker = executor.worker
        if address is None or address == worker.scheduler_address:
            return _client_of(worker, seconds)
    executor = _execute.async_task_executor.get()
    if executor is not None and executor.worker is not None:
        worker = executor.worker
        if address is None or address == worker.scheduler_address:
            return _async_face_of(worker)
    from shoal.client import _client, _current

    if address is None:
        return _current.get_client()
    for ref in reversed(_current.clients):
        client = ref()
        if client is not None and client.status == "running" and (
            client.scheduler_address == address
        ):
            return client
    return _client.Client(address, timeout=seconds)


def _seconds(timeout: float | str | None) -> float:
    """Seconds from a number or a dask duration string; None: the Client default (10 s)."""
    if timeout is None:
        return 10.0
    if isinstance(timeout, str):
        from dask.utils import parse_timedelta

        return float(parse_timedelta(timeout))
    return float(timeout)


def current(allow_global: bool = True) -> Client:
    """``Client.current()``: the worker's client inside a task, else the newest open one.

    Raises:
        ValueError: no client is open.
    """
    return get_client()


@contextlib.contextmanager
def worker_client(timeout: float | str | None = None,
                  separate_thread: bool = True) -> Iterator[Client]:
    """Inside a task: ``with worker_client() as client:`` yields the worker's client, the
    task seceding from the thread pool on entry and rejoining it on exit (so it may wait on
    the tasks it submits without holding a slot). ``separate_thread=False`` keeps the slot.

    Raises:
        ValueError: used outside a task.
    """
    get_worker()  # a clear error outside a task
    client = get_client(timeout=timeout)
    if separate_thread:
        secede()
    try:
        yield client
    finally:
        if separate_thread:
            rejoin()


def local_client(timeout: float | str | None = None,
                 separate_thread: bool = True) -> contextlib.AbstractContextManager[Client]:
    """dask's old name for :func:`worker_client` (same arguments and behaviour); warns, as
    dask's does, that the name moved."""
    import warnings

    warnings.warn("local_client has moved to worker_client", stacklevel=2)
    return worker_client(timeout=timeout, separate_thread=separate_thread)


def _async_face_of(worker: Worker) -> Client:
    """The worker's client as an ``async def`` task sees it (on the worker's loop, where a
    blocking call cannot wait): asynchronous, as dask's is there. The client itself was
    connected by the task's thread before the task started (``prepare_async_task``).

    Raises:
        RuntimeError: the worker has no usable client (the task's function did not name
            ``get_client``, but a helper defined elsewhere that it called does).
    """
    client: Client | None = worker._client
    if client is None or not client._usable():
        raise RuntimeError(
            "get_client() in an async def task found no connected worker client: shoal "
            "connects it before such a task starts when the task's function names "
            "get_client, worker_client or Client; call get_client() in the async function "
            "itself (or once in a plain task of this worker first)")
    face = client.__dict__.get("_async_face")
    if face is None:
        from shoal.client._async_face import AsyncFace

        face = client.__dict__["_async_face"] = AsyncFace(client)
    return face


def prepare_async_task(worker: Worker, code: Any) -> None:
    """Before an ``async def`` task starts on the worker's loop, in its (waiting) task
    thread: connect the worker's client if the function may ask for it, since connecting
    blocks and the loop cannot wait."""
    if _may_ask_for_client(code):
        _client_of(worker, 10.0)


def _may_ask_for_client(code: Any) -> bool:
    """Whether ``code`` (or a function defined in it) names what returns the worker's
    client: ``get_client``, ``worker_client``, ``Client.current``, ``get_worker().client``."""
    names = getattr(code, "co_names", ())
    if ("get_client" in names or "worker_client" in names or "Client" in names
            or ("get_worker" in names and "client" in names)):
        return True
    return any(_may_ask_for_client(c) for c in getattr(code, "co_consts", ())
               if hasattr(c, "co_names"))


def _client_of(worker: Worker, timeout: float) -> Client:
    client: Client | None = worker._client
    if client is not None and client._usable():  # (reconnecting: it is still the one)
        return client
    address = worker.scheduler_address
    with _create_lock:
        client = worker._client
        if client is None or not client._usable():
            with _users_lock:
                client = _shared.get(address)
                if client is not None and client._usable():
                    _users[id(client)].add(worker)
                    worker._client = client
                    return client
            client = _connect(address, timeout, worker.security)
            with _users_lock:
                _shared[address] = client
                _users[id(client)] = weakref.WeakSet([worker])
            worker._client = client
    return client


def _connect(address: str, timeout: float, security: Any) -> Client:
    from shoal.client import _client, _current, _topics

    # In a worker process of its own it becomes dask's default scheduler there, as in dask
    # (``x.compute()`` in a task runs on the cluster). In a process that has the user's
    # clients (processes=False) it must not take their place.
    alone = not any(c is not None and c.status == "running"
                    for c in (r() for r in _current.clients))
    client = _client.Client(address, timeout=timeout, set_as_default=alone, name="worker",
                            security=security)
    # It is the worker's, not the user's: get_client() outside tasks (in a cluster with
    # processes=False, in this very process) keeps returning the user's newest client.
    _current.clients[:] = [r for r in _current.clients if r() is not client]
    # The user's clients print what tasks print; the worker's must not print it again.
    _topics.drop_default_handlers(client)
    return client


def close_worker_client(worker: Any) -> None:
    """Close the worker's client as the worker closes, without blocking the worker's loop
    (which may be shoal's shared loop itself): its connection closes on that loop, and the
    loss settles whatever its tasks still wait for (as "lost")."""
    client, worker._client = worker._client, None
    if client is None:
        return
    with _users_lock:
        users = _users.get(id(client))
        if users is not None:
            users.discard(worker)
            if len(users):
                return  # other workers of this process still use it
            del _users[id(client)]
        if _shared.get(worker.scheduler_address) is client:
            del _shared[worker.scheduler_address]
    _channel.close_all(client)  # its tasks' Lock channels: waiting tasks hear it
    if client._is_default:  # hand dask's default back (see Client._step_down_as_default)
        client._step_down_as_default()
    client._reconnects = False  # closing on purpose: its futures are lost, no reconnect
    conn = client._conn
    if conn is not None:
        _loop.call_soon(conn.close)


__all__ = ["current", "get_client", "worker_client"]
