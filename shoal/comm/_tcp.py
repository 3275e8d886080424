"""TCP and TLS transport on asyncio (uvloop when available) with zero-copy receive of big
frames.

Every connection starts with the handshake of ``_handshake.py`` (inside TLS for ``tls://``):
until it is done, reads go to a buffer of ``HANDSHAKE_CAP`` bytes and no frame is decoded,
and a listener hands a connection to its server only once the peer is authenticated.
A malformed frame from a peer closes that connection and is logged; it never propagates.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from shoal.comm._connection import Connection
from shoal.comm._handshake import HANDSHAKE_CAP, Handshake, HandshakeError
from shoal.comm._security import Security, default_security
from shoal.protocol._framing import FileFrame, FrameDecoder, decode, encode
from shoal.protocol._messages import Message, ProtocolError
from shoal.protocol._unsendable import BrokenGraphs, local_answers, stand_ins

logger = logging.getLogger("shoal.comm")


class _Judge(Exception):
    """A batch to encode message by message (``_encode_each``) without trying it whole."""

# A peer that has not finished the handshake by then is dropped (it holds a socket).
HANDSHAKE_TIMEOUT = 10.0
# Frames go to TLS in pieces of at most this size (six full 16 KiB TLS records), the next
# when the SSL layer says so. The SSL layer copies each piece's ciphertext into a new bytes
# object: under 128 KiB, glibc's default mmap threshold, which stays there in a process
# started with MALLOC_TRIM_THRESHOLD_ and no MALLOC_MMAP_THRESHOLD_ (dask's worker
# environment; shoal's nanny sets both), that is recycled heap memory rather than fresh pages
# mapped, zeroed and unmapped for every piece (with 1 MiB pieces, a third of a sending
# worker's CPU in a TLS transfer). A piece also stays in the L2 cache through the SSL
# layer's copies.
TLS_PIECE = 96 * 1024
# Pause above this much ciphertext waiting in the SSL layer (asyncio's default is 512 KiB):
# it hands all of it to the socket in one bytes object when the socket drains, which must
# stay under the mmap threshold too. The socket's own buffer keeps the pipe full meanwhile.
TLS_WRITE_HIGH_WATER = TLS_PIECE // 2
# A frame left in a file (a spilled value served to a peer) is read and written in chunks
# of this size, the next once the transport drained.
STREAM_CHUNK = 4 << 20
SCHEMES = ("tcp", "tls")


def scheme_of(address: str) -> str:
    """``"tls"`` for ``tls://...``, else ``"tcp"``."""
    return "tls" if address.startswith("tls://") else "tcp"


# Set in worker processes from their command line (the nanny reads dask's config): a worker
# must not import dask (~0.3 s of CPU) to start or to connect.
_comm_timeout_given: float | None = None


def set_comm_timeout(seconds: float) -> None:
    """Use ``seconds`` as ``comm_timeout()`` in this process instead of reading dask's config."""
    global _comm_timeout_given
    if not seconds > 0:
        raise ValueError(f"the comm timeout must be a positive number of seconds, got {seconds!r}")
    _comm_timeout_given = float(seconds)


def comm_timeout() -> float:
    """Seconds after which an unresponsive connection is dead: dask's
    ``distributed.comm.timeouts.tcp`` (default 30 s), or what ``set_comm_timeout`` gave."""
    if _comm_timeout_given is not None:
        return _comm_timeout_given
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.comm.timeouts.tcp", "30s")
    seconds = parse_timedelta(value, default="seconds")
    if not seconds or seconds <= 0:
        raise ValueError(
            f"distributed.comm.timeouts.tcp must be a positive duration like '30s', got {value!r}"
        )
    return float(seconds)


