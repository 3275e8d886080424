"""A message sent right before ``close()`` still reaches the peer (e.g. the scheduler's
``Close`` telling a worker why it must go)."""

from __future__ import annotations

import asyncio

from shoal.comm import connect, inproc_pair, listen
from shoal.comm._connection import Connection
from shoal.protocol._messages import Close, Message


def test_inproc_message_sent_just_before_close_is_delivered():
    async def main() -> list[list[Message] | None]:
        a, b = inproc_pair("a", "b")
        got: list[list[Message] | None] = []
        b.set_handler(lambda conn, batch: got.append(batch))
        a.send(Close("going away"))
        a.close()
        for _ in range(3):
            await asyncio.sleep(0)
        return got

    assert asyncio.run(main()) == [[Close("going away")], None]


def test_tcp_message_sent_just_before_close_is_delivered():
    async def main() -> list[list[Message] | None]:
        got: list[list[Message] | None] = []
        closed = asyncio.Event()

        def on_batch(conn: Connection, batch: list[Message] | None) -> None:
            got.append(batch)
            if batch is None:
                closed.set()

        server = await listen("127.0.0.1", 0, lambda conn: conn.set_handler(on_batch))
        port = server.sockets[0].getsockname()[1]
        conn = await connect(f"tcp://127.0.0.1:{port}")
        conn.send(Close("going away"))
        conn.close()
        await asyncio.wait_for(closed.wait(), 10)
        server.close()
        return got

    assert asyncio.run(main()) == [[Close("going away")], None]
