"""Checks of a message's nested values beyond its fields' types (rows of a graph, columns
of a batch), run by ``_messages.from_wire`` for the tags that carry them.

Owns: :class:`ProtocolError` and the per-tag deep checks (``_DEEP``). Must not know the
message classes: it sees wire tuples ``(tag, *fields)`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.protocol._serialize import Serialized


class ProtocolError(Exception):
    """A peer sent something that is not a valid shoal message (the peer's fault)."""


_SEQ = (list, tuple)
_NUM = (int, float)

_KEY = (str, bytes, int, float, tuple)


def _rows(tag: str, rows: Any, shape: tuple[tuple[type, ...] | None, ...]) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row, _SEQ) or len(row) != len(shape):
            raise ProtocolError(f"message {tag!r}: row {i} must be an array of {len(shape)} items")
        for j, (value, kinds) in enumerate(zip(row, shape, strict=True)):
            if kinds is not None and not isinstance(value, kinds):
                raise ProtocolError(
                    f"message {tag!r}: row {i} item {j} must be "
                    f"{' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}"
                )


_NONE = type(None)
_INT_RANGE = range(-(2**63), 2**64)  # what msgpack carries as an integer


def is_worker_name(name: Any) -> bool:
    """A worker name shoal carries as it is, of a type dask's names take: a str, bytes, a
    bool, an int msgpack carries, a float (not NaN: it equals nothing, so nothing could
    name the worker by it), or a tuple of those. Hashable, so it can key a lookup."""
    kind = type(name)
    if kind is str or kind is bytes or kind is bool:
        return True
    if kind is int:
        return name in _INT_RANGE
    if kind is float:
        return name == name
    if kind is tuple:
        return all(is_worker_name(part) for part in name)
    return False


def _register(m: Any) -> None:
    if not is_worker_name(m[2]):
        raise ProtocolError(f"message 'register': field 'name' must be a str, bytes, bool, "
                            f"int, float or a tuple of them, got {m[2]!r}")
_KEYS = frozenset(_KEY)
_INTS = frozenset((int,))
_FLOATS = frozenset(_NUM)
_Columns = tuple[tuple[str, "frozenset[type] | None"], ...]


def _columns(tag: str, m: Any, columns: _Columns,
             nested: dict[str, Callable[[str, Any], None]]) -> None:
    """Check a columnar message: every column (fields 1.. of ``m``, named by ``columns``)
    holds one value per key, each of an accepted type (exact types, as msgpack decodes;
    checked in bulk, no Python loop per row), and ``nested`` checks a column's non-empty
    values further (``nested[name](label, value)``)."""
    n = len(m[1])
    for i, (name, kinds) in enumerate(columns, 1):
        col = m[i]
        if not isinstance(col, _SEQ):
            continue  # not a column (``functions``): from_wire checked its type
        if len(col) != n:
            raise ProtocolError(f"message {tag!r}: column {name!r} has {len(col)} rows, "
                                f"not one per key ({n})")
        if kinds is not None and not kinds.issuperset(map(type, col)):
            j, bad = next((j, v) for j, v in enumerate(col) if type(v) not in kinds)
            raise ProtocolError(
                f"message {tag!r}: row {j} of {name!r} must be "
                f"{' or '.join(sorted(k.__name__ for k in kinds))}, got {type(bad).__name__}"
            )
        check = nested.get(name)
        if check is not None:
            for j, value in enumerate(col):
                if value:
                    check(f"{tag}: row {j} of {name}", value)


def _keys_row(label: str, keys: Any) -> None:
    if not _KEYS.issuperset(map(type, keys)):
        raise ProtocolError(f"message {label!r} must hold keys (str, bytes, int, float, tuple)")


def _deps_row(label: str, rows: Any) -> None:
    _rows(label, rows, (_KEY, _SEQ, (int,)))


_SEQS = frozenset(_SEQ)
_COMPUTES: _Columns = (
    ("keys", _KEYS), ("payloads", frozenset((Serialized,))), ("deps", _SEQS),
    ("functions", None), ("priorities", None), ("send_inline", frozenset((bool,))),
    ("runs", _INTS), ("drops", _SEQS),
)
_KEYS_DONE: _Columns = (
    ("keys", _KEYS), ("nbytes", _INTS), ("typenames", frozenset((str,))),
    ("inlines", frozenset((Serialized, _NONE))), ("pickled_types", frozenset((bytes, _NONE))),
)
_TASKS_DONE: _Columns = (
    ("keys", _KEYS), ("nbytes", _INTS), ("typenames", frozenset((str,))), ("starts", _FLOATS),
    ("stops", _FLOATS), ("threads", _INTS), ("inlines", frozenset((Serialized, _NONE))),
    ("runs", _INTS), ("dropped", _SEQS), ("pickled_types", frozenset((bytes, _NONE))),
)


def _update_graph(m: Any) -> None:
    # rows: (key, payload, dependencies, fids, priority, retries, workers, prefix)
    _rows("update-graph", m[1],
          (_KEY, (Serialized, _NONE), _SEQ, _SEQ, None, (int,), (*_SEQ, _NONE), (str,)))
    if m[8] is not None:
        _keys_row("update-graph held", m[8])


_DEEP: dict[str, Callable[[Any], None]] = {
    "update-graph": _update_graph,
    "register": _register,
    "scatter": lambda m: _rows("scatter", m[2], (_KEY, (Serialized,), (int,), (str,))),
    "compute": lambda m: _rows("compute", m[3], (_KEY, _SEQ, (int,))),
    "dataset-publish": lambda m: _rows("dataset-publish", m[2], (None, (bytes,), _SEQ)),
    "computes-as-columns": lambda m: _columns(
        "computes-as-columns", m, _COMPUTES, {"deps": _deps_row, "drops": _keys_row}
    ),
    "keys-done-as-columns": lambda m: _columns("keys-done-as-columns", m, _KEYS_DONE, {}),
    "tasks-done-as-columns": lambda m: _columns(
        "tasks-done-as-columns", m, _TASKS_DONE, {"dropped": _keys_row}
    ),
}
