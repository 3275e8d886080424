"""What a worker may be called, and the other values a user gives a worker that travel in its
``Register`` to the scheduler: checked when the worker is made, so that a value the wire
format (msgpack) cannot carry is a TypeError naming it, not a registration that never goes.
Must not know about sockets or the scheduler."""

from __future__ import annotations

from typing import Any

_INT_RANGE = range(-(2**63), 2**64)  # what msgpack carries as an integer


def check_worker_name(name: Any, who: str = "Worker") -> str | int | None:
    """``name`` if a worker may be called so: a str, an int msgpack carries (dask's
    LocalCluster names its workers 0, 1, ...), or None (the worker's address).

    Raises:
        TypeError: another type (dask documents a str), or an int too large to send.
    """
    if name is None or type(name) is str:
        return name
    if isinstance(name, int) and not isinstance(name, bool):
        if int(name) in _INT_RANGE:
            return int(name)
        raise TypeError(f"{who}(name={name!r}): an int name must fit in 64 bits to be sent "
                        "to the scheduler; pass a str, like name=str(n)")
    if isinstance(name, str):
        return str(name)
    raise TypeError(f"{who}(name={name!r}): a worker's name must be a str or an int (as "
                    f"dask.distributed names them), not {type(name).__name__}; pass a str, "
                    "like name=str(...)")


def check_count(value: Any, arg: str, who: str = "Worker") -> int:
    """``value`` (``nthreads``, ``memory_limit``: an int, sent to the scheduler) as an int.

    Raises:
        TypeError: not an int, or too large to send.
    """
    if isinstance(value, bool) or not isinstance(value, int) or int(value) not in _INT_RANGE:
        raise TypeError(f"{who}({arg}={value!r}): {arg} must be an int that fits in 64 "
                        f"bits, not {type(value).__name__}")
    return int(value)
