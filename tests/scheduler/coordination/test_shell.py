"""The scheduler's wiring of the coordination machine, driven through in-process
connections on one event loop (no worker processes, no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.protocol import _coord_messages as cm
from shoal.protocol import _messages as m
from shoal.protocol._serialize import dumps
from shoal.scheduler._server import Scheduler


class Peer:
    """One client connection to ``scheduler``; collects the CoordReply messages it gets."""

    def __init__(self, scheduler: Scheduler, name: str) -> None:
        self.conn = scheduler.connect_local_client(name)
        self.replies: dict[int, cm.CoordReply] = {}
        self._arrived = asyncio.Event()
        self.conn.set_handler(self._on)

    def _on(self, conn: Any, batch: list[m.Message] | None) -> None:
        for msg in batch or []:
            if isinstance(msg, cm.CoordReply):
                self.replies[msg.request_id] = msg
                self._arrived.set()

    async def reply(self, rid: int, timeout: float = 5.0) -> cm.CoordReply:
        async def arrived() -> cm.CoordReply:
            while rid not in self.replies:
                self._arrived.clear()
                await self._arrived.wait()
            return self.replies[rid]

        return await asyncio.wait_for(arrived(), timeout)


def run(scenario: Any) -> None:
    async def main() -> None:
        scheduler = Scheduler()
        try:
            await scenario(scheduler)
        finally:
            scheduler.coordination.state.validate()
            await scheduler.close()

    asyncio.run(main())


def test_waiter_gets_false_when_its_deadline_passes() -> None:
    async def scenario(s: Scheduler) -> None:
        a, b = Peer(s, "a"), Peer(s, "b")
        a.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l1", None, None))
        assert (await a.reply(1)).value is True
        b.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l2", None, 0.05))
        reply = await b.reply(1)
        assert reply.ok and reply.value is False

    run(scenario)


def test_closed_connection_hands_its_lock_to_the_next_waiter() -> None:
    async def scenario(s: Scheduler) -> None:
        a, b = Peer(s, "a"), Peer(s, "b")
        a.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l1", None, None))
        assert (await a.reply(1)).value is True
        b.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l2", None, None))
        b.conn.send(cm.CoordSemaphoreValue(2, "x"))
        assert (await b.reply(2)).value == 1  # answered after the acquire, which waits
        assert 1 not in b.replies
        a.conn.close()
        assert (await b.reply(1)).value is True

    run(scenario)


def test_future_unknown_to_the_scheduler_is_refused() -> None:
    async def scenario(s: Scheduler) -> None:
        a = Peer(s, "a")
        a.conn.send(cm.CoordVariableSet(1, "v", ("future", "never-submitted")))
        reply = await a.reply(1)
        assert not reply.ok and reply.value[0] == "ValueError"
        assert "never-submitted" in reply.value[1]

    run(scenario)


def test_data_round_trips_and_queue_timeout_is_a_timeout_error() -> None:
    async def scenario(s: Scheduler) -> None:
        a = Peer(s, "a")
        a.conn.send(cm.CoordQueueCreate(1, "q", 0))
        assert (await a.reply(1)).value == 0
        a.conn.send(cm.CoordQueuePut(0, "q", ("data", dumps(7)), None))  # no answer wanted
        a.conn.send(cm.CoordQueueGet(2, "q", 0, None))
        assert (await a.reply(2)).value[0] == "data"
        assert 0 not in a.replies
        a.conn.send(cm.CoordQueueGet(3, "q", 0, 0.02))
        reply = await a.reply(3)
        assert not reply.ok and reply.value[0] == "TimeoutError"

    run(scenario)


def test_queued_future_is_kept_by_the_scheduler_for_the_queue() -> None:
    async def scenario(s: Scheduler) -> None:
        a = Peer(s, "a")
        a.conn.send(m.UpdateGraph([("k", dumps(None), [], [], (0,), 0, None, "k")], ["k"], {}))
        a.conn.send(cm.CoordQueuePut(1, "q", ("future", "k"), None))
        a.conn.send(m.ReleaseKeys(["k"]))
        a.conn.send(cm.CoordQueueSize(4, "q"))
        await a.reply(4)  # answered after everything sent before it
        assert s.state.tasks["k"].who_wants == {"queue:q"}
        a.conn.send(cm.CoordQueueGet(2, "q", 0, None))
        assert (await a.reply(2)).value == ("future", "k")
        a.conn.send(cm.CoordKeysReceived(2))
        a.conn.send(cm.CoordQueueSize(3, "q"))
        await a.reply(3)
        assert s.state.tasks["k"].who_wants == {"a"}
        assert "queue:q" not in s.state.clients

    run(scenario)


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds (TimeoutError after ``timeout`` s)."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


class ChannelPeer(Peer):
    """A task thread's coordination channel (role "coordination") to ``scheduler``."""

    def __init__(self, scheduler: Scheduler, name: str) -> None:
        from shoal.comm._inproc import inproc_pair

        self.conn, server_end = inproc_pair(name, "scheduler")
        self.replies = {}
        self.hello: list[m.Response] = []
        self._arrived = asyncio.Event()
        self.conn.set_handler(self._on)
        scheduler._on_connection(server_end)  # type: ignore[arg-type]
        server_end._deliver([m.Hello("coordination", m.PROTOCOL_VERSION, name)])

    def _on(self, conn: Any, batch: list[m.Message] | None) -> None:
        self.hello.extend(msg for msg in batch or [] if isinstance(msg, m.Response))
        super()._on(conn, batch)


