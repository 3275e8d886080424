"""Running a user's function out of band (``client.run``, ``client.run_on_scheduler``):
giving it the server it runs in when it asks for it by name, and running it in the
background when nobody waits for it."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("shoal")


def inject(function: Callable[..., Any], name: str, value: Any) -> Callable[..., Any]:
    """``function`` with ``name=value`` bound when it has a parameter ``name`` (dask's
    ``dask_worker=`` / ``dask_scheduler=``) not bound already, else ``function``."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return function
    param = params.get(name)
    if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        return function
    return functools.partial(function, **{name: value})


async def in_background(function: Callable[..., Any], where: str) -> None:
    """Await ``function()`` for nobody (``wait=False``): a failure is logged, not lost."""
    try:
        await function()
    except Exception:
        logger.exception("%s: a function run with wait=False failed", where)


def pickle_code(obj: Any) -> Any:
    """Pickle a function or plugin for another process with cloudpickle, so that what is
    defined in the user's ``__main__`` (a script, a notebook) travels by value.

    Raises:
        TypeError: it cannot be pickled; the message names it.
    """
    import cloudpickle

    from shoal.protocol._serialize import Serialized

    try:
        return Serialized([cloudpickle.dumps(obj, protocol=5)])
    except Exception as exc:
        raise TypeError(f"could not pickle {obj!r} to send it to the cluster: {exc}") from exc
