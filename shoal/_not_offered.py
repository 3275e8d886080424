"""Names of ``distributed`` that shoal deliberately does not offer, each with why and what
to use instead: ``shoal.rpc`` or ``from shoal import connect`` raises an ``ImportError``
that says so (``shoal/__init__.py`` asks here), rather than Python's bare "cannot import
name".

Owns: the messages. An ``ImportError`` and not an ``AttributeError``: for ``from shoal
import rpc`` Python replaces an ``AttributeError`` with its own message, losing this one.
"""

from __future__ import annotations

_WHY = {
    "rpc": (
        "dask's rpc calls handlers of dask's servers over dask's wire protocol; shoal's "
        "servers speak their own typed protocol, which is not a public API. Ask the "
        "scheduler through a Client instead: client.scheduler_info(), "
        "client.run_on_scheduler(fn), client.retire_workers(...), client.run(fn) on the "
        "workers"
    ),
    "connect": (
        "dask's comm connect opens a connection speaking dask's wire protocol; shoal's "
        "protocol is its own and not a public API. Use Client(address) to talk to a shoal "
        "scheduler, and client.run(fn) / client.run_on_scheduler(fn) to run code there"
    ),
    "widgets": (
        "dask's Jupyter HTML templates; shoal's objects render their own HTML "
        "(_repr_html_)"
    ),
}


class NotOffered(ImportError):
    """A ``distributed`` name shoal does not have; the message says what to use."""


def not_offered(name: str) -> NotOffered | None:
    """The error for ``name`` if it is one of dask's names shoal leaves out on purpose."""
    why = _WHY.get(name)
    if why is None:
        return None
    return NotOffered(f"shoal has no {name!r}: {why}", name=name)
