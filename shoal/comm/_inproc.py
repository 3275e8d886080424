"""In-process connections: the client talks to a scheduler in the same process without
sockets or serialization of the message envelope (payloads stay as Serialized bytes)."""

from __future__ import annotations

import asyncio

from shoal.comm._connection import Connection
from shoal.protocol._messages import Message


class InprocConnection(Connection):
    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer = peer
        self.other: InprocConnection | None = None

    def _write_batch(self, batch: list[Message]) -> None:
        other = self.other
        if other is not None and not other.closed:
            other._deliver(batch)

    def _close(self) -> None:
        other = self.other
        if other is not None and not other.closed:
            other.closed = True
            asyncio.get_running_loop().call_soon(other._deliver, None)
        asyncio.get_running_loop().call_soon(self._deliver, None)


def inproc_pair(name_a: str, name_b: str) -> tuple[InprocConnection, InprocConnection]:
    """Two connected ends; what one sends, the other's handler receives."""
    a, b = InprocConnection(name_b), InprocConnection(name_a)
    a.other, b.other = b, a
    return a, b
