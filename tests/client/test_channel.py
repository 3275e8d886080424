"""A task thread's coordination channel (shoal/client/_channel.py) against a scripted
scheduler on a loopback socket: what it waits for, what it skips, how a wait ends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shoal.client._channel import Channel, ChannelClosed
from shoal.comm._handshake import Handshake
from shoal.comm._security import Security
from shoal.protocol import _coord_messages as cm
from shoal.protocol import _messages as m
from shoal.protocol._framing import FrameDecoder, decode, encode


class Scripted:
    """A one-connection scheduler: handshake, answers the hello, then runs ``script``
    with the socket and a function that reads the next batch of messages."""

    def __init__(self, script: Callable[[socket.socket, Callable[[], list[m.Message]]], None]):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self.error: BaseException | None = None
        self._script = script
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
            with conn:
                conn.settimeout(10)
                hs = Handshake(False, None)
                hs.start()
                while not hs.done:
                    out = hs.receive(conn.recv(hs.wanted()))
                    if out:
                        conn.sendall(out)
                decoder = FrameDecoder()
                pending: list[m.Message] = []

                def read() -> list[m.Message]:
                    while not pending:
                        buf = decoder.get_buffer(65536)
                        n = conn.recv_into(buf)
                        if n == 0:
                            return []
                        for frames in decoder.buffer_updated(n):
                            pending.extend(decode(frames))
                    batch = list(pending)
                    pending.clear()
                    return batch

                (hello,) = read()
                assert isinstance(hello, m.Hello) and hello.role == "coordination"
                conn.sendall(b"".join(encode([m.Response(0, True, {"client": "t-1"})])))
                self._script(conn, read)
        except BaseException as exc:  # reported by the test through .error
            self.error = exc
        finally:
            self._listener.close()

    def join(self) -> None:
        self._thread.join(10)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error


def send(conn: socket.socket, *msgs: m.Message) -> None:
    conn.sendall(b"".join(encode(list(msgs))))


@pytest.fixture
def open_channel() -> Iterator[Callable[[Scripted], Channel]]:
    opened: list[Channel] = []

    def factory(server: Scripted) -> Channel:
        channel = Channel.open(server.address, Security(), "t", 10.0)
        opened.append(channel)
        return channel

    yield factory
    for channel in opened:
        channel.close()



def _closed_while_waiting(channel: Any, make: Any) -> BaseException | None:
    """What a thread's ``channel.call(make)`` raised when the channel was closed while the
    call waited for an answer (None if it raised nothing)."""
    out: dict[str, BaseException] = {}

    def wait() -> None:
        try:
            channel.call(make)
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(0.1)
    assert waiter.is_alive()
    channel.close()
    waiter.join(10)
    return out.get("error")

def test_channel_takes_the_name_the_scheduler_gives_it(open_channel) -> None:
    server = Scripted(lambda conn, read: None)
    assert open_channel(server).name == "t-1"
    server.join()


def test_call_returns_its_own_answer_and_skips_other_messages(open_channel) -> None:
    def script(conn: socket.socket, read: Callable[[], list[m.Message]]) -> None:
        (req,) = read()
        assert isinstance(req, cm.CoordSemaphoreAcquire)
        send(conn, m.TopicEvent("x", 0.0, "not for a channel"),
             cm.CoordReply(req.request_id + 7, True, "someone else's"),
             cm.CoordReply(req.request_id, True, True))

    server = Scripted(script)
    channel = open_channel(server)
    reply = channel.call(lambda rid: cm.CoordSemaphoreAcquire(rid, "L", 1, "l1", None, None))
    assert reply.ok and reply.value is True and not channel.unconfirmed
    server.join()


def test_send_is_unconfirmed_until_the_next_answer(open_channel) -> None:
    def script(conn: socket.socket, read: Callable[[], list[m.Message]]) -> None:
        msgs: list[m.Message] = []
        while len(msgs) < 2:
            msgs += read()
        release, value = msgs
        assert isinstance(release, cm.CoordSemaphoreRelease)
        assert isinstance(value, cm.CoordSemaphoreValue)
        send(conn, cm.CoordReply(value.request_id, True, 0))

    server = Scripted(script)
    channel = open_channel(server)
    channel.send(cm.CoordSemaphoreRelease("L", "l1"))
    assert channel.unconfirmed
    channel.barrier()
    assert not channel.unconfirmed
    server.join()


def test_closing_from_another_thread_ends_a_waiting_call(open_channel) -> None:
    done = threading.Event()

    def script(conn: socket.socket, read: Callable[[], list[m.Message]]) -> None:
        read()  # the acquire, never answered
        done.wait(10)

    server = Scripted(script)
    channel = open_channel(server)
    error = _closed_while_waiting(
        channel, lambda rid: cm.CoordSemaphoreAcquire(rid, "L", 1, "l1", None, None))
    assert isinstance(error, ChannelClosed)
    assert isinstance(error, ConnectionError)
    done.set()
    server.join()


def test_scheduler_closing_ends_a_waiting_call_with_a_connection_error(open_channel) -> None:
    server = Scripted(lambda conn, read: read())  # reads the request, then hangs up
    channel = open_channel(server)
    with pytest.raises(ConnectionError, match="lost"):
        channel.call(lambda rid: cm.CoordSemaphoreAcquire(rid, "L", 1, "l1", None, None))
    assert channel.closed
    with pytest.raises(ChannelClosed):
        channel.send(cm.CoordSemaphoreRelease("L", "l1"))
    server.join()


def test_malformed_answer_closes_the_channel(open_channel) -> None:
    def script(conn: socket.socket, read: Callable[[], list[m.Message]]) -> None:
        read()
        conn.sendall(b"\x01\x00\x00\x00" + (3).to_bytes(8, "little") + b"\xc1\xc1\xc1")

    server = Scripted(script)
    channel = open_channel(server)
    with pytest.raises(ChannelClosed, match="malformed"):
        channel.call(lambda rid: cm.CoordSemaphoreValue(rid, "L"))
    assert channel.closed
    server.join()


@pytest.mark.parametrize("spin", [0.0, 100e-6, 5.0], ids=["sleeps", "polls-then-sleeps", "polls"])
def test_an_answer_in_pieces_is_read_whether_the_thread_polls_or_sleeps(
        open_channel, spin: float) -> None:
    """The waiting thread polls its socket for SPIN_SECONDS, then sleeps in recv: an answer
    whose second half comes after the polling window (20 ms here) is still read whole."""
    def script(conn: socket.socket, read: Callable[[], list[m.Message]]) -> None:
        for _ in range(3):
            (req,) = read()
            data = b"".join(encode([cm.CoordReply(req.request_id, True, req.request_id)]))
            conn.sendall(data[:5])
            time.sleep(0.02)  # past a 100 µs polling window: the reader sleeps, then wakes
            conn.sendall(data[5:])

    server = Scripted(script)
    channel = open_channel(server)
    channel._spin = spin
    for _ in range(3):
        reply = channel.call(lambda rid: cm.CoordSemaphoreValue(rid, "L"))
        assert reply.ok and reply.value == reply.request_id
    server.join()


def test_closing_ends_a_call_that_is_still_polling(open_channel) -> None:
    done = threading.Event()
    server = Scripted(lambda conn, read: (read(), done.wait(10)))  # never answers
    channel = open_channel(server)
    channel._spin = 30.0  # polls for the whole test
    error = _closed_while_waiting(channel, lambda rid: cm.CoordSemaphoreValue(rid, "L"))
    assert isinstance(error, ChannelClosed)
    done.set()
    server.join()


def test_polls_that_miss_make_the_next_waits_sleep_at_once_until_a_poll_hits(
        open_channel) -> None:
    """After a poll that ended without its answer the channel sleeps at once for the next
    1, then 2, 4 ... waits; a poll that gets its answer ends the back-off."""
    def script(conn: socket.socket, read: Callable[[], list[m.Message]]) -> None:
        for i in range(6):
            (req,) = read()
            if i < 3:
                time.sleep(0.2)  # late: a poll of 1 µs misses it
            send(conn, cm.CoordReply(req.request_id, True, 0))

    server = Scripted(script)
    channel = open_channel(server)
    channel._spin = 1e-6  # polls that always miss
    channel._backoff = channel._skip = 0  # whatever reading the hello did

    def wait() -> tuple[int, int]:
        assert channel.call(lambda rid: cm.CoordSemaphoreValue(rid, "L")).ok
        return channel._backoff, channel._skip

    assert wait() == (1, 1)  # polled, missed
    assert wait() == (1, 0)  # slept at once
    assert wait() == (2, 2)  # polled again, missed again
    channel._spin = 30.0  # polls that always hit
    assert wait() == (2, 1)
    assert wait() == (2, 0)
    assert wait() == (0, 0)  # polled and got its answer
    server.join()
