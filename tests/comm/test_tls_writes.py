"""TLS connections hand big frames over in pieces, one at a time while the SSL layer asks
for more, in order, and all of them on close. A fake transport: no sockets."""

from __future__ import annotations

import asyncio
import ssl

import numpy as np

from shoal.comm._security import Security
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
        self.high_water: int | None = None

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high

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


def test_many_medium_frames_are_grouped_into_writes_of_at_most_a_piece() -> None:
    async def scenario() -> None:
        conn = TCPConnection(None, scheme="tls")
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        # Out-of-band frames each smaller than a piece, together many pieces.
        values = {f"v{i}": dumps(bytes([i]) * (TLS_PIECE * 3 // 4)) for i in range(12)}
        conn._write_batch([Data(3, values, [], {})])
        while conn._tls_backlog:
            conn.resume_writing()
        assert max(transport.writes) <= TLS_PIECE
        (msg,) = decoded(transport.written)
        assert isinstance(msg, Data)
        assert {k: loads(v) for k, v in msg.items.items()} == {k: loads(v)
                                                               for k, v in values.items()}

    asyncio.run(scenario())


def test_a_tls_connection_pauses_before_a_piece_of_ciphertext_waits_in_the_ssl_layer() -> None:
    """When the socket drains, the SSL layer hands it everything waiting in one new bytes
    object, which must stay under the mmap threshold as pieces do."""

    async def scenario() -> None:
        conn = TCPConnection(None, scheme="tls")
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        assert transport.high_water is not None and transport.high_water < TLS_PIECE

    asyncio.run(scenario())


def test_a_piece_encrypts_to_less_than_mallocs_mmap_threshold() -> None:
    """The SSL layer copies each piece's ciphertext into a new bytes object. In a process
    started with MALLOC_TRIM_THRESHOLD_ and no MALLOC_MMAP_THRESHOLD_ (dask's worker
    environment), glibc's mmap threshold stays at 128 KiB: a bigger object would be fresh
    pages, mapped, zeroed and unmapped for every piece of a transfer."""
    security = Security.temporary()
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = security.ssl_context("worker", server=False).wrap_bio(c_in, c_out)
    server = security.ssl_context("worker", server=True).wrap_bio(s_in, s_out,
                                                                   server_side=True)
    for _ in range(10):  # the handshake, in memory
        for obj, out, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            if out.pending:
                peer_in.write(out.read())
    assert client.cipher() is not None
    client.write(b"z" * TLS_PIECE)
    assert TLS_PIECE < c_out.pending < 128 * 1024
