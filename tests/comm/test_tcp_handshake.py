"""The TCP connection before its handshake is done: reads land in a buffer of the
handshake's cap, the frame decoder gets nothing, and a refusal closes the connection.
Driven through the protocol callbacks with a fake transport: no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.comm._handshake import HANDSHAKE_CAP, Handshake, HandshakeError
from shoal.comm._tcp import TCPConnection


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += bytes(data)

    def writelines(self, buffers: list[Any]) -> None:
        for b in buffers:
            self.write(b)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.0.0.9", 4242) if name == "peername" else default


def feed(conn: TCPConnection, data: bytes) -> None:
    """What the event loop does with bytes from the socket."""
    while data and not conn.closed:
        buf = conn.get_buffer(len(data))
        assert len(buf) <= max(HANDSHAKE_CAP, 1 << 16)
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        data = data[n:]
        conn.buffer_updated(n)


def acceptor(token: str | None) -> tuple[TCPConnection, FakeTransport]:
    conn = TCPConnection(Handshake(False, token))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_a_huge_length_prefix_before_the_handshake_allocates_nothing(token: str | None) -> None:
    async def scenario() -> None:
        conn, transport = acceptor(token)
        stage = len(conn._decoder._stage)
        prefix = (1).to_bytes(4, "little") + (1 << 40).to_bytes(8, "little") + bytes(200)
        assert len(conn.get_buffer(1 << 20)) == HANDSHAKE_CAP
        feed(conn, prefix)
        assert conn.closed and transport.closed
        assert transport.written.startswith(b"\x03")  # a refusal saying why
        assert len(conn._decoder._stage) == stage and conn._decoder._big is None
        with pytest.raises(HandshakeError):
            conn.ready.result()

    asyncio.run(scenario())


def test_frames_after_the_handshake_reach_the_decoder_and_nothing_before() -> None:
    async def scenario() -> None:
        from shoal.protocol._framing import encode
        from shoal.protocol._messages import PROTOCOL_VERSION, Hello

        conn, transport = acceptor("k")
        got: list[Any] = []
        conn.set_handler(lambda _c, batch: got.append(batch))
        peer = Handshake(True, "k")
        frames = b"".join(bytes(b) for b in encode([Hello("client", PROTOCOL_VERSION, "x")]))
        feed(conn, peer.start() + frames)  # frames sent before the proof are not decoded
        assert not got and not conn.ready.done()
        conn, transport = acceptor("k")
        conn.set_handler(lambda _c, batch: got.append(batch))
        peer = Handshake(True, "k")
        feed(conn, peer.start())
        proof = peer.receive(transport.written)
        feed(conn, proof + frames)
        assert conn.ready.done() and conn.ready.exception() is None
        assert got == [[Hello("client", PROTOCOL_VERSION, "x")]]

    asyncio.run(scenario())
