"""What a key a user gives may be: dask's ``Key`` (str, int, float, or a tuple of those).

Owns the check of user-given keys (``submit(key=)``, ``map(key=[...])``, the keys asked of
``get``/``compute``/``persist``), made at the call as dask.distributed's client makes it.
Keys shoal makes itself (``inc-<token>``) are never checked: the per-task path pays nothing.
Knows nothing of clients, graphs or messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_user_keys(keys: Iterable[Any], where: str) -> None:
    """Raise unless every one of ``keys`` is a dask key (``dask.core.iskey``: the types
    exactly, so neither ``bool``, ``bytes`` nor a numpy integer is one).

    Raises:
        TypeError: dask's "Unexpected key type" start, then the key, the call it was
            given to (``where``) and a key that would do.
    """
    for key in keys:
        if type(key) is not str and not _is_key(key):
            _refuse(key, where)


def _parts_ok(key: tuple[Any, ...]) -> bool:
    for part in key:
        kind = type(part)
        if not (kind is str or kind is int or kind is float
                or (kind is tuple and _parts_ok(part))):
            return False
    return True


def _refuse(key: Any, where: str) -> None:
    if type(key) is tuple:
        index, part = next((i, p) for i, p in enumerate(key) if not _is_key(p))
        raise TypeError(
            f"Unexpected key type {type(part).__name__} at index {index} of the composite "
            f"key {key!r} given to {where}: a dask key is a str, int, float or a tuple of "
            f"those; use {_fix(part)!r} there")
    raise TypeError(
        f"Unexpected key type {type(key).__name__} ({key!r}) given to {where}: a dask key "
        f"is a str, int, float or a tuple of those; pass key={_fix(key)!r} (or leave key "
        "out for one made from the function and its arguments)")


def _is_key(part: Any) -> bool:
    kind = type(part)
    return kind is str or kind is int or kind is float or (kind is tuple and _parts_ok(part))


def _fix(part: Any) -> Any:
    """A key like ``part`` that dask takes (for the message)."""
    if isinstance(part, bytes):
        return part.decode("utf-8", "backslashreplace")
    if isinstance(part, tuple):
        return tuple(p if _is_key(p) else _fix(p) for p in part)
    item = getattr(part, "item", None)  # a numpy scalar: its Python value
    if callable(item) and type(part) is not bool:
        try:
            value = item()
        except (TypeError, ValueError):
            value = None
        if _is_key(value):
            return value
    return str(part)
