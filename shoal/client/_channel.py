"""A task thread's own connection to the scheduler for Lock and Semaphore requests.

Owns: one blocking socket per task thread of a worker (the "channel"), which sends a lease
request and reads its answer itself, and the rule that keeps a thread's messages in order
across its channel and its worker client's connection.

Why: through the worker client, a request from a task thread wakes the client's loop
thread, which writes it; the answer wakes that loop, which wakes the task thread. On a
channel the thread writes and the answer wakes it directly: two thread hand-offs less per
round trip (about half of a Lock's round trip, see benchmarks/RESULTS.md).

Semantics kept: the scheduler treats a channel as a lease holder like a client's connection
(role ``"coordination"``, see shoal/scheduler/coordination/_shell.py), so a lease returns
when the worker (and so the channel) dies. A channel outlives its thread: a thread that
ends leaves its leases held, as they would be by the worker client, and the next new
thread takes the channel over. Order: a thread's coordination messages that get no answer
(a Queue put, a release) are known to be applied only once a later request on the same
connection is answered; before a thread switches connection while such a message may
still be in flight, it asks for an answer on the old one (a barrier). Only task threads of
a worker use channels, only with the worker's own client, and only for Lock and Semaphore
messages (they carry no futures, so nothing on them is ordered with task messages).
Must not know: the Lock API (shoal/client/_locks.py) or the client's event loop.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.comm._handshake import Handshake
from shoal.comm._tcp import _set_keepalive
from shoal.protocol._coord_messages import CoordReply, CoordSemaphoreValue
from shoal.protocol._framing import FrameDecoder, decode, encode
from shoal.protocol._messages import PROTOCOL_VERSION, Hello, Message, ProtocolError, Response

if TYPE_CHECKING:
    from shoal.client._client import Client

logger = logging.getLogger("shoal.client")


def _spin_seconds() -> float:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return 100e-6 if cpus > 1 else 0.0


# A thread waiting for an answer polls its socket this long before it sleeps in ``recv``.
# An answer usually comes within it (a Lock's round trip is ~50 µs): the thread reads it at
# once, and the scheduler's write finds no sleeper to wake. On a virtual machine, waking a
# sleeping thread means waking its idle virtual CPU, which costs both sides ~10-30 µs
# (benchmarks/RESULTS.md, "Lock round trip"). The cost is at most this much CPU per wait
# (a Lock held by someone else), and nothing on a single CPU, where polling would only take
# the time the scheduler needs to answer. A poll that ends without the answer is a sign
# that polling does not pay (a lock held longer; or CPUs so busy that the polling thread
# keeps the scheduler from running): the channel then sleeps at once for the next 1, 2,
# 4 ... up to MAX_SPIN_BACKOFF waits, and polls again after a poll that got its answer.
SPIN_SECONDS = _spin_seconds()
MAX_SPIN_BACKOFF = 1024
ROLE = "coordination"  # the scheduler's CHANNEL_ROLE
_BARRIER = "shoal-ordering-barrier"  # a semaphore name no one uses: its value answers at once


class ChannelClosed(ConnectionError):
    """The channel's connection to the scheduler closed."""


