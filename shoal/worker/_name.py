"""What a worker may be called, and the other values a user gives a worker that travel in its
``Register`` to the scheduler: checked when the worker is made, so that a value the wire
format (msgpack) cannot carry is a TypeError naming it, not a registration that never goes.
Must not know about sockets or the scheduler."""

from __future__ import annotations

import numbers
from typing import Any

from shoal.protocol._wire_checks import _INT_RANGE, is_worker_name

# What a worker may be called: ``_wire_checks.is_worker_name`` (a str, bytes, bool, int,
# float or a tuple of them), or None (the worker's address).
WorkerName = Any


def check_worker_name(name: Any, who: str = "Worker") -> WorkerName:
    """``name`` if a worker may be called so, as it will come back from the scheduler
    (``scheduler_info()``, ``get_worker().name``, ``workers=`` restrictions): a str, bytes,
    a bool, an int (dask's LocalCluster names its workers 0, 1, ...), a float or a tuple of
    those, as dask carries them; or None (the worker's address). A numpy number is its
    Python number.

    Raises:
        TypeError: another type (a list, dict or object: unhashable, or not sendable), an
            int too large to send, or a NaN float (it would name nothing).
    """
    if name is None or is_worker_name(name):
        return name
    if isinstance(name, numbers.Integral) and not isinstance(name, bool):
        if int(name) in _INT_RANGE:
            return int(name)
    elif isinstance(name, numbers.Real) and name == name:
        return float(name)
    elif isinstance(name, str):
        return str(name)
    raise TypeError(f"{who}(name={name!r}): a worker's name must be a str, bytes, bool, int "
                    "(64 bits), float (not NaN) or a tuple of those, as dask.distributed "
                    f"carries them, not {type(name).__name__}; pass a str, like name=str(...)")


def check_count(value: Any, arg: str, who: str = "Worker") -> int:
    """``value`` (``nthreads``, ``memory_limit``: an int, sent to the scheduler) as an int.

    Raises:
        TypeError: not an int, or too large to send.
    """
    if isinstance(value, bool) or not isinstance(value, int) or int(value) not in _INT_RANGE:
        raise TypeError(f"{who}({arg}={value!r}): {arg} must be an int that fits in 64 "
                        f"bits, not {type(value).__name__}")
    return int(value)
