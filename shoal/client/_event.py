"""Event: a named flag kept by the scheduler, like asyncio.Event across the cluster
(dask.distributed's names, signatures and semantics; the state is in
shoal/scheduler/coordination)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from shoal.client._coord_faces import Ask, two_faced
from shoal.client._coordination import AwaitableSelf, ClientProperty, find_client
from shoal.client._timeouts import wait_timeout
from shoal.protocol._coord_messages import (
    CoordEventClear,
    CoordEventIsSet,
    CoordEventSet,
    CoordEventWait,
)

if TYPE_CHECKING:
    from shoal.client._client import Client


class Event(AwaitableSelf, ClientProperty):
    """A flag, False until ``set``; ``wait`` blocks until it is True.

    Args:
        name: shared by every Event that coordinates; random if None.
        client: the Client to use; default: the current one (the worker's inside a task).
    """

    def __init__(self, name: str | None = None, client: Client | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Event name must be a string, got {type(name).__name__}: {name!r}")
        self.name = name or f"event-{uuid.uuid4().hex}"
        self._client = client

    def _get_client(self) -> Client:
        client = find_client(self._client, "Event")
        if self._client is None:
            self._client = client
        return client

    @two_faced
    def wait(self, timeout: Any = None) -> Ask:
        """Wait until the flag is set.

        Returns:
            True once it is set; False if it was not within ``timeout`` seconds.
        """
        client = self._get_client()
        seconds = wait_timeout(timeout, "Event.wait")
        return Ask(client, lambda rid: CoordEventWait(rid, self.name, seconds), then=bool)

    @two_faced
    def set(self) -> Ask:
        """Set the flag: every waiter returns True."""
        return Ask(self._get_client(), lambda rid: CoordEventSet(rid, self.name))

    @two_faced
    def clear(self) -> Ask:
        """Clear the flag: waiters wait again."""
        return Ask(self._get_client(), lambda rid: CoordEventClear(rid, self.name))

    @two_faced
    def is_set(self) -> Ask:
        return Ask(self._get_client(), lambda rid: CoordEventIsSet(rid, self.name), then=bool)

    def __reduce__(self) -> Any:
        return (Event, (self.name,))

    def __repr__(self) -> str:
        return f"<Event: {self.name}>"
