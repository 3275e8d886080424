"""A worker's abstract resources (dask's ``resources=``): how they are written on the
command line (``GPU=2,MEM=10e9``) and in dask's config (``distributed.worker.resources``).
The scheduler does the accounting (a task holds its resources while it runs there)."""

from __future__ import annotations

import numbers
from typing import Any


def parse_resources(text: str, keep_ints: bool = False) -> dict[str, float]:
    """``"GPU=2,MEM=10e9"`` → ``{"GPU": 2.0, "MEM": 1e10}`` (also space separated), as
    dask's ``dask worker --resources``; with ``keep_ints`` (a nanny's word to its worker
    process, written by :func:`format_resources`) an amount written as an int stays one.

    Raises:
        ValueError: an item is not ``NAME=amount`` with a non-negative number.
    """
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, sep, amount = item.partition("=")
        try:
            value: float = int(amount) if keep_ints and amount.lstrip("-").isdigit() else float(amount)
        except ValueError:
            value = -1.0
        if not sep or not name or value < 0:
            raise ValueError(
                f"resources {text!r}: {item!r} is not NAME=amount; write them like 'GPU=2,MEM=10e9'"
            )
        out[name] = value
    return out


def format_resources(resources: dict[str, float]) -> str:
    """The inverse of :func:`parse_resources`, for a worker's command line."""
    return ",".join(f"{name}={amount!r}" for name, amount in resources.items())


def check_resources(resources: Any) -> dict[str, float]:
    """A worker's ``resources=``: a dict of names to amounts (kept as given: an int stays
    an int, as in dask), a ``"GPU=2"`` string (floats, as dask's command line), or None for
    dask's config ``distributed.worker.resources``.

    Raises:
        ValueError: not one of those, or an amount is negative.
    """
    if resources is None:
        import dask

        resources = dask.config.get("distributed.worker.resources", None) or {}
    if isinstance(resources, str):
        return parse_resources(resources)
    if not isinstance(resources, dict):
        raise ValueError(f"resources must be a dict like {{'GPU': 1}}, got {resources!r}")
    out: dict[str, float] = {}
    for name, amount in resources.items():
        try:  # kept as given, an int as an int (as dask's worker reports them)
            value: float = (int(amount) if isinstance(amount, numbers.Integral)
                            and not isinstance(amount, bool) else float(amount))
        except (TypeError, ValueError):
            value = -1.0
        if not isinstance(name, str) or value < 0:
            raise ValueError(
                f"resources {resources!r}: {name!r} needs a non-negative amount, like {{'GPU': 1}}"
            )
        out[name] = value
    return out
