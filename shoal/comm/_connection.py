"""The connection interface every transport offers, and message batching.

Owns: coalescing outgoing messages per event-loop iteration (no timers: a message sent
now leaves at the end of this loop iteration, together with everything else sent in it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shoal.protocol._messages import Message


class ConnectionClosed(ConnectionError):
    """The peer went away or the connection was closed."""


# Called on the event loop with each decoded batch; ``None`` means the connection closed.
MessageHandler = Callable[["Connection", "list[Message] | None"], None]


class Connection:
    """A message pipe to one peer. Subclasses provide ``_write_batch`` and ``_close``."""

    peer: str = "?"

    def __init__(self) -> None:
        self._outbox: list[Message] = []
        self._flush_scheduled = False
        self._handler: MessageHandler | None = None
        self._pending: list[list[Message] | None] = []
        self.closed = False
        self.info: dict[str, Any] = {}
        self._streaming = False  # a file is being streamed: batches wait (send_streamed)

    def set_handler(self, handler: MessageHandler) -> None:
        """Route incoming batches to ``handler`` (batches that arrived before are replayed)."""
        self._handler = handler
        pending, self._pending = self._pending, []
        for batch in pending:
            handler(self, batch)

    def _deliver(self, batch: list[Message] | None) -> None:
        if self._handler is None:
            self._pending.append(batch)
        else:
            self._handler(self, batch)

    def send(self, msg: Message) -> None:
        """Queue ``msg``; it leaves with the rest of this loop iteration's messages."""
        if self.closed:
            return
        self._outbox.append(msg)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def send_many(self, msgs: list[Message]) -> None:
        if self.closed or not msgs:
            return
        self._outbox.extend(msgs)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def hold(self) -> bool:
        """Messages sent from now on wait for this caller's :meth:`flush` instead of arming
        the end-of-iteration write: a caller about to flush anyway saves the loop a turn
        (a callback and a non-blocking poll). The caller must flush, in a ``finally``.
        False when the end-of-iteration write is armed already (flushing is then optional)."""
        if self._flush_scheduled:
            return False
        self._flush_scheduled = True
        return True

    def flush(self) -> None:
        """Write what is queued now rather than at the end of this loop iteration: for a
        sender that batched its messages itself, or a reply its sender waits for with
        nothing else to batch it with (one loop iteration less on the way). Ends a
        :meth:`hold`."""
        if self._outbox:
            self._flush()
        else:
            self._flush_scheduled = False

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._streaming:
            return  # after the stream: it flushes the outbox when it ends
        if self.closed or not self._outbox:
            self._outbox.clear()
            return
        batch, self._outbox = self._outbox, []
        self._write_batch(batch)

    def _write_batch(self, batch: list[Message]) -> None:
        raise NotImplementedError

    @property
    def writing_paused(self) -> bool:
        """Whether the transport's buffer is past its high-water mark: a writer of bulk
        data awaits :meth:`drain` before sending more."""
        return False

    async def drain(self) -> None:
        """Wait until queued output is handed to the transport (back-pressure)."""
        if self._flush_scheduled:
            self._flush()

    def close(self) -> None:
        """Close after writing what was already sent: a message queued just before (a
        ``Close`` saying why, a last reply) still reaches the peer."""
        if self.closed:
            return
        if self._outbox:
            batch, self._outbox = self._outbox, []
            self._write_batch(batch)
        self.closed = True
        self._close()

    def _close(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.peer}{' closed' if self.closed else ''}>"
