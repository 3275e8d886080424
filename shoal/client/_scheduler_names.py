"""dask's scheduler names "distributed" and "dask.distributed" for shoal's Client.

Owns: one entry each in dask's table of named schedulers (``dask.base.named_schedulers``),
which dask consults before its own, hard-wired lookup of dask.distributed's client. So
``x.compute(scheduler="distributed")`` and ``dask.config.set(scheduler="distributed")``,
written for dask.distributed, run on the current shoal client (in a task: the worker's).
Must not know: how a client computes; it only finds the current one.

When no shoal client is open but a dask.distributed one is (both libraries in one
process), the name keeps meaning that one, as in dask.
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


def _named(name: str) -> Any:
    def get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return _current_get(name)(dsk, keys, **kwargs)

    get.__name__ = f"shoal_{name.replace('.', '_')}_get"
    return get


def install() -> None:
    """Add the names to dask's table (once; a name someone else put there is left alone)."""
    from dask import base

    for name in _NAMES:
        base.named_schedulers.setdefault(name, _named(name))


install()  # on import: the worker imports this module beside dask, before any task runs
