"""``python -m benchmarks.tls_ceiling``: how fast can 200 MB cross a TLS connection on this
machine at all, outside shoal's cluster (issue 13)?

Two processes (forked) move ``--mb`` MB over loopback, plain TCP and TLS, with the TLS
context shoal itself builds (``Security.temporary()``, mutual TLS), through:

- ``blocking``: a blocking socket each side, ``sendall`` of a memoryview / ``recv_into``
  a preallocated buffer (OpenSSL runs without the GIL);
- ``asyncio`` and ``uvloop``: ``loop.create_connection`` / ``create_server`` with an
  ``asyncio.BufferedProtocol`` receiving straight into the preallocated buffer, the sender
  handing the transport ``--piece`` bytes at a time under flow control;
- ``shoal``: shoal's own transport (``shoal.comm``, uvloop, handshake included), one
  ``Data`` message carrying the payload as an out-of-band frame, as a worker sends a value.

Plus the cost of the cipher alone in one process (``SSLObject`` over memory BIOs: encrypt,
then decrypt, in CPU seconds), which bounds every TLS figure: the sender must encrypt and the
receiver decrypt every byte, each on its own core, on top of the kernel copies plain TCP pays.

Each figure is the best of ``--reps`` transfers on one connection, after one warm-up. Per
side, the kernel's scheduler statistics split each transfer (warm-up included) into seconds
on a CPU, seconds runnable but waiting for a CPU (other load), and seconds idle (waiting
for the peer: the pipeline ran dry).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import ssl
import time
from typing import Any

_GO = b"g"
PIECE = 1 << 20  # bytes per transport.write for the asyncio and uvloop senders


def _contexts(ciphers: str | None, tls12: bool) -> Any:
    from shoal import Security

    kwargs: dict[str, Any] = {}
    if ciphers:
        kwargs["tls_ciphers"] = ciphers
    if tls12:
        kwargs["tls_max_version"] = 1.2
    return Security.temporary(**kwargs)


def _clock() -> tuple[float, float, float]:
    """(wall, on-CPU, waiting-for-a-CPU) seconds of this thread so far: the kernel's
    schedstat, so that what a transfer spends idle (the pipeline ran dry) can be told apart
    from what it spends runnable but descheduled (other load on the machine)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = (int(x) for x in f.read().split())
        return time.perf_counter(), run / 1e9, wait / 1e9
    except (OSError, ValueError):
        return time.perf_counter(), time.process_time(), 0.0


def _usage(start: tuple[float, float, float], count: int) -> tuple[float, float, float]:
    """(on-CPU, waiting for a CPU, idle) seconds per transfer since ``start``."""
    wall, run, wait = (b - a for a, b in zip(start, _clock(), strict=True))
    return run / count, wait / count, max(wall - run - wait, 0.0) / count


def _payload(n: int) -> memoryview:
    return memoryview(bytearray(b"x" * n))


# --- blocking sockets ----------------------------------------------------------------------


def _blocking_receiver(ctx: ssl.SSLContext | None, n: int, reps: int, out: Any) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    out.send(listener.getsockname()[1])
    sock, _ = listener.accept()
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_side=True)
    buf = memoryview(bytearray(n))
    times = []
    cpu = _clock()
    for _ in range(reps + 1):
        began = time.perf_counter()
        sock.sendall(_GO)
        got = 0
        while got < n:
            k = sock.recv_into(buf[got:])
            if not k:
                raise ConnectionError("the sender closed early")
            got += k
        times.append(time.perf_counter() - began)
    out.send((min(times[1:]), _usage(cpu, reps + 1), sock.cipher() if isinstance(sock, ssl.SSLSocket) else None))
    sock.close()


def _blocking_sender(port: int, ctx: ssl.SSLContext | None, n: int, reps: int, piece: int,
                     out: Any) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_side=False)
    data = _payload(n)
    cpu = _clock()
    for _ in range(reps + 1):
        if sock.recv(1) != _GO:
            raise ConnectionError("the receiver closed early")
        sock.sendall(data)
    out.send(_usage(cpu, reps + 1))
    sock.recv(1)  # the receiver closes when done
    sock.close()


# --- asyncio / uvloop ------------------------------------------------------------------------


class _Receiver(asyncio.BufferedProtocol):
    def __init__(self, n: int, reps: int, done: asyncio.Future[Any]) -> None:
        self.buf = memoryview(bytearray(n))
        self.n, self.reps, self.done = n, reps, done
        self.got = 0
        self.times: list[float] = []
        self.transport: Any = None
        self.cpu = _clock()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._go()

    def _go(self) -> None:
        self.got = 0
        self.began = time.perf_counter()
        self.transport.write(_GO)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf[self.got :]

    def buffer_updated(self, nbytes: int) -> None:
        self.got += nbytes
        if self.got < self.n:
            return
        self.times.append(time.perf_counter() - self.began)
        if len(self.times) <= self.reps:
            self._go()
            return
        ssl_object = self.transport.get_extra_info("ssl_object")
        self.done.set_result((min(self.times[1:]), _usage(self.cpu, self.reps + 1),
                              ssl_object and ssl_object.cipher()))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"the sender went away: {exc}"))