def test_channel_is_a_lease_holder_and_not_a_client() -> None:
    async def scenario(s: Scheduler) -> None:
        chan = ChannelPeer(s, "worker-client")
        await until(lambda: chan.hello)
        (hello,) = chan.hello
        name = hello.value["client"]
        assert name.startswith("worker-client-") and name not in s._clients
        chan.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l1", None, None))
        assert (await chan.reply(1)).value is True
        lease = s.coordination.state.semaphores.semaphores["x"].leases["l1"]
        assert lease.holder == name

    run(scenario)


def test_closed_channel_hands_its_lock_to_the_next_waiter() -> None:
    async def scenario(s: Scheduler) -> None:
        chan, b = ChannelPeer(s, "chan"), Peer(s, "b")
        chan.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l1", None, None))
        assert (await chan.reply(1)).value is True
        b.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l2", None, None))
        b.conn.send(cm.CoordSemaphoreValue(2, "x"))
        assert (await b.reply(2)).value == 1
        chan.conn.close()  # the worker died
        assert (await b.reply(1)).value is True
        assert s.coordination._channels == {}

    run(scenario)


def test_channel_sending_more_than_lease_messages_is_closed() -> None:
    async def scenario(s: Scheduler) -> None:
        chan = ChannelPeer(s, "chan")
        chan.conn.send(cm.CoordSemaphoreAcquire(1, "x", 1, "l1", None, None))
        assert (await chan.reply(1)).value is True
        chan.conn.send(cm.CoordQueueCreate(2, "q", 0))  # a channel carries no queue message
        await until(lambda: chan.conn.closed)
        assert "x" not in s.coordination.state.semaphores.semaphores  # its lease went with it

    run(scenario)


def test_direct_request_answers_its_caller_and_sends_the_others_answers_on_the_loop() -> None:
    """receive_direct from another thread: the caller's own answer is returned, not sent;
    a waiter it serves (another connection) is answered on the loop; a get that must wait
    is answered later on the caller's connection, like after receive."""
    async def scenario(s: Scheduler) -> None:
        loop = asyncio.get_running_loop()
        a, b = Peer(s, "a"), Peer(s, "b")
        b.conn.send(cm.CoordQueueGet(1, "q", 0, None))  # b waits
        b.conn.flush()  # delivered now
        server_a = s._clients["a"]

        def direct(msg: m.Message) -> Any:
            return s.coordination.receive_direct("a", server_a, msg, loop.call_soon_threadsafe)

        put = cm.CoordQueuePut(5, "q", ("data", dumps("for b")), None)
        mine = await asyncio.to_thread(direct, put)
        assert [(c.rid, c.value) for c in mine] == [(5, None)]
        got = await b.reply(1)
        assert got.ok and got.value[0] == "data"
        assert 5 not in a.replies  # answered directly, not on the connection
        assert await asyncio.to_thread(direct, cm.CoordQueueGet(6, "q", 0, None)) == []
        b.conn.send(cm.CoordQueuePut(2, "q", ("data", dumps("for a")), None))
        assert (await a.reply(6)).ok
        with pytest.raises(TypeError):
            direct(cm.CoordQueuePut(7, "q", ("future", "k"), None))
        with pytest.raises(TypeError):
            direct(cm.CoordSemaphoreRelease("x", "l1"))

    run(scenario)


def test_a_direct_put_that_asks_no_answer_hands_nothing_to_the_loop() -> None:
    """A put of data with request id 0 (the blocking client's put on a queue without
    maxsize): its answer goes to nobody, so the loop is not woken for it (a thread
    hand-off per put)."""
    async def scenario(s: Scheduler) -> None:
        Peer(s, "a")
        handed: list[Any] = []

        def call_soon(fn: Any, *args: Any) -> None:
            handed.append((fn, args))

        put = cm.CoordQueuePut(0, "q", ("data", dumps(1)), None)
        assert s.coordination.receive_direct("a", s._clients["a"], put, call_soon) == []
        assert handed == []
        assert s.coordination.state.queues.queues["q"].items

    run(scenario)
