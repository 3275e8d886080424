"""``Connection.flush`` and ``hold``: a sender that batched its messages writes them at once, after what
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


def test_held_connection_waits_for_its_holder_and_arms_no_loop_flush() -> None:
    async def scenario() -> None:
        conn = Recorder()
        loop = asyncio.get_running_loop()
        armed: list[object] = []
        real_call_soon = loop.call_soon

        def call_soon(cb: object, *args: object, **kw: object) -> object:
            if getattr(cb, "__self__", None) is conn:  # the connection's own flush
                armed.append(cb)
            return real_call_soon(cb, *args, **kw)  # type: ignore[arg-type]

        loop.call_soon = call_soon  # type: ignore[method-assign]
        try:
            assert conn.hold()
            first, second = FreeKeys(["a"]), FreeKeys(["b"])
            conn.send(first)
            conn.send_many([second])
            await asyncio.sleep(0)
            assert conn.batches == []  # held: not written at the end of the iteration
            conn.flush()
            assert conn.batches == [[first, second]]
            assert armed == []
            # The hold ended with the flush: a later send is batched as usual again.
            third = FreeKeys(["c"])
            conn.send(third)
            await asyncio.sleep(0)
            assert conn.batches == [[first, second], [third]]
            # A hold that found a flush already armed says so; the armed one still writes.
            conn.send(first)
            assert not conn.hold()
            await asyncio.sleep(0)
            assert conn.batches[-1] == [first]
        finally:
            loop.call_soon = real_call_soon  # type: ignore[method-assign]

    asyncio.run(scenario())


def test_an_empty_flush_ends_a_hold() -> None:
    async def scenario() -> None:
        conn = Recorder()
        conn.hold()
        conn.flush()  # nothing was sent while held
        msg = FreeKeys(["a"])
        conn.send(msg)
        await asyncio.sleep(0)
        assert conn.batches == [[msg]]

    asyncio.run(scenario())
