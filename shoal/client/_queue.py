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

import inspect
import uuid
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from shoal.client._coord_faces import Ask, Tell, awaited_here, blocking, two_faced
from shoal.client._coordination import (
    ClientProperty,
    adopt,
    adopt_all,
    encode,
    encode_again,
    find_client,
    send,
    value_of,
)
from shoal.client._timeouts import wait_timeout
from shoal.protocol._coord_messages import (
    CoordQueueCreate,
    CoordQueueGet,
    CoordQueuePut,
    CoordQueueRelease,
    CoordQueueReturn,
    CoordQueueSize,
)

if TYPE_CHECKING:
    from shoal.client._client import Client


def _nothing() -> None:
    return None


def _values_of(items: list[Any]) -> list[Any]:
    return [value_of(item) for item in items]


class Queue(ClientProperty):
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
            found = find_client(client, "Queue")
        except ValueError:
            return  # created at first use, once a client exists
        if not awaited_here(found):  # (an asynchronous one creates it when awaited)
            blocking(self._on(found, _nothing))

    def __await__(self) -> Generator[Any, None, Queue]:
        """dask's asynchronous constructor: ``q = await Queue(...)`` creates the queue on
        the scheduler (with this object's maxsize) and gives the object back."""
        return self._create_awaited().__await__()

    async def _create_awaited(self) -> Queue:
        created = self._create()
        if inspect.isawaitable(created):
            await created
        return self

    @two_faced
    def _create(self) -> Any:
        return self._on(find_client(self._client, "Queue"), _nothing)

    def _on(self, client: Client, step: Callable[[], Any]) -> Any:
        """``step()`` once the queue is created on ``client``'s scheduler (the first use
        asks for it, with this object's maxsize; later ones, even while that request is on
        its way, do not)."""
        if self._created_on is client:
            return step()
        self._created_on = client

        def answered(in_force: Any) -> Any:
            self._create_answered(client, in_force)
            return step()

        def failed(exc: BaseException) -> None:
            if isinstance(exc, Exception) and self._created_on is client:
                self._created_on = None  # (cancelled or interrupted, it is created all the same)

        return Ask(client, lambda rid: CoordQueueCreate(rid, self.name, self.maxsize),
                   undo=self._create_answered, then=answered, failed=failed)

    def _create_answered(self, client: Client, in_force: Any) -> None:
        self._bounded = bool(in_force)

    @two_faced
    def put(self, value: Any, timeout: Any = None, **kwargs: Any) -> Any:
        """Add ``value`` (data or a Future) at the end, waiting for room if the queue is full.

        Raises:
            TimeoutError: still full after ``timeout`` seconds.
            TypeError: ``value`` cannot be pickled.
        """
        client = find_client(self._client, "Queue")
        seconds = wait_timeout(timeout, "Queue.put")
        item = encode(value)
        if self._created_on is not client:
            return self._on(client, lambda: self._put(client, item, seconds))
        return self._put(client, item, seconds)

    def _put(self, client: Client, item: tuple[str, Any], seconds: float | None) -> Ask | Tell:
        if item[0] == "data" and not self._bounded:  # nothing to wait for
            return Tell(client, CoordQueuePut(0, self.name, item, None))
        return Ask(client, lambda rid: CoordQueuePut(rid, self.name, item, seconds))

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
        seconds = wait_timeout(timeout, "Queue.get")
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
        client = find_client(self._client, "Queue")
        if self._created_on is not client:
            return self._on(client, lambda: self._get(client, n, seconds))
        return self._get(client, n, seconds)

    def _get(self, client: Client, n: int, seconds: float | None) -> Ask:
        if n == 0:
            return Ask(client, lambda rid: CoordQueueGet(rid, self.name, 0, seconds), adopt,
                       self._give_back_one, value_of)
        return Ask(client, lambda rid: CoordQueueGet(rid, self.name, n, seconds), adopt_all,
                   self._give_back, _values_of)

    def _give_back_one(self, client: Client, item: Any) -> None:
        self._give_back(client, [item])

    def _give_back(self, client: Client, items: list[Any]) -> None:
        """A get was cancelled or interrupted, but items came: back to the front of the
        queue, through ``client``, the one that asked, even if this object was closed
        since (another may keep the queue open; a queue every object closed drops them as
        it dropped its other items)."""
        if items:
            send(client, CoordQueueReturn(self.name, [encode_again(item) for item in items]))

    @two_faced
    def qsize(self, **kwargs: Any) -> Any:
        """How many values are queued now."""
        client = find_client(self._client, "Queue")
        return self._on(client, lambda: Ask(client, lambda rid: CoordQueueSize(rid, self.name),
                                            then=int))

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
