"""TLS connections hand big frames over in pieces, one at a time while the SSL layer asks
for more, in order, and all of them on close. A fake transport: no sockets."""

from __future__ import annotations

import asyncio

import numpy as np

from shoal.comm._tcp import TLS_PIECE, TCPConnection
from shoal.protocol._framing import FrameDecoder, decode
from shoal.protocol._messages import Data, Message
from shoal.protocol._serialize import dumps, loads

from .test_tcp_handshake import FakeTransport


class PausingTransport(FakeTransport):
    """Pauses its protocol after every write, as an SSL layer with a full socket does."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []
        self.protocol: TCPConnection | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writes.append(len(memoryview(data).cast("B")))
        if self.protocol is not None and not self.protocol.closed:
            self.protocol.pause_writing()


def decoded(raw: bytes) -> list[Message]:
    decoder = FrameDecoder()
    out: list[Message] = []
    view = memoryview(raw)
    while view:
        buf = decoder.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        view = view[n:]
        for frames in decoder.buffer_updated(n):
            out.extend(decode(frames))
    return out


def test_big_frames_go_piece_by_piece_as_the_transport_asks_and_stay_in_order() -> None:
    async def scenario() -> None:
        conn = TCPConnection(None, scheme="tls")
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        array = np.arange(3 * TLS_PIECE // 8 + 5, dtype="float64")
        conn._write_batch([Data(1, {"x": dumps(array)}, [], {})])
        conn._write_batch([Data(2, {}, ["later"], {})])
        assert len(transport.writes) == 1  # paused after the first piece
        while conn._tls_backlog:
            conn.resume_writing()
        assert max(transport.writes) <= TLS_PIECE and len(transport.writes) >= 4
        first, second = decoded(transport.written)
        assert isinstance(first, Data) and first.request_id == 1
        assert np.array_equal(loads(first.items["x"]), array)
        assert isinstance(second, Data) and list(second.missing) == ["later"]

    asyncio.run(scenario())


def test_closing_hands_over_everything_still_waiting() -> None:
    async def scenario() -> None:
        conn = TCPConnection(None, scheme="tls")
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        payload = dumps(b"y" * (2 * TLS_PIECE))
        conn._write_batch([Data(7, {"y": payload}, [], {})])
        conn.close()
        assert transport.closed and not conn._tls_backlog
        (msg,) = decoded(transport.written)
        assert isinstance(msg, Data) and loads(msg.items["y"]) == b"y" * (2 * TLS_PIECE)

    asyncio.run(scenario())