class _Sender(asyncio.Protocol):
    def __init__(self, n: int, piece: int, closed: asyncio.Future[Any]) -> None:
        self.data = _payload(n)
        self.piece = piece
        self.pos = len(self.data)
        self.paused = False
        self.closed = closed
        self.transport: Any = None
        self.cpu = _clock()
        self.sent = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.pos = 0
        self.sent += 1
        self._pump()

    def _pump(self) -> None:
        while self.pos < len(self.data) and not self.paused:
            self.transport.write(self.data[self.pos : self.pos + self.piece])
            self.pos += self.piece

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(_usage(self.cpu, max(self.sent, 1)))


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("uvloop", "shoal"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _async_receiver(ctx: ssl.SSLContext | None, n: int, reps: int, out: Any, kind: str) -> None:
    async def run() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        server = await loop.create_server(lambda: _Receiver(n, reps, done), "127.0.0.1", 0,
                                          ssl=ctx)
        out.send(server.sockets[0].getsockname()[1])
        try:
            return await done
        finally:
            server.close()

    loop = _new_loop(kind)
    out.send(loop.run_until_complete(run()))
    loop.close()


def _async_sender(port: int, ctx: ssl.SSLContext | None, n: int, reps: int, piece: int,
                  out: Any, kind: str) -> None:
    async def run() -> Any:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[Any] = loop.create_future()
        await loop.create_connection(lambda: _Sender(n, piece, closed), "127.0.0.1", port,
                                     ssl=ctx, server_hostname="" if ctx else None)
        return await closed

    loop = _new_loop(kind)
    out.send(loop.run_until_complete(run()))
    loop.close()


# --- shoal's transport -------------------------------------------------------------------------


def _shoal_receiver(security: Any, n: int, reps: int, out: Any) -> None:
    from shoal.comm._tcp import listen
    from shoal.protocol._messages import Data, GetData

    async def run() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        times: list[float] = []
        began = [0.0]
        cpu = [_clock()]

        def handler(conn: Any, batch: Any) -> None:
            if batch is None:
                if not done.done():
                    done.set_exception(ConnectionError("the sender went away"))
                return
            for msg in batch:
                assert isinstance(msg, Data) and msg.items["x"].nbytes >= n, msg
                times.append(time.perf_counter() - began[0])
                if len(times) <= reps:
                    go(conn)
                else:
                    ssl_object = conn.transport.get_extra_info("ssl_object")
                    done.set_result((min(times[1:]), _usage(cpu[0], reps + 1),
                                     ssl_object and ssl_object.cipher()))

        def go(conn: Any) -> None:
            began[0] = time.perf_counter()
            conn.send(GetData(len(times), ["x"]))

        def on_connection(conn: Any) -> None:
            cpu[0] = _clock()
            conn.set_handler(handler)
            go(conn)

        scheme = "tls" if security is not None else "tcp"
        server = await listen("127.0.0.1", 0, on_connection, security=security, role="worker",
                              scheme=scheme)
        out.send(server.sockets[0].getsockname()[1])
        try:
            return await done
        finally:
            server.close()

    loop = _new_loop("shoal")
    out.send(loop.run_until_complete(run()))
    loop.close()


def _shoal_sender(port: int, security: Any, n: int, reps: int, piece: int, out: Any) -> None:
    from shoal.comm import _tcp
    from shoal.comm._tcp import connect
    from shoal.protocol._messages import Data, GetData
    from shoal.protocol._serialize import Serialized

    if piece:
        _tcp.TLS_PIECE = piece

    async def run() -> Any:
        data = _payload(n)
        sent = [0]
        cpu = _clock()
        scheme = "tls" if security is not None else "tcp"
        conn = await connect(f"{scheme}://127.0.0.1:{port}", security=security, role="worker")

        def handler(conn: Any, batch: Any) -> None:
            for msg in batch or ():
                assert isinstance(msg, GetData), msg
                sent[0] += 1
                conn.send(Data(msg.request_id, {"x": Serialized([b"", data])}, [], {}))

        conn.set_handler(handler)
        await conn.wait_closed()
        return _usage(cpu, max(sent[0], 1))

    loop = _new_loop("shoal")
    out.send(loop.run_until_complete(run()))
    loop.close()


# --- driver ----------------------------------------------------------------------------------


def transfer(kind: str, security: Any, n: int, reps: int, piece: int) -> tuple[Any, ...]:
    """(best seconds, receiver usage, sender usage, cipher) of ``n`` bytes from one process to
    another; plain TCP when ``security`` is None."""
    mp = multiprocessing.get_context("fork")
    server_ctx = client_ctx = None
    if security is not None:
        server_ctx = security.ssl_context("worker", server=True)
        client_ctx = security.ssl_context("worker", server=False)
    r_theirs, r_ours = mp.Pipe()
    s_theirs, s_ours = mp.Pipe()
    if kind == "blocking":
        receiver = mp.Process(target=_blocking_receiver, args=(server_ctx, n, reps, r_ours))
    elif kind == "shoal":
        receiver = mp.Process(target=_shoal_receiver, args=(security, n, reps, r_ours))
    else:
        receiver = mp.Process(target=_async_receiver, args=(server_ctx, n, reps, r_ours, kind))
        piece = piece or PIECE
    receiver.start()
    sender = None
    try:
        if not r_theirs.poll(30):
            raise TimeoutError(f"{kind}: the receiver did not listen within 30 s")
        port = r_theirs.recv()
        if kind == "blocking":
            sender = mp.Process(target=_blocking_sender,
                                args=(port, client_ctx, n, reps, piece, s_ours))
        elif kind == "shoal":
            sender = mp.Process(target=_shoal_sender, args=(port, security, n, reps, piece, s_ours))
        else:
            sender = mp.Process(target=_async_sender,
                                args=(port, client_ctx, n, reps, piece, s_ours, kind))
        sender.start()
        if not r_theirs.poll(120):
            raise TimeoutError(f"{kind}: no result within 120 s")
        seconds, receiver_cpu, cipher = r_theirs.recv()
        sender_cpu = s_theirs.recv() if s_theirs.poll(10) else None
        return seconds, receiver_cpu, sender_cpu, cipher
    finally:
        for proc in (sender, receiver):
            if proc is None:
                continue
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _handshake_in_memory(security: Any) -> tuple[Any, ...]:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = security.ssl_context("worker", server=False).wrap_bio(c_in, c_out)
    server = security.ssl_context("worker", server=True).wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj, bio, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            if bio.pending:
                peer_in.write(bio.read())
    return client, c_out, server, s_in


def cipher_alone(security: Any, n: int, piece: int) -> tuple[float, float, Any]:
    """(encrypt GB/s, decrypt GB/s, cipher) per CPU second: ``n`` bytes through
    ``SSLObject``s over memory BIOs in this one process, ``piece`` bytes per ``write``, each
    piece decrypted right after it was encrypted (so the figures are the cipher's and the
    BIO copies', not those of the page faults of keeping 200 MB of ciphertext)."""
    client, c_out, server, s_in = _handshake_in_memory(security)
    data = _payload(n)
    buf = memoryview(bytearray(n))
    got = 0
    enc = dec = 0.0
    for start in range(0, n, piece):
        began = time.process_time()
        client.write(data[start : start + piece])
        chunk = c_out.read()
        middle = time.process_time()
        s_in.write(chunk)
        while got < n:
            try:
                got += server.read(n - got, buf[got:])
            except ssl.SSLWantReadError:
                break
        enc += middle - began
        dec += time.process_time() - middle
    if got != n:
        raise AssertionError(f"decrypted {got} bytes of {n}")
    return n / enc / 1e9, n / dec / 1e9, client.cipher()


def _fmt(usage: Any) -> str:
    if not isinstance(usage, tuple):
        return f"{'?':>17}"
    return "/".join(f"{x:.3f}" for x in usage).rjust(17)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tls_ceiling",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--piece", type=int, default=None,
                        help="bytes per transport.write over TLS (default: 1 MiB for asyncio "
                        "and uvloop, shoal's own TLS_PIECE for shoal)")
    parser.add_argument("--kinds", default="blocking,asyncio,uvloop,shoal")
    parser.add_argument("--ciphers", default=None, help="an OpenSSL cipher list (TLS 1.2)")
    parser.add_argument("--tls12", action="store_true", help="cap TLS at version 1.2")
    args = parser.parse_args(argv)
    n = args.mb * 1_000_000
    security = _contexts(args.ciphers, args.tls12)
    enc, dec, cipher = cipher_alone(security, n, args.piece or PIECE)
    print(f"cipher alone ({cipher[0]}, {cipher[1]}, {args.piece or PIECE} B writes): encrypt "
          f"{enc:.2f} GB/s, decrypt {dec:.2f} GB/s per CPU second")
    print("per transfer, each side: seconds on a CPU / runnable but waiting for one / idle")
    print(f"{'path':<9} {'tcp GB/s':>8} {'tls GB/s':>8} {'tls/tcp':>7}  {'tcp send':>17}  "
          f"{'tcp receive':>17}  {'tls send':>17}  {'tls receive':>17}  cipher", flush=True)
    for kind in args.kinds.split(","):
        tcp = transfer(kind, None, n, args.reps, args.piece)
        tls = transfer(kind, security, n, args.reps, args.piece)
        print(f"{kind:<9} {n / tcp[0] / 1e9:>8.2f} {n / tls[0] / 1e9:>8.2f} "
              f"{tls[0] / tcp[0]:>6.2f}x  {_fmt(tcp[2])}  {_fmt(tcp[1])}  {_fmt(tls[2])}  "
              f"{_fmt(tls[1])}  {tls[3][0] if tls[3] else '?'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
