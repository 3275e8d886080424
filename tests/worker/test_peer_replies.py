"""A peer's reply is matched to the connection the request went out on: another peer
cannot answer a fetch by guessing its request id."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.comm import Connection
from shoal.protocol._messages import Data, GetData, Message
from shoal.protocol._serialize import dumps
from shoal.worker._server import Worker
from shoal.worker._state import WorkerState


class FakeConnection(Connection):
    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer = peer
        self.sent: list[Message] = []
        self.bytes_received = 0  # what reply deadlines watch for progress
        self._gone = asyncio.Event()

    def _write_batch(self, batch: list[Message]) -> None:
        self.sent.extend(batch)

    def _close(self) -> None:
        self._gone.set()

    async def wait_closed(self) -> None:
        await self._gone.wait()


def test_a_reply_from_another_connection_does_not_answer_a_fetch() -> None:
    async def scenario() -> None:
        worker = Worker("tcp://127.0.0.1:1")
        worker.address = "tcp://127.0.0.1:2"
        worker.state = WorkerState(worker.address)
        done: list[Any] = []
        worker._carry_out = done.extend  # type: ignore[method-assign]
        honest, intruder = FakeConnection("tcp://honest:1"), FakeConnection("tcp://intruder:1")

        async def peer(address: str) -> Any:
            return honest

        worker._peer = peer  # type: ignore[method-assign]
        fetch = asyncio.ensure_future(worker._fetch("tcp://honest:1", ["x"]))
        for _ in range(5):
            await asyncio.sleep(0)
        (request,) = honest.sent
        assert isinstance(request, GetData)
        forged = Data(request.request_id, {"x": dumps("forged")}, [], {})
        worker._on_peer_message(intruder, [forged])
        await asyncio.sleep(0.01)
        assert not fetch.done()
        assert "x" not in worker.data
        worker._on_peer_message(honest, [Data(request.request_id, {"x": dumps("real")}, [], {})])
        await asyncio.wait_for(fetch, 5)
        assert worker.data["x"] == "real"

    asyncio.run(scenario())


def test_replies_wait_while_the_connection_is_over_its_high_water_mark() -> None:
    from shoal.comm._tcp import TCPConnection
    from shoal.protocol._framing import FrameDecoder, decode

    class PausingTransport:
        """A socket whose buffer passes the high-water mark at every write."""

        def __init__(self) -> None:
            self.written = bytearray()
            self.protocol: TCPConnection | None = None

        def writelines(self, buffers: list[Any]) -> None:
            for b in buffers:
                self.written += memoryview(b).cast("B")
            assert self.protocol is not None
            self.protocol.pause_writing()

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

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

    async def scenario() -> None:
        worker = Worker("tcp://127.0.0.1:1")
        worker.address = "tcp://127.0.0.1:2"
        worker.state = WorkerState(worker.address)
        worker.data["x"] = b"x" * 1000
        conn = TCPConnection(None)
        transport = PausingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        transport.protocol = conn
        conn.pause_writing()  # a reader that stopped reading: the buffer is full
        for rid in range(3):
            worker._on_peer_message(conn, [GetData(rid, ["x"])])
        for _ in range(10):
            await asyncio.sleep(0)
        assert transport.written == b""  # nothing more queued toward it
        for _ in range(100):
            conn.resume_writing()
            await asyncio.sleep(0.001)
        replies = decoded(bytes(transport.written))
        assert sorted(r.request_id for r in replies) == [0, 1, 2]  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_paused_worker_starts_no_fetch_until_it_resumes() -> None:
    from shoal.worker._events import Fetch

    async def scenario() -> None:
        worker = Worker("tcp://127.0.0.1:1")
        worker.address = "tcp://127.0.0.1:2"
        worker.state = WorkerState(worker.address)
        worker.memory_limit = 1000
        started: list[Any] = []

        async def fetch(peer: str, keys: list[Any], nbytes: int) -> None:
            started.append((peer, keys))

        class Executor:
            def pause(self) -> None: ...
            def resume(self) -> None: ...

        scheduler = FakeConnection("tcp://scheduler:1")
        worker._scheduler = scheduler  # type: ignore[assignment]
        worker._executor = Executor()  # type: ignore[assignment]
        worker._actors = object()  # type: ignore[assignment]
        worker._fetch_within_budget = fetch  # type: ignore[method-assign]
        worker._pause(900)
        order = Fetch("tcp://peer:1", ["x"])
        worker._carry_out([order])
        await asyncio.sleep(0.01)
        assert started == []  # paused: nothing new comes in
        worker._resume(100)
        await asyncio.sleep(0.01)
        assert started == [("tcp://peer:1", ["x"])]
        await scheduler.drain()
        assert [m.paused for m in scheduler.sent] == [True, False]  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_failed_request_fails_the_keys_queued_for_that_peer_at_once() -> None:
    """One request at a time to each peer: when it fails (the peer unreachable, or silent
    past the fetch timeout), the keys waiting their turn fail with it, rather than each
    request waiting out its own timeout against the same dead peer in turn."""
    from shoal.worker._events import Fetch, FetchFailed

    async def scenario() -> None:
        worker = Worker("tcp://127.0.0.1:1")
        worker.address = "tcp://127.0.0.1:2"
        handled: list[Any] = []

        class State:
            def handle(self, *events: Any, now: float = 0.0) -> list[Any]:
                handled.extend(events)
                return []

        calls: list[list[Any]] = []
        release = asyncio.Event()

        async def get_data(peer: str, keys: list[Any]) -> Data:
            calls.append(list(keys))
            await release.wait()  # ends: set below
            raise OSError("connection refused")

        worker.state = State()  # type: ignore[assignment]
        worker._get_data = get_data  # type: ignore[method-assign]
        worker._scheduler = FakeConnection("tcp://scheduler:1")  # type: ignore[assignment]
        worker._executor = object()  # type: ignore[assignment]
        worker._actors = object()  # type: ignore[assignment]
        worker._queue_fetch(Fetch("tcp://peer:1", ["a"]))
        for _ in range(100):  # ends: the runner's first request, a few loop turns away
            if calls:
                break
            await asyncio.sleep(0)
        worker._queue_fetch(Fetch("tcp://peer:1", ["b"]))
        worker._queue_fetch(Fetch("tcp://peer:1", ["c"]))
        release.set()
        await asyncio.gather(*worker._tasks)
        assert calls == [["a"]]
        assert handled == [FetchFailed("tcp://peer:1", ["a"]), FetchFailed("tcp://peer:1", ["b", "c"])]
        assert worker._fetch_queues == {}

    asyncio.run(scenario())
