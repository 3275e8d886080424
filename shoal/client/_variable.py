"""Variable: a named value kept by the scheduler (dask.distributed's names, signatures
and semantics; the state is in shoal/scheduler/coordination).

Values are pickled at ``set`` (anything picklable) and pass through the scheduler: share
large data as a future. A future set as the value keeps its key in the cluster until the
value is replaced or deleted; ``get`` returns a Future of the getting client.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from shoal.client._coord_faces import Ask, Tell, two_faced
from shoal.client._coordination import ClientProperty, adopt, encode, find_client, value_of
from shoal.client._timeouts import wait_timeout
from shoal.protocol._coord_messages import CoordVariableDelete, CoordVariableGet, CoordVariableSet

if TYPE_CHECKING:
    from shoal.client._client import Client


class Variable(ClientProperty):
    """A named value shared by every client and task that uses the same name.

    Args:
        name: shared by every Variable that coordinates; random if None.
        client: the Client to use; default: the current one (the worker's inside a task).
    """

    def __init__(self, name: str | None = None, client: Client | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"Variable name must be a string, got {type(name).__name__}: {name!r}")
        self.name = name or f"variable-{uuid.uuid4().hex}"
        self._client = client

    def _get_client(self) -> Client:
        client = find_client(self._client, "Variable")
        if self._client is None:
            self._client = client
        return client

    @two_faced
    def set(self, value: Any, timeout: Any = "30 s", **kwargs: Any) -> Ask:
        """Make ``value`` (data or a Future) the variable's value.

        Raises:
            TypeError: ``value`` cannot be pickled.
            ValueError: ``value`` is a future whose key the cluster no longer holds.
        """
        client = self._get_client()
        item = encode(value)
        return Ask(client, lambda rid: CoordVariableSet(rid, self.name, item))

    @two_faced
    def get(self, timeout: Any = None, **kwargs: Any) -> Ask:
        """The current value, waiting for a first one to be set.

        Raises:
            TimeoutError: nothing was set within ``timeout`` seconds.
        """
        client = self._get_client()
        seconds = wait_timeout(timeout, "Variable.get")
        return Ask(client, lambda rid: CoordVariableGet(rid, self.name, seconds), adopt,
                   then=value_of)

    @two_faced
    def delete(self) -> Tell | None:
        """Forget the value (for every client); a future value's key is let go."""
        client = self._get_client()
        if client._usable():  # (reconnecting: sent to the new session)
            return Tell(client, CoordVariableDelete(self.name))
        return None

    def __reduce__(self) -> Any:
        return (Variable, (self.name,))

    def __repr__(self) -> str:
        return f"<Variable: {self.name}>"
