"""TCP connections notice dead peers: keepalive from dask's comm timeout, and replies that
must show progress. Real sockets on this host; every wait has a deadline."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import dask
import pytest

from shoal.comm import connect, listen
from shoal.comm._tcp import TCPConnection, comm_timeout, wait_reply
from shoal.protocol._messages import Hello

DEADLINE = 20.0


def run(coro: Any) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(main())


async def pair() -> tuple[TCPConnection, TCPConnection, asyncio.base_events.Server]:
    """(our end, the peer's end, the peer's server) of a fresh connection."""
    accepted: asyncio.Future[TCPConnection] = asyncio.get_running_loop().create_future()

    def accept(conn: TCPConnection) -> None:
        conn.set_handler(lambda c, b: None)
        accepted.set_result(conn)

    server = await listen("127.0.0.1", 0, accept)
    conn = await connect(f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    conn.set_handler(lambda c, b: None)
    return conn, await accepted, server


def test_comm_timeout_follows_dask_config() -> None:
    with dask.config.set({"distributed.comm.timeouts.tcp": "12s"}):
        assert comm_timeout() == 12.0
    with dask.config.set({"distributed.comm.timeouts.tcp": "0s"}), pytest.raises(
        ValueError, match="positive duration"
    ):
        comm_timeout()


def test_connections_enable_keepalive_from_the_comm_timeout() -> None:
    async def main() -> tuple[int, int]:
        conn, _peer, server = await pair()
        try:
            sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
            return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
        finally:
            conn.close()
            server.close()

    with dask.config.set({"distributed.comm.timeouts.tcp": "20s"}):
        keepalive, idle = run(main())
    assert keepalive == 1 and idle == 10


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux's TCP_USER_TIMEOUT")
def test_connections_give_up_on_unacknowledged_data_after_the_comm_timeout() -> None:
    """As dask's: keepalive is off while sent data waits for its ack, so a peer lost to a
    silent partition after we wrote to it is noticed only through the user timeout."""
    async def main() -> int:
        conn, _peer, server = await pair()
        try:
            sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
            return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
        finally:
            conn.close()
            server.close()

    with dask.config.set({"distributed.comm.timeouts.tcp": "20s"}):
        assert run(main()) == 20_000


def test_a_reply_from_a_silent_peer_fails_after_the_timeout_and_closes_the_connection() -> None:
    async def main() -> TCPConnection:
        conn, _peer, server = await pair()
        try:
            never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            with pytest.raises(ConnectionError, match=r"sent nothing for 0\.2 s while asked for x"):
                await wait_reply(conn, never, 0.2, "x")
            return conn
        finally:
            server.close()

    assert run(main()).closed


# The reply deadline of the trickle test: its bytes come ten times as often, so a loaded
# machine (the loop late by most of a second) still sees progress in every window.
TRICKLE_DEADLINE = 1.0


def test_a_reply_still_arriving_keeps_the_wait_alive() -> None:
    async def main() -> tuple[str, float]:
        conn, peer, server = await pair()
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[str] = loop.create_future()

        async def trickle() -> None:  # bytes every deadline/10 for 3 deadlines, then the reply
            for _ in range(30):
                await asyncio.sleep(TRICKLE_DEADLINE / 10)
                peer.send(Hello("peer", 1, "still sending"))
            reply.set_result("done")

        task = asyncio.ensure_future(trickle())
        start = loop.time()
        try:
            return await wait_reply(conn, reply, TRICKLE_DEADLINE, "x"), loop.time() - start
        finally:
            await task
            conn.close()
            server.close()

    got, waited = run(main())
    assert got == "done"
    assert waited > TRICKLE_DEADLINE  # it outlived its deadline: the progress kept it alive
