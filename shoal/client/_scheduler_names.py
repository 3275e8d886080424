"""dask's scheduler names "distributed" and "dask.distributed" for shoal's Client.

Owns: one entry each in dask's table of named schedulers (``dask.base.named_schedulers``),
which dask consults before its own, hard-wired lookup of dask.distributed's client. So
``x.compute(scheduler="distributed")`` and ``dask.config.set(scheduler="distributed")``,
written for dask.distributed, run on the current shoal client (in a task: the worker's).
Must not know: how a client computes; it only finds the current one.

When no shoal client is open but a dask.distributed one is (both libraries in one
process), the name keeps meaning that one, as in dask.

Also owns dask's config ``scheduler`` while a default shoal Client is open: the string
``"dask.distributed"``, as dask.distributed's Client sets it (``DEFAULT``), and what it
goes back to when the last of them closes (``value_before``).

Each entry is a callable whose ``__self__`` is the current client, as a bound ``get``'s
is: ``dask.persist`` looks there for a client with a ``persist`` method (futures on the
cluster), as it finds dask.distributed's.
"""

from __future__ import annotations

from typing import Any

_NAMES = ("distributed", "dask.distributed")


def _current_get(name: str) -> Any:
    from shoal.client._worker_client import get_client

    try:
        return get_client().get
    except ValueError:  # no shoal client: dask.distributed's, if one is open
        pass
    try:
        from distributed import Client as DaskClient
        from distributed.worker import get_client as dask_get_client
    except ImportError:  # dask.distributed is not installed: there is no other client
        pass
    else:
        try:
            DaskClient.current(allow_global=True)
        except ValueError:
            pass
        else:
            return dask_get_client().get
    raise RuntimeError(
        f"Requested {name} scheduler but no Client active: create one first "
        "(client = shoal.Client(...)), or pass scheduler='threads' to compute here"
    )


class _Named:
    """dask's scheduler function for ``name``: the current client's ``get``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.__name__ = f"shoal_{name.replace('.', '_')}_get"

    @property
    def __self__(self) -> Any:
        """The current client (dask.persist asks it to persist, as dask's own)."""
        return _current_get(self.name).__self__

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return _current_get(self.name)(dsk, keys, **kwargs)

    def __repr__(self) -> str:
        return f"<shoal's scheduler {self.name!r}: the current client>"


def _named(name: str) -> Any:
    return _Named(name)


DEFAULT = "dask.distributed"  # dask's config ``scheduler`` while a default client is open


def value_before(client: Any, current: Any, earlier: Any) -> Any:
    """What dask's ``scheduler`` config goes back to once ``client`` and every other
    default client have closed: ``current`` (its value now), or, when an ``earlier``
    default client set it, what was there before that one."""
    if current == DEFAULT and earlier is not None and earlier is not client:
        return earlier._previous_scheduler
    return current


def install() -> None:
    """Add the names to dask's table (once; a name someone else put there is left alone)."""
    from dask import base

    for name in _NAMES:
        base.named_schedulers.setdefault(name, _named(name))


install()  # on import: the worker imports this module beside dask, before any task runs
