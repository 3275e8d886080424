"""TCP transport on asyncio (uvloop when available) with zero-copy receive of big frames.

A malformed frame from a peer closes that connection and is logged; it never propagates.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from shoal.comm._connection import Connection
from shoal.protocol._framing import FrameDecoder, decode, encode
from shoal.protocol._messages import Message, ProtocolError

logger = logging.getLogger("shoal.comm")


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
    """Let the kernel notice an idle connection's peer that vanished (powered off, cable
    pulled) within about ``comm_timeout()`` seconds. (A frozen process's kernel still
    answers: waits on replies carry their own deadline, e.g. the worker's fetches.)"""
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
    except OSError as exc:
        logger.debug("could not set TCP keepalive: %s", exc)


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``) → (host, port).

    Raises:
        ValueError: the address is not of that form.
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be a string like 'tcp://127.0.0.1:8786', got {address!r}")
    rest = address[len("tcp://") :] if address.startswith("tcp://") else address
    if "://" in rest:
        raise ValueError(f"unsupported protocol in {address!r}: shoal speaks tcp:// only")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} is not of the form 'tcp://host:port'")
    return host.strip("[]") or "127.0.0.1", int(port)


class TCPConnection(Connection, asyncio.BufferedProtocol):
    def __init__(self) -> None:
        Connection.__init__(self)
        self._decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._resume: asyncio.Future[None] | None = None
        self._closed_event = asyncio.Event()
        self._early: list[Message] = []  # sent before the transport was ready
        self.bytes_received = 0  # progress, for deadlines on replies

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
            self.peer = f"tcp://{peer[0]}:{peer[1]}"
        if self._early:
            early, self._early = self._early, []
            self._write_batch(early)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
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
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    # Connection ------------------------------------------------------------------------
    def _write_batch(self, batch: list[Message]) -> None:
        if self.transport is None:
            self._early.extend(batch)
            return
        try:
            buffers = encode(batch)
        except Exception:
            logger.exception("could not encode a message batch for %s; dropping it", self.peer)
            return
        self.transport.writelines(buffers)

    async def drain(self) -> None:
        await super().drain()
        while self._paused and not self.closed:
            self._resume = asyncio.get_running_loop().create_future()
            await self._resume

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()


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


async def connect(address: str, timeout: float = 10.0) -> TCPConnection:
    """Open a connection to ``address``.

    Raises:
        OSError: nothing listens there, or it did not answer within ``timeout`` seconds.
    """
    host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(TCPConnection, host, port), timeout
        )
    except asyncio.TimeoutError:
        raise OSError(
            f"timed out after {timeout} s connecting to {address}; is a shoal scheduler or "
            "worker running there?"
        ) from None
    except OSError as exc:
        raise OSError(
            f"could not connect to {address}: {exc.strerror or exc}; is a shoal scheduler or "
            "worker running there?"
        ) from None
    return conn


async def listen(
    host: str, port: int, on_connection: Callable[[TCPConnection], Any]
) -> asyncio.base_events.Server:
    """Listen on host:port; ``on_connection`` is called with each new connection."""
    loop = asyncio.get_running_loop()

    def factory() -> TCPConnection:
        conn = TCPConnection()
        loop.call_soon(on_connection, conn)
        return conn

    return await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
