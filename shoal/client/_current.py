"""Which Client is the current one: ``get_client()``, ``default_client()``, dask's rules.

Owns: the registry of this process's clients (weakly, newest last) and the clients of
``with client.as_current():`` blocks. Must not know how a client works: it asks a client
only whether it is usable and whether it was made with ``set_as_default``.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.client._client import Client

# Every Client made in this process, newest last (Client.__init__ adds itself).
clients: list[weakref.ReferenceType[Client]] = []
# The client of ``with client.as_current():`` blocks, innermost last (per thread and task).
as_current: contextvars.ContextVar[tuple[Client, ...]] = contextvars.ContextVar(
    "shoal_as_current", default=())


def get_client() -> Client:
    """The client of an enclosing ``with client.as_current():``, else the most recently
    created open Client in this process made with ``set_as_default=True`` (dask's default
    client), else (where dask would raise) the most recently created open one.

    Raises:
        ValueError: no client is open; create one with ``Client()``.
    """
    chosen = as_current.get()
    if chosen and chosen[-1]._usable():
        return chosen[-1]
    client = newest_client(defaults_only=True) or newest_client()
    if client is None:
        raise ValueError("No shoal Client found; start one with shoal.Client()")
    return client


def newest_client(defaults_only: bool = False, but: Client | None = None) -> Client | None:
    """The most recently created open Client (of those made with ``set_as_default=True``
    only, with ``defaults_only``; other than ``but``), or None."""
    for ref in reversed(clients):
        client = ref()
        if client is not None and client is not but and (
                client._set_as_default or not defaults_only) and client._usable():
            return client
    return None


def default_client(c: Client | None = None) -> Client:
    """``c`` if given, else the default client: ``get_client()`` (dask's name).

    Raises:
        ValueError: no client is open; create one with ``Client()``.
    """
    return c if c is not None else get_client()