class Channel:
    """A blocking connection of one thread at a time; see the module docstring.

    Raises (from every method): ChannelClosed when the connection is gone.
    """

    def __init__(self, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self.name = name  # the holder name the scheduler gave it
        self._decoder = FrameDecoder()
        self._ids = 0
        self.closed = False
        self.unconfirmed = False  # a message without answer was sent since the last answer
        # TLS reads whole records and takes no flags: a TLS channel always sleeps.
        self._spin = 0.0 if isinstance(sock, ssl.SSLSocket) else SPIN_SECONDS
        self._backoff = 0  # waits to sleep through after the last poll that missed
        self._skip = 0  # of those, how many are left

    @classmethod
    def open(cls, address: str, security: Any, name: str, timeout: float) -> Channel:
        """Connect to the scheduler at ``address`` (tcp:// or tls://) as ``name``.

        Raises:
            OSError: no answer within ``timeout`` seconds, refused, or not reachable.
        """
        from shoal.comm._tcp import parse_address, scheme_of

        host, port = parse_address(address)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme_of(address) == "tls":
                ctx = security.ssl_context("client", server=False)
                if ctx is None:
                    raise OSError(f"{address} needs TLS and this client has no certificate")
                sock = ctx.wrap_socket(sock, server_hostname=host)
            handshake = Handshake(True, security.token)
            sock.sendall(handshake.start())
            while not handshake.done:
                data = sock.recv(handshake.wanted())
                if not data:
                    raise OSError(f"{address} closed the connection during the handshake")
                reply = handshake.receive(data)
                if reply:
                    sock.sendall(reply)
            trailing = handshake.trailing
            sock.settimeout(None)  # from now on every wait ends with an answer or the close
            _set_keepalive(sock)  # ... and a host lost to a partition closes it too
            channel = cls(sock, name)
            if trailing:
                channel._feed(trailing)
            channel._write([Hello(ROLE, PROTOCOL_VERSION, name)])
            hello = channel._read(lambda msg: isinstance(msg, Response) and msg.request_id == 0)
            channel.name = hello.value["client"]
            return channel
        except BaseException:
            sock.close()
            raise

    def call(self, make: Callable[[int], Message]) -> CoordReply:
        """Send ``make(request_id)`` and wait for its answer."""
        self._ids += 1
        rid = self._ids
        self._write([make(rid)])
        reply: CoordReply = self._read(
            lambda msg: isinstance(msg, CoordReply) and msg.request_id == rid)
        self.unconfirmed = False
        return reply

    def send(self, msg: Message) -> None:
        """Send ``msg``, which gets no answer."""
        self._write([msg])
        self.unconfirmed = True

    def barrier(self) -> None:
        """Return once the scheduler has applied everything sent on this channel so far."""
        self.call(lambda rid: CoordSemaphoreValue(rid, _BARRIER))

    def close(self) -> None:
        """Close from any thread; a thread waiting on this channel gets ChannelClosed."""
        if self.closed:
            return
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        except OSError:
            pass  # already disconnected: nothing to wake
        self._sock.close()

    # --- frames ------------------------------------------------------------------------------

    def _write(self, msgs: list[Message]) -> None:
        if self.closed:
            raise ChannelClosed("the channel to the scheduler is closed")
        try:
            self._sock.sendall(b"".join(encode(msgs)))
        except OSError as exc:
            self.close()
            raise ChannelClosed(f"the connection to the scheduler was lost ({exc})") from None

    def _feed(self, data: bytes) -> list[Message]:
        view = memoryview(data)
        out: list[Message] = []
        while view:
            buf = self._decoder.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            view = view[n:]
            for frames in self._decoder.buffer_updated(n):
                out.extend(decode(frames))
        return out

    def _poll(self, buf: memoryview) -> int:
        """``_poll_into(buf)``, unless recent polls missed (see
        ``SPIN_SECONDS``); -1: sleep in ``recv`` instead."""
        if self._skip:
            self._skip -= 1
            return -1
        n = self._poll_into(buf)
        if n < 0:
            self._backoff = min(self._backoff * 2 or 1, MAX_SPIN_BACKOFF)
            self._skip = self._backoff
        else:
            self._backoff = 0
        return n

    def _poll_into(self, buf: memoryview) -> int:
        """Bytes read into ``buf`` by polling without sleeping for up to ``SPIN_SECONDS``;
        -1 if none came by then. See ``SPIN_SECONDS``."""
        sock, flags = self._sock, socket.MSG_DONTWAIT
        end = time.perf_counter() + self._spin
        while True:
            try:
                return sock.recv_into(buf, 0, flags)
            except (BlockingIOError, InterruptedError):
                if time.perf_counter() > end:
                    return -1

    def _read(self, wanted: Callable[[Message], bool]) -> Any:
        """The first message that is ``wanted``; others (a client's broadcasts) are dropped.
        Ends with that answer or when the connection closes (keepalive closes it if the
        scheduler's host is lost): each failure below raises ChannelClosed."""
        while True:
            try:
                buf = self._decoder.get_buffer(65536)
                n = self._poll(buf) if self._spin else -1
                if n < 0:
                    n = self._sock.recv_into(buf)
            except OSError as exc:
                self.close()
                raise ChannelClosed(
                    f"the connection to the scheduler was lost ({exc})") from None
            if n == 0:
                self.close()
                raise ChannelClosed("the connection to the scheduler was lost")
            found = None
            try:
                messages = [msg for frames in self._decoder.buffer_updated(n)
                            for msg in decode(frames)]
            except ProtocolError as exc:  # the scheduler's fault; this channel is unusable
                self.close()
                raise ChannelClosed(f"the scheduler sent a malformed message ({exc})") from None
            for msg in messages:
                if found is None and wanted(msg):
                    found = msg
                else:  # nothing else is asked on a channel
                    logger.debug("coordination channel %s: ignoring %r", self.name, msg)
            if found is not None:
                return found


# --- which channel a thread uses --------------------------------------------------------------


class _Channels:
    """The channels of one worker client: which thread uses which."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[Channel, threading.Thread] = {}
        self.failed = False  # opening one failed: use the client's connection from now on


_by_client: weakref.WeakKeyDictionary[Client, _Channels] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


class _ThreadState(threading.local):
    client: Client | None = None  # the worker client of ``channel``
    channel: Channel | None = None
    # A message without answer went to this client's connection (not the channel) and no
    # later request on that connection was answered yet.
    client_unconfirmed: Client | None = None


_state = _ThreadState()


def for_thread(client: Client) -> Channel | None:
    """The calling thread's channel to ``client``'s scheduler, opened on first use; None
    where channels are not used (not a task thread of a worker whose own client this is,
    a client not running, or channels failing). Messages sent before on the client's
    connection are applied by the scheduler before anything this channel then sends."""
    state = _state
    channel = state.channel
    if channel is not None and state.client is client and not channel.closed:
        pass
    else:
        channel = _attach(client)
        if channel is None:
            return None
    if state.client_unconfirmed is client:
        _client_barrier(client)
    return channel


def _attach(client: Client) -> Channel | None:
    from shoal.worker._context import current_executor

    executor = current_executor()
    worker = None if executor is None else executor.worker
    if worker is None or worker._client is not client or client.status != "running":
        return None
    address = client.scheduler_address
    if not isinstance(address, str) or not address.startswith(("tcp://", "tls://")):
        return None
    with _registry_lock:
        channels = _by_client.setdefault(client, _Channels())
    me = threading.current_thread()
    with channels.lock:
        if channels.failed:
            return None
        channel = None
        for candidate, user in list(channels.users.items()):
            if candidate.closed:
                del channels.users[candidate]
            elif channel is None and not user.is_alive():  # its thread ended: take it over
                channel = candidate
        if channel is None:
            try:
                channel = Channel.open(address, client.security, client.id, 10.0)
            except Exception as exc:  # a channel is only faster: fall back to the client
                channels.failed = True
                logger.warning("could not open a coordination channel to %s (%s); Lock and "
                               "Semaphore use the worker's client connection", address, exc)
                return None
        channels.users[channel] = me
    _state.client, _state.channel = client, channel
    return channel


def _client_barrier(client: Client) -> None:
    from shoal.client._coordination import call

    call(client, lambda rid: CoordSemaphoreValue(rid, _BARRIER))  # clears client_unconfirmed


def before_client_message(client: Client) -> None:
    """The calling thread is about to send a coordination message on ``client``'s
    connection: a message without answer it sent on its channel is applied first."""
    channel = _state.channel
    if channel is not None and channel.unconfirmed and _state.client is client:
        channel.barrier()


def client_sent(client: Client, answered: bool) -> None:
    """The calling thread sent a coordination message on ``client``'s connection; answered:
    it was answered (so everything before it on that connection is applied)."""
    state = _state
    if answered:
        if state.client_unconfirmed is client:
            state.client_unconfirmed = None
    elif _in_task():
        state.client_unconfirmed = client


def _in_task() -> bool:
    from shoal.worker._context import current_executor

    return current_executor() is not None


def close_all(client: Client) -> None:
    """``client`` (a worker's) closes: close its channels; threads waiting on one get
    ChannelClosed."""
    with _registry_lock:
        channels = _by_client.pop(client, None)
    if channels is None:
        return
    with channels.lock:
        users = list(channels.users)
        channels.users.clear()
    for channel in users:
        channel.close()
