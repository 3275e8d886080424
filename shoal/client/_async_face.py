"""The asynchronous face of a blocking client: what ``get_client()`` returns inside an
``async def`` task, which runs on its worker's event loop (dask gives such a task the
worker's client in asynchronous mode: ``await c.submit(...)``, ``await c.gather(...)``).

Owns: ``AsyncFace``, a view of one Client whose operations return awaitables. It holds no
state of its own: every attribute is the client's, read and written there, so the futures
it makes are that client's futures and its connection, session and close are the client's.
Only ``asynchronous`` differs, and the Client's methods (found on the class, bound to the
face) read it through ``self``. Must not know workers or tasks (``_worker_client``'s).
"""

from __future__ import annotations

from typing import Any

from shoal.client._client import Client


class AsyncFace(Client):
    """``client`` seen as an asynchronous client (``asynchronous`` is True), sharing all of
    its state. Not constructed by users: ``get_client()`` inside an ``async def`` task."""

    def __init__(self, client: Client) -> None:  # no Client.__init__: nothing to connect
        object.__setattr__(self, "_face_of", client)

    def __getattr__(self, name: str) -> Any:
        # Only for names not found on the class: the client's own attributes.
        return getattr(object.__getattribute__(self, "_face_of"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._face_of, name, value)

    @property  # type: ignore[override]
    def asynchronous(self) -> bool:
        """Always True: the face's operations return awaitables."""
        return True

    @asynchronous.setter
    def asynchronous(self, value: bool) -> None:
        raise AttributeError("the asynchronous face of the worker's client stays "
                             "asynchronous; call get_client() in a plain (def) task for a "
                             "blocking one")

    def __eq__(self, other: object) -> bool:  # the same client, whichever face
        if isinstance(other, AsyncFace):
            other = other._face_of
        return other is self._face_of

    def __hash__(self) -> int:
        return hash(self._face_of)

    def __repr__(self) -> str:
        return repr(self._face_of)

    def __del__(self) -> None:  # the client's own lifetime is the client's affair
        pass
