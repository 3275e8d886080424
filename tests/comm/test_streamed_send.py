"""A value kept on disk is sent to a peer straight from its file, a bounded chunk at a
time, each once the previous one has left (a value too big for the worker's memory is
never read whole); messages sent meanwhile wait and follow it. A fake transport: no
sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from shoal.comm._tcp import STREAM_CHUNK, TCPConnection
from shoal.protocol._framing import FileFrame
from shoal.protocol._messages import Data
from shoal.protocol._serialize import dumps, loads

from .test_tls_writes import PausingTransport, decoded


def _spilled(tmp_path: Path, array: np.ndarray) -> tuple[list[object], object]:
    """The array's frames, its big buffer left in a file as a FileFrame."""
    head, buffer = dumps(array).frames
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "value"
    path.write_bytes(b"junk" + bytes(memoryview(buffer).cast("B")))
    f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the test
    return [head, FileFrame(f, 4, memoryview(buffer).nbytes)], f


def test_a_file_frame_goes_out_in_bounded_chunks_as_the_transport_drains(tmp_path: Path) -> None:
    array = np.arange(3 * STREAM_CHUNK // 8 + 7, dtype="float64")
    frames, f = _spilled(tmp_path, array)

    async def scenario() -> None:
        conn = TCPConnection(None)
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        sending = asyncio.ensure_future(
            conn.send_streamed(Data(1, {"x": _serialized(frames)}, [], {}), 10.0))
        await asyncio.sleep(0.05)
        conn.send(Data(2, {}, ["later"], {}))  # sent while the file streams: waits for it
        while not sending.done():
            await asyncio.sleep(0.01)
            conn.resume_writing()
        await sending
        await conn.drain()
        assert max(transport.writes) <= STREAM_CHUNK and len(transport.writes) >= 4
        first, second = decoded(transport.written)
        assert isinstance(first, Data) and first.request_id == 1
        assert np.array_equal(loads(first.items["x"]), array)
        assert isinstance(second, Data) and list(second.missing) == ["later"]

    try:
        asyncio.run(scenario())
    finally:
        f.close()


def test_two_streams_on_one_connection_never_interleave(tmp_path: Path) -> None:
    arrays = [np.full(2 * STREAM_CHUNK // 8 + 3, i, dtype="float64") for i in range(2)]
    spilled = [_spilled(tmp_path / str(i), a) for i, a in enumerate(arrays)]

    async def scenario() -> None:
        conn = TCPConnection(None)
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        sends = asyncio.gather(*(
            conn.send_streamed(Data(i, {"x": _serialized(frames)}, [], {}), 10.0)
            for i, (frames, _) in enumerate(spilled)))
        while not sends.done():
            await asyncio.sleep(0.01)
            conn.resume_writing()
        await sends
        replies = decoded(transport.written)
        assert [r.request_id for r in replies] == [0, 1]  # type: ignore[attr-defined]
        for r, a in zip(replies, arrays, strict=True):
            assert np.array_equal(loads(r.items["x"]), a)  # type: ignore[attr-defined]

    try:
        asyncio.run(scenario())
    finally:
        for _, f in spilled:
            f.close()


def test_a_peer_that_stops_reading_ends_the_stream_at_its_deadline(tmp_path: Path) -> None:
    frames, f = _spilled(tmp_path, np.ones(2 * STREAM_CHUNK // 8))

    async def scenario() -> None:
        conn = TCPConnection(None)
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        await asyncio.wait_for(
            conn.send_streamed(Data(1, {"x": _serialized(frames)}, [], {}), 0.2), 10)
        assert conn.closed and transport.closed

    try:
        asyncio.run(scenario())
    finally:
        f.close()


def _serialized(frames: list[object]) -> object:
    from shoal.protocol._serialize import Serialized

    return Serialized(frames)
