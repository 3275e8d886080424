"""Replies to ``GetData`` in bounded pieces: how the sender splits the values asked for,
and how the requester puts the pieces back together. Pure: no I/O.

A request for many large keys is answered by several ``Data`` messages of at most about
``limit`` bytes each (dask's ``distributed.worker.transfer.message-bytes-limit``), every
one but the last marked ``more``; the sender waits for each to leave its socket buffer
before pickling the next, so neither side ever holds the whole answer twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shoal.protocol._messages import Data

# dask's default ``distributed.worker.transfer.message-bytes-limit`` (50 MB).
MESSAGE_BYTES_LIMIT = 50_000_000


def split_by_size(keys: Sequence[Any], sizes: Mapping[Any, int], limit: int) -> list[list[Any]]:
    """``keys`` in order, cut into runs of at most ``limit`` bytes (by ``sizes``); a key
    bigger than ``limit`` travels alone. Always at least one (possibly empty) run."""
    out: list[list[Any]] = [[]]
    total = 0
    for key in keys:
        size = max(sizes.get(key, 0), 0)
        if out[-1] and total + size > limit:
            out.append([])
            total = 0
        out[-1].append(key)
        total += size
    return out


class DataPieces:
    """The pieces of replies received so far on one connection, by request id."""

    def __init__(self) -> None:
        self._partial: dict[int, Data] = {}

    def add(self, msg: Data) -> Data | None:
        """The whole reply once its last piece arrives (``msg`` itself when it came in one
        piece); None while more pieces are to come."""
        held = self._partial.pop(msg.request_id, None)
        if held is not None:
            msg = Data(msg.request_id, {**held.items, **msg.items},
                       [*held.missing, *msg.missing], {**held.errors, **msg.errors}, msg.more)
        if msg.more:
            self._partial[msg.request_id] = msg
            return None
        return msg

    def __len__(self) -> int:
        return len(self._partial)


def whole(info: dict[str, Any], msg: Data) -> Data | None:
    """:meth:`DataPieces.add` with the pieces kept in a connection's ``info``."""
    if not msg.more and "data-pieces" not in info:
        return msg  # the common case: a reply in one piece, nothing held
    pieces = info.get("data-pieces")
    if pieces is None:
        pieces = info["data-pieces"] = DataPieces()
    return pieces.add(msg)