def _set_keepalive(sock: socket.socket) -> None:
    """Let the kernel notice a peer that vanished (powered off, cable pulled, a partition
    dropping every packet) within about ``comm_timeout()`` seconds, as dask does: keepalive
    probes for an idle connection, and on Linux ``TCP_USER_TIMEOUT`` for one whose sent data
    goes unacknowledged (keepalive is off while data is in flight, and the kernel alone
    retransmits for ~15 minutes: a client that sent anything into a partition waited that
    long). (A frozen process's kernel still answers: waits on replies carry their own
    deadline, e.g. the worker's fetches.)"""
    try:
        timeout = comm_timeout()
    except ValueError as exc:
        logger.error("%s; using 30 s", exc)
        timeout = 30.0
    t = max(int(timeout), 2)
    idle = max(1, t // 2)
    interval = max(1, (t - idle) // 5)
    count = max(1, (t - idle) // interval)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))
    except OSError as exc:
        logger.debug("could not set TCP keepalive: %s", exc)


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://host:port``, ``tls://host:port`` (or ``host:port``) → (host, port).

    Raises:
        ValueError: the address is not of that form.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be a string like 'tcp://127.0.0.1:8786', got {address!r}")
    scheme, sep, rest = address.partition("://")
    if not sep:
        rest = address
    elif scheme not in SCHEMES:
        raise ValueError(f"unsupported protocol in {address!r}: shoal speaks tcp:// and tls://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not of the form 'tcp://host:port'")
    return host.strip("[]") or "127.0.0.1", int(port)


def _retrieve(fut: asyncio.Future[None]) -> None:
    """Mark a handshake failure as seen (whoever cared was told; the rest is logged)."""
    if not fut.cancelled():
        fut.exception()


class TCPConnection(Connection, asyncio.BufferedProtocol):
    def __init__(self, handshake: Handshake | None = None, scheme: str = "tcp") -> None:
        Connection.__init__(self)
        self._decoder = FrameDecoder()
        self._scheme = scheme
        # Until the handshake is done, reads land in this small buffer, never the decoder.
        self._handshake = handshake
        self._hs_buf = bytearray(HANDSHAKE_CAP) if handshake is not None else None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(_retrieve)
        if handshake is None:
            self.ready.set_result(None)
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._resume: asyncio.Future[None] | None = None
        self._closed_event = asyncio.Event()
        self._early: list[Message] = []  # sent before the transport was ready
        self._broken = BrokenGraphs()  # graphs sent in pieces a piece of which could not go
        self.bytes_received = 0  # progress, for deadlines on replies
        self._tls_backlog: collections.deque[Any] = collections.deque()  # see _write_tls
        self._stream_lock: asyncio.Lock | None = None  # see send_streamed

    # protocol callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            _set_keepalive(sock)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{self._scheme}://{peer[0]}:{peer[1]}"
        if self._scheme == "tls":
            transport.set_write_buffer_limits(high=TLS_WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        if self._handshake is not None:
            first = self._handshake.start()
            if first:
                transport.write(first)  # type: ignore[attr-defined]
            return
        if self._early:
            early, self._early = self._early, []
            self._write_batch(early)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._hs_buf is not None:
            return memoryview(self._hs_buf)
        return self._decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        if self._hs_buf is not None:
            self._handshake_received(bytes(self._hs_buf[:nbytes]))
            return
        self._frames_received(nbytes)

    def _handshake_received(self, data: bytes) -> None:
        hs = self._handshake
        assert hs is not None and self.transport is not None
        try:
            reply = hs.receive(data)
        except HandshakeError as exc:
            if hs.outgoing:
                self.transport.write(hs.outgoing)
                logger.warning("refused connection %s %s: %s", "to" if hs.initiator else "from",
                               self.peer, exc)
            if not self.ready.done():
                self.ready.set_exception(exc)
            self.close()
            return
        if reply:
            self.transport.write(reply)
        if not hs.done:
            return
        self._hs_buf = None
        self._handshake = None
        if not self.ready.done():
            self.ready.set_result(None)
        if self._early:
            early, self._early = self._early, []
            self._write_batch(early)
        trailing = memoryview(hs.trailing)
        while trailing and not self.closed:  # frames that came with the last record
            buf = self._decoder.get_buffer(len(trailing))
            n = min(len(buf), len(trailing))
            buf[:n] = trailing[:n]
            trailing = trailing[n:]
            self._frames_received(n)

    def _frames_received(self, nbytes: int) -> None:
        try:
            batches = self._decoder.buffer_updated(nbytes)
            for frames in batches:
                self._deliver(decode(frames))
        except ProtocolError as exc:
            logger.error("closing connection from %s: malformed input (%s)", self.peer, exc)
            self.close()
        except Exception:
            logger.exception("closing connection from %s: error handling its messages", self.peer)
            self.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(
                f"the connection to {self.peer} closed during the handshake"
                + (f" ({exc})" if exc else "")
                + (" (is it a tls:// address? the peer did not answer shoal's plain-TCP "
                   "handshake)" if self._scheme == "tcp" else "")))
        was_closed = self.closed
        self.closed = True
        self._closed_event.set()
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        if not was_closed or self._handler is not None:
            self._deliver(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._tls_backlog:
            self._pump_tls()
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    # Connection ------------------------------------------------------------------------
    @property
    def writing_paused(self) -> bool:
        return self._paused

    def _write_batch(self, batch: list[Message]) -> None:
        if self.transport is None or self._handshake is not None:
            self._early.extend(batch)
            return
        try:
            if self._broken.errors:  # (rare) later pieces of a graph that cannot be whole
                raise _Judge
            buffers = encode(batch)
        except Exception:
            buffers = self._encode_each(batch)
            if not buffers:
                return
        if self._scheme == "tls":
            self._write_tls(buffers)
        else:
            self.transport.writelines(buffers)

    def _encode_each(self, batch: list[Message]) -> list[Any]:
        """``batch`` did not encode: encode what does, message by message. Each message
        that fails is logged (its kind, this peer, the error) and replaced by its
        ``stand_ins`` (a reply with the error, a failed task...: the peer waiting on it
        learns of the failure), or answered here with ``local_answers`` (a compute this
        side waits on fails), or dropped; the rest of the batch goes, in order. A bug in one message never silently loses the others."""
        sendable: list[Message] = []
        # (message, how many stand-ins deep): a row of a columnar message, then its own
        # stand-in, then nothing.
        todo = [(msg, 0) for msg in reversed(batch)]
        while todo:  # ends: stand-ins go at most two deep
            msg, depth = todo.pop()
            try:
                if depth == 0 and (earlier := self._broken.error_of(msg)) is not None:
                    raise earlier  # a later piece of a graph whose piece could not go
                encode([msg])
            except Exception as exc:
                self._broken.failed(msg, exc)
                try:
                    replaced = stand_ins(msg, exc) if depth < 2 else []
                    answers = local_answers(msg, exc)
                except Exception:
                    logger.exception("no stand-in for a %r message for %s", msg.tag, self.peer)
                    replaced, answers = [], []
                done = [f"sending {len(replaced)} {replaced[0].tag!r} message(s) instead"
                        ] if replaced else []
                if answers:
                    done.append(f"answering it here with {answers[0].tag!r}")
                logger.error("could not encode a %r message for %s (%s: %s); %s", msg.tag,
                             self.peer, type(exc).__name__, exc,
                             ", ".join(done) or "dropping it", exc_info=exc)
                if answers:  # to this side's handler, as if from the peer, after this write
                    asyncio.get_running_loop().call_soon(self._answer_here, answers)
                todo.extend((one, depth + 1) for one in reversed(replaced))
                continue
            sendable.append(msg)
        return encode(sendable) if sendable else []

    def _answer_here(self, answers: list[Message]) -> None:
        if not self.closed:  # else the handler heard of the end: nobody waits any more
            self._deliver(answers)

    def _write_tls(self, buffers: list[Any]) -> None:
        """Hand TLS a batch in pieces of at most ``TLS_PIECE`` bytes (small buffers grouped,
        big ones cut), the next one only while the transport is not paused: OpenSSL
        encrypts a huge write into one ever-growing memory buffer several times slower than
        pieces that go to the socket as they come."""
        backlog = self._tls_backlog
        group: list[Any] = []  # small buffers sent as one piece, not one record each
        size = 0
        for buf in buffers:
            view = memoryview(buf).cast("B")
            if size + view.nbytes > TLS_PIECE and group:
                backlog.append(b"".join(group))
                group, size = [], 0
            if view.nbytes < TLS_PIECE:
                group.append(view)
                size += view.nbytes
                continue
            for start in range(0, view.nbytes, TLS_PIECE):
                backlog.append(view[start : start + TLS_PIECE])
        if group:
            backlog.append(b"".join(group))
        self._pump_tls()

    def _pump_tls(self) -> None:
        backlog, transport = self._tls_backlog, self.transport
        assert transport is not None
        while backlog and (not self._paused or self.closed):
            transport.write(backlog.popleft())

    async def drain(self) -> None:
        await super().drain()
        while self._paused and not self.closed:
            # Several tasks may wait at once (pieces of two replies): they share one future,
            # which a waiter's cancellation (its deadline) must not cancel for the others.
            if self._resume is None or self._resume.done():
                self._resume = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._resume)

    async def send_streamed(self, msg: Message, stall_timeout: float) -> None:
        """Send ``msg`` now, reading its :class:`FileFrame` frames from their files
        ``STREAM_CHUNK`` bytes at a time, each written once the previous ones left the
        transport's buffer: a value bigger than this process's memory can be sent. Messages
        sent meanwhile wait and follow it; streams take turns. A peer that reads nothing
        for ``stall_timeout`` seconds gets its connection closed (logged); a closed
        connection ends the send."""
        buffers = encode([msg])
        if self._stream_lock is None:
            self._stream_lock = asyncio.Lock()
        async with self._stream_lock:  # two streams on one connection would interleave
            await self._stream(buffers, stall_timeout)

    async def _stream(self, buffers: list[Any], stall_timeout: float) -> None:
        await self.drain()
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        self._streaming = True
        try:
            for buf in buffers:
                if type(buf) is not FileFrame:
                    self._write_buffers([buf])
                    continue
                done = 0
                while done < buf.nbytes:
                    await self._drain_within(stall_timeout)
                    if self.closed:
                        return
                    n = min(STREAM_CHUNK, buf.nbytes - done)
                    try:
                        chunk = await loop.run_in_executor(
                            None, _read_exactly, buf.file, buf.offset + done, n)
                    except OSError as exc:  # half a frame is out: the peer must see an end
                        logger.error("closing connection to %s: could not read a frame to "
                                     "stream (%s)", self.peer, exc)
                        self.close()
                        return
                    if self.closed:
                        return
                    self._write_buffers([chunk])
                    done += n
        finally:
            self._streaming = False
            if self._outbox and not self.closed:
                self._flush()

    async def _drain_within(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.drain(), timeout)
        except asyncio.TimeoutError:
            logger.warning("closing connection to %s: it read nothing for %g s of a streamed "
                           "reply", self.peer, timeout)
            self.close()

    def _write_buffers(self, buffers: list[Any]) -> None:
        assert self.transport is not None
        if self._scheme == "tls":
            self._write_tls(buffers)
        else:
            self.transport.writelines(buffers)

    def _close(self) -> None:
        if self._tls_backlog and self.transport is not None:
            self._pump_tls()  # closed: hand everything over, the transport flushes it
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()  # ends: set when the transport is lost or closed


async def wait_reply(conn: TCPConnection, reply: asyncio.Future[Any], timeout: float,
                     what: str) -> Any:
    """The result of ``reply`` (a request's answer arriving on ``conn``).

    Raises:
        ConnectionError: ``conn`` closed first, or the peer sent no byte for ``timeout``
            seconds (frozen, or gone without a word); the connection is then closed.
            Progress on the connection (a big reply arriving) keeps the wait alive.
    """
    closed: asyncio.Future[Any] = asyncio.ensure_future(conn.wait_closed())
    try:
        seen = -1
        while not reply.done() and not closed.done():
            if conn.bytes_received == seen:
                conn.close()
                raise ConnectionError(
                    f"{conn.peer} sent nothing for {timeout:g} s while asked for {what} (frozen "
                    "or unreachable; 'distributed.comm.timeouts.tcp' sets this limit)"
                )
            seen = conn.bytes_received
            await asyncio.wait([reply, closed], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
    if not reply.done():
        raise ConnectionError(f"connection to {conn.peer} closed while asked for {what}")
    return reply.result()


def _check_scheme(address: str, scheme: str, security: Security, role: str,
                  server: bool) -> Any:
    """The SSL context for ``scheme`` (None for tcp).

    Raises:
        ValueError: tls:// without certificates, or tcp:// while encryption is required.
    """
    if scheme == "tls":
        ctx = security.ssl_context(role, server=server)
        if ctx is None:
            raise ValueError(
                f"{address} is a tls:// address but no TLS certificate is configured for the "
                f"{role}: pass security=Security(tls_ca_file=..., tls_{role}_cert=..., "
                f"tls_{role}_key=...) (or Security.temporary()), or set "
                "distributed.comm.tls.* in dask's config")
        return ctx
    if security.require_encryption:
        raise ValueError(
            f"refusing plain {address}: this process requires encryption "
            "(Security(require_encryption=True) / distributed.comm.require-encryption); "
            "use a tls:// address")
    return None


async def connect(
    address: str, timeout: float = 10.0, *, security: Security | None = None,
    role: str = "client", server_hostname: str | None = None,
) -> TCPConnection:
    """Open a connection to ``address`` (``tcp://`` or ``tls://``) and run the handshake;
    ``role`` (client, worker, scheduler) picks the TLS certificate. ``server_hostname``:
    the TLS SNI to send (dask's ``scheduler_sni``, for a proxy that routes by it; the
    certificate is still checked against the cluster's CA only); default: the host's
    name (none for an IP address).

    Raises:
        OSError: nothing listens there, or it did not answer within ``timeout`` seconds.
        HandshakeError (an OSError): the peer refused us or we refused it; says why.
        ValueError: the address needs credentials this process does not have.
    """
    host, port = parse_address(address)
    scheme = scheme_of(address)
    security = security if security is not None else default_security()
    ctx = _check_scheme(address, scheme, security, role, server=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    handshake = Handshake(True, security.token)
    made: list[TCPConnection] = []

    def factory() -> TCPConnection:
        made.append(TCPConnection(handshake, scheme))
        return made[0]

    try:
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(factory, host, port, ssl=ctx,
                                       server_hostname=server_hostname if ctx else None),
                timeout)
            await asyncio.wait_for(asyncio.shield(conn.ready),
                                   max(deadline - loop.time(), 0.001))
        except BaseException:
            for c in made:  # a connection that did not finish its handshake is not kept
                c.close()
            raise
    except asyncio.TimeoutError:
        raise OSError(
            f"timed out after {timeout} s connecting to {address}; is a shoal scheduler or "
            "worker running there?"
        ) from None
    except HandshakeError as exc:
        raise HandshakeError(f"{address} refused: {exc.reason}" if exc.remote else
                             f"refusing {address}: {exc.reason}", exc.remote) from None
    except ssl.SSLError as exc:
        raise OSError(f"TLS handshake with {address} failed: {exc}; is it a tls:// port, and "
                      "do both ends use certificates from the same CA?") from None
    except OSError as exc:
        raise OSError(
            f"could not connect to {address}: {exc.strerror or exc}; is a shoal scheduler or "
            "worker running there?"
        ) from None
    return conn


async def listen(
    host: str, port: int, on_connection: Callable[[TCPConnection], Any], *,
    security: Security | None = None, role: str = "scheduler", scheme: str = "tcp",
) -> asyncio.base_events.Server:
    """Listen on host:port; ``on_connection`` is called with each new connection once its
    handshake is done (a peer that fails it never reaches the caller).

    Raises:
        ValueError: ``scheme`` needs credentials this process does not have.
    """
    loop = asyncio.get_running_loop()
    security = security if security is not None else default_security()
    ctx = _check_scheme(f"{scheme}://{host}:{port}", scheme, security, role, server=True)
    token = security.token

    def factory() -> TCPConnection:
        conn = TCPConnection(Handshake(False, token), scheme)
        timer = loop.call_later(HANDSHAKE_TIMEOUT, _expire, conn)

        def ready(fut: asyncio.Future[None]) -> None:
            timer.cancel()
            if not fut.cancelled() and fut.exception() is None:
                on_connection(conn)

        conn.ready.add_done_callback(ready)
        return conn

    return await loop.create_server(factory, host, port, reuse_address=True, backlog=1024,
                                    ssl=ctx)


def _read_exactly(file: Any, offset: int, n: int) -> bytes:
    data = os.pread(file.fileno(), n, offset)
    if len(data) != n:
        raise OSError(f"{getattr(file, 'name', 'a file')} is shorter than the frame it holds")
    return data


def _expire(conn: TCPConnection) -> None:
    if not conn.ready.done():
        logger.warning("closing connection from %s: no handshake within %s s", conn.peer,
                       HANDSHAKE_TIMEOUT)
        conn.close()
