"""``Connection.flush``: a sender that batched its messages writes them at once, after what
was queued before them, and nothing is written twice by the flush already scheduled."""

from __future__ import annotations

import asyncio

from shoal.comm import Connection
from shoal.protocol._messages import FreeKeys, Message


class Recorder(Connection):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Message]] = []

    def _write_batch(self, batch: list[Message]) -> None:
        self.batches.append(batch)

    def _close(self) -> None:
        pass


def test_flush_writes_what_is_queued_at_once_in_order_and_once() -> None:
    async def scenario() -> None:
        conn = Recorder()
        first, second, third = FreeKeys(["a"]), FreeKeys(["b"]), FreeKeys(["c"])
        conn.send(first)
        conn.send_many([second, third])
        conn.flush()
        assert conn.batches == [[first, second, third]]
        for _ in range(3):
            await asyncio.sleep(0)
        assert conn.batches == [[first, second, third]]
        conn.flush()  # nothing queued: nothing written
        assert len(conn.batches) == 1

    asyncio.run(scenario())
