"""Real TLS connections on this host, on the event loop shoal runs (uvloop) and on the
standard library's (a client awaited in the user's own loop): big values cross intact and
in order in many pieces, and a peer without a certificate from the cluster's CA never gets
a connection. Every wait has a deadline."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import numpy as np
import pytest

from shoal._loop import new_event_loop
from shoal.comm import connect, listen
from shoal.comm._connection import Connection
from shoal.comm._tcp import HANDSHAKE_TIMEOUT, TLS_PIECE, TCPConnection
from shoal.protocol._messages import Data, Message
from shoal.protocol._serialize import dumps, loads

DEADLINE = 30.0


LOOPS = {"uvloop": new_event_loop, "asyncio": asyncio.new_event_loop}


def run(coro: Any, loop_name: str) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, DEADLINE)

    loop = LOOPS[loop_name]()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_values_of_many_pieces_arrive_intact_and_in_order_over_tls(loop_name: str) -> None:
    from shoal import Security

    security = Security.temporary()
    rng = np.random.default_rng(13)
    big = rng.integers(0, 2**63, size=40 * TLS_PIECE // 8, dtype="int64")  # ~40 pieces
    medium = {f"m{i}": rng.bytes(TLS_PIECE * 2 // 3) for i in range(20)}

    async def scenario() -> list[Message]:
        got: list[Message] = []
        done = asyncio.Event()

        def on_batch(conn: Connection, batch: list[Message] | None) -> None:
            got.extend(batch or ())
            if len(got) == 3:
                done.set()

        server = await listen("127.0.0.1", 0, lambda c: c.set_handler(on_batch),
                              security=security, role="worker", scheme="tls")
        port = server.sockets[0].getsockname()[1]
        conn = await connect(f"tls://127.0.0.1:{port}", security=security, role="worker")
        conn.set_handler(lambda c, b: None)
        conn.send(Data(1, {"big": dumps(big)}, [], {}, True))
        conn.send(Data(1, {k: dumps(v) for k, v in medium.items()}, [], {}, True))
        await conn.drain()
        conn.send(Data(1, {}, ["gone"], {}))
        await done.wait()
        conn.close()
        server.close()
        return got

    first, second, third = run(scenario(), loop_name)
    assert isinstance(first, Data) and np.array_equal(loads(first.items["big"]), big)
    assert isinstance(second, Data)
    assert {k: loads(v) for k, v in second.items.items()} == medium
    assert isinstance(third, Data) and list(third.missing) == ["gone"]


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_tls_listener_hands_over_no_peer_without_a_certificate_from_its_ca(
    loop_name: str,
) -> None:
    from shoal import Security

    security = Security.temporary()
    other = Security.temporary()  # a certificate from another CA

    async def scenario() -> list[TCPConnection]:
        accepted: list[TCPConnection] = []
        server = await listen("127.0.0.1", 0, accepted.append, security=security,
                              role="worker", scheme="tls")
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(OSError, match="TLS handshake"):
            await connect(f"tls://127.0.0.1:{port}", security=other, role="worker")
        # A client that trusts the server but brings no certificate of its own.
        bare = ssl.create_default_context(cadata=security.tls_ca_file)
        bare.check_hostname = False
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=bare)
        try:  # refused at once, not dropped later for want of shoal's handshake
            answer = await asyncio.wait_for(reader.read(1 << 16), HANDSHAKE_TIMEOUT / 2)
            assert answer == b""
        except (ssl.SSLError, ConnectionError):
            pass  # the server's alert
        writer.close()
        server.close()
        return accepted

    assert run(scenario(), loop_name) == []


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_tls_connection_sends_the_sni_it_is_given(loop_name: str) -> None:
    # dask worker --scheduler-sni: a TLS proxy in front of the scheduler routes by SNI.
    from shoal import Security

    security = Security.temporary()
    seen: list[str | None] = []
    server_ctx = security.ssl_context("scheduler", server=True)
    assert server_ctx is not None
    server_ctx.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment]

    async def scenario() -> None:
        server = await listen("127.0.0.1", 0, lambda c: c.set_handler(lambda c, b: None),
                              security=security, role="scheduler", scheme="tls")
        port = server.sockets[0].getsockname()[1]
        for sni in ("sched.example.org", None):
            conn = await connect(f"tls://127.0.0.1:{port}", security=security, role="worker",
                                 server_hostname=sni)
            conn.close()
        server.close()

    run(scenario(), loop_name)
    assert seen == ["sched.example.org", None]  # no SNI for an IP address
