"""Queue: a multi-producer, multi-consumer queue kept by the scheduler (dask.distributed's
names, signatures and semantics; the state is in shoal/scheduler/coordination).

Values are pickled (anything picklable, not only msgpack data as dask documents) and pass
through the scheduler: share large data as a future. A queued future keeps its key in the
cluster until a get hands it over; the getter receives a Future of its own client.

``put`` of data on a queue without a maxsize cannot wait or fail on the scheduler, so it
returns once the value is on its way, in order with this client's later messages (a get
after it sees it), without waiting for the scheduler's answer: half the round trips of
dask's put + get.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from dask.utils import parse_timedelta

from shoal.client._coordination import (
    AwaitableSelf,
    ClientProperty,
    adopt,
    adopt_all,
    call,
    encode,
    find_client,
    send,
    two_faced,
    value_of,
)
from shoal.protocol._coord_messages import (
    CoordQueueCreate,
    CoordQueueGet,
    CoordQueuePut,
    CoordQueueRelease,
    CoordQueueSize,
)

if TYPE_CHECKING:
    from shoal.client._client import Client


class Queue(AwaitableSelf, ClientProperty):
    """A named queue shared by every client and task that uses the same name.

    Args:
        name: shared by every Queue that coordinates; random if None.
        client: the Client to use; default: the current one (the worker's inside a task).
        maxsize: how many items it holds before ``put`` waits; 0: no limit. The first
            Queue of a name to reach the scheduler sets it.
    """

    def __init__(self, name: str | None = None, client: Client | None = None,
                 maxsize: int = 0) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Queue name must be a string, got {type(name).__name__}: {name!r}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an integer >= 0, got {maxsize!r}")
        self.name = name or f"queue-{uuid.uuid4().hex}"
        self.maxsize = maxsize
        self._client = client
        self._created_on: Client | None = None
        self._bounded = True  # until the scheduler says which maxsize is in force
        try:
            self._get_client()
        except ValueError:
            pass  # created at first use, once a client exists

    def _get_client(self) -> Client:
        client = find_client(self._client, "Queue")
        if self._created_on is not client:
            in_force = call(client, lambda rid: CoordQueueCreate(rid, self.name, self.maxsize))
            self._bounded = bool(in_force)
            self._created_on = client
        return client

    @two_faced
    def put(self, value: Any, timeout: Any = None, **kwargs: Any) -> None:
        """Add ``value`` (data or a Future) at the end, waiting for room if the queue is full.

        Raises:
            TimeoutError: still full after ``timeout`` seconds.
            TypeError: ``value`` cannot be pickled.
        """
        client = self._get_client()
        seconds = parse_timedelta(timeout)
        item = encode(value)
        if item[0] == "data" and not self._bounded:
            send(client, CoordQueuePut(0, self.name, item, None))  # nothing to wait for
            return
        call(client, lambda rid: CoordQueuePut(rid, self.name, item, seconds))

    @two_faced
    def get(self, timeout: Any = None, batch: bool | int = False, **kwargs: Any) -> Any:
        """Take the first value, waiting for one.

        Args:
            timeout: seconds (or "200ms") to wait; None waits as long as it takes.
            batch: False: one value; True: a list of every value queued now (never waits);
                an integer n: a list of the next n values (waits for all n).

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds.
            NotImplementedError: an integer ``batch`` with a ``timeout`` (as in dask).
        """
        seconds = parse_timedelta(timeout)
        if batch is True:
            n = -1
        elif batch is False:
            n = 0
        elif isinstance(batch, int) and batch >= 0:
            if seconds is not None:
                raise NotImplementedError(
                    "Dask queues don't support simultaneous use of integer batch sizes and "
                    "timeouts (nor do shoal's): use batch=True or no timeout")
            if batch == 0:
                return []
            n = batch
        else:
            raise ValueError(f"batch must be True, False or an integer >= 0, got {batch!r}")
        client = self._get_client()
        if n == 0:
            item = call(client, lambda rid: CoordQueueGet(rid, self.name, 0, seconds), adopt)
            return value_of(item)
        items = call(client, lambda rid: CoordQueueGet(rid, self.name, n, seconds), adopt_all)
        return [value_of(item) for item in items]

    @two_faced
    def qsize(self, **kwargs: Any) -> int:
        """How many values are queued now."""
        client = self._get_client()
        return int(call(client, lambda rid: CoordQueueSize(rid, self.name)))

    def close(self) -> None:
        """Done with this queue (dask's ``Queue.close``): once every Queue object that
        created it has closed, the scheduler forgets it, lets go of the futures still in
        it, and fails whoever still waits on it with RuntimeError. Using this object again
        creates the queue anew. Returns once the release is on its way, in order with this
        client's earlier messages."""
        client = self._created_on
        if client is None or client.status in ("closing", "closed"):
            return  # never created, or its client is gone (and the scheduler, maybe)
        self._created_on = None
        send(client, CoordQueueRelease(self.name))

    def __reduce__(self) -> Any:
        return (type(self), (self.name, None, self.maxsize))

    def __repr__(self) -> str:
        return f"<Queue: {self.name}>"
