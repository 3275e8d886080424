"""A peer whose batch holds a malformed message (here a columnar one whose rows do not
line up) loses its connection, with a log line naming the fault; the receiver goes on.
Real sockets on this host; every wait has a deadline."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import msgpack
import pytest

from shoal.comm import connect, listen
from shoal.comm._tcp import TCPConnection
from shoal.protocol._messages import Message

DEADLINE = 20.0


@pytest.mark.parametrize(
    ("item", "words"),
    [
        (("tasks-done-as-columns", ["a", "b"], [8, 8], ["int", "int"], [0.0, 0.0], [1.0, 1.0],
          [1, 1], [None, None], [1], [[], []], [None, None]), "column 'runs' has 1 rows"),
        (("computes-as-columns", ["a"], [b"raw"], [[]], {}, [[0]], [True], [1], [[]]),
         "row 0 of 'payloads' must be Serialized"),
    ],
)
def test_a_malformed_columnar_batch_closes_the_connection_and_is_logged(
    item: Any, words: str, caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[list[Message] | None]:
        got: list[list[Message] | None] = []
        closed = asyncio.Event()
        accepted: asyncio.Future[TCPConnection] = asyncio.get_running_loop().create_future()

        def on_batch(_conn: Any, batch: list[Message] | None) -> None:
            got.append(batch)
            if batch is None:
                closed.set()

        def accept(conn: TCPConnection) -> None:
            conn.set_handler(on_batch)
            accepted.set_result(conn)

        server = await listen("127.0.0.1", 0, accept)
        try:
            conn = await connect(f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            conn.set_handler(lambda c, b: None)
            await asyncio.wait_for(accepted, DEADLINE)
            head = msgpack.packb([("free-keys", ["x"]), item], use_bin_type=True)
            assert conn.transport is not None
            conn.transport.write(struct.pack("<IQ", 1, len(head)) + head)
            await asyncio.wait_for(closed.wait(), DEADLINE)
            conn.close()
        finally:
            server.close()
        return got

    with caplog.at_level(logging.ERROR, logger="shoal.comm"):
        got = asyncio.run(main())
    assert got == [None]  # nothing of the batch was delivered, then the connection closed
    assert "malformed input" in caplog.text and words in caplog.text
