"""(d) 1,000 random and truncated frames at every listening port (the scheduler, each
worker's data port, the dashboard's HTTP port): every process stays up, none leaks file
descriptors or memory, and the cluster computes correctly afterwards."""

from __future__ import annotations

import os
import random
import socket
import struct
from collections.abc import Callable

import msgpack
import psutil
import pytest
from integration._helpers import wait_for

from shoal.protocol._framing import MAX_FRAMES, encode
from shoal.protocol._messages import _REGISTRY, PROTOCOL_VERSION, Hello

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

FRAMES_PER_PORT = 1_000
FD_SLACK = 20
RSS_SLACK = 150 * 2**20


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 1:
        return rng.random()
    if kind == 2:
        return rng.randbytes(rng.randrange(64))
    if kind == 3:
        return "".join(rng.choice("abc-_ \u00e9\u2603") for _ in range(rng.randrange(16)))
    if kind == 4:
        return None
    if kind == 5:
        return rng.choice([True, False])
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    if kind == 7:
        return {str(i): _random_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(16)))


def _batch(frames: list[bytes]) -> bytes:
    return struct.pack(f"<I{len(frames)}Q", len(frames), *map(len, frames)) + b"".join(frames)


def protocol_garbage(rng: random.Random) -> bytes:
    """Bytes for one connection to a shoal port: noise, lies about sizes, real tags with
    wrong fields, and real messages cut short."""
    tags = sorted(_REGISTRY)
    hello = b"".join(bytes(b) for b in encode([Hello("client", PROTOCOL_VERSION, "chaos")]))
    kind = rng.randrange(8)
    if kind == 0:  # noise
        return rng.randbytes(rng.randint(1, 2048))
    if kind == 1:  # a header announcing more than follows
        lengths = [rng.randint(1, 1 << 20) for _ in range(rng.randint(1, 4))]
        head = struct.pack(f"<I{len(lengths)}Q", len(lengths), *lengths)
        return head + rng.randbytes(rng.randrange(min(lengths)))
    if kind == 2:  # absurd counts and sizes
        return rng.choice([
            struct.pack("<I", 0), struct.pack("<I", MAX_FRAMES + 1),
            struct.pack("<IQ", 1, 1 << 62), struct.pack("<IQ", 1, 1 << 34) + b"x" * 100,
            struct.pack("<I", MAX_FRAMES) + b"\0" * 64,
        ])
    if kind == 3:  # a well-framed batch of random msgpack
        return _batch([msgpack.packb(_random_value(rng), use_bin_type=True)])
    if kind == 4:  # real tags, random fields
        items = [[rng.choice(tags), *(_random_value(rng) for _ in range(rng.randrange(9)))]
                 for _ in range(rng.randint(1, 3))]
        return _batch([msgpack.packb(items, use_bin_type=True)])
    if kind == 5:  # a proper hello, then garbage
        return hello + rng.randbytes(rng.randint(1, 512))
    if kind == 6:  # a proper hello cut short
        return hello[: rng.randrange(1, len(hello))]
    # a proper hello, then real tags with random fields
    items = [[rng.choice(tags), *(_random_value(rng) for _ in range(rng.randrange(9)))]]
    return hello + _batch([msgpack.packb(items, use_bin_type=True)])


def http_garbage(rng: random.Random) -> bytes:
    """Bytes for one connection to the dashboard: noise and broken HTTP requests."""
    kind = rng.randrange(5)
    path = rng.choice(["/", "/status", "/api/task-stream?since=0", "/api/workers",
                       "/%ff%00", "/" + "a" * rng.randrange(9000)])
    if kind == 0:
        return rng.randbytes(rng.randint(1, 2048))
    if kind == 1:  # a request cut short
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        return request[: rng.randrange(1, len(request))]
    if kind == 2:  # a body shorter than announced
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
                + rng.randbytes(rng.randrange(100)))
    if kind == 3:  # broken headers
        return f"GET {path} HTTP/1.1\r\n".encode() + rng.randbytes(rng.randrange(512)) + b"\r\n\r\n"
    method = rng.choice(["GET", "BREW", "G\u00c9T"])
    return f"{method} {path} HTTP/9.9\r\n\r\n".encode()


def blast(address: str, make: Callable[[random.Random], bytes], rng: random.Random) -> None:
    host, port = address.removeprefix("tcp://").removeprefix("http://").split("/")[0].rsplit(
        ":", 1)
    for _ in range(FRAMES_PER_PORT):
        payload = make(rng)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            try:
                sock.sendall(payload)
                if rng.random() < 0.1:  # sometimes let the server answer before leaving
                    sock.settimeout(0.05)
                    try:
                        sock.recv(1 << 16)
                    except (TimeoutError, OSError):
                        pass
            except OSError:
                pass  # the server may close on us mid-send: that is its right


def inc(x: int) -> int:
    return x + 1


def usage(pid: int) -> tuple[int, int]:
    p = psutil.Process(pid)
    return p.num_fds(), p.memory_info().rss


@pytest.mark.timeout(400)
def test_garbage_at_every_port_harms_no_process(chaos_cluster) -> None:
    import dask.array as da
    import numpy as np

    rng = random.Random(1000)
    cluster, client = chaos_cluster(n_workers=2, dashboard_address=":0")
    assert client.gather(client.map(inc, range(50), pure=False)) == list(range(1, 51))
    pids = client.run(os.getpid)
    processes = {"scheduler": os.getpid(), **pids}
    before = {name: usage(pid) for name, pid in processes.items()}

    blast(cluster.scheduler_address, protocol_garbage, rng)
    for worker in sorted(pids):
        blast(worker, protocol_garbage, rng)
    assert cluster.dashboard_link
    blast(cluster.dashboard_link, http_garbage, rng)

    assert client.run(os.getpid) == pids, "a worker died or was replaced"
    assert all(len(n.restarts) == 0 for n in cluster.nannies)

    def no_leak() -> bool:
        now = {name: usage(pid) for name, pid in processes.items()}
        return all(now[n][0] <= before[n][0] + FD_SLACK and now[n][1] <= before[n][1] + RSS_SLACK
                   for n in processes)

    try:
        wait_for(no_leak, timeout=60)
    except AssertionError:
        now = {name: usage(pid) for name, pid in processes.items()}
        raise AssertionError(f"(fds, rss) before {before}, after {now}") from None
    assert client.gather(client.map(inc, range(200), pure=False)) == list(range(1, 201))
    x = da.arange(50_000, chunks=5_000) * 2
    assert client.compute(x.sum()).result(timeout=120) == (np.arange(50_000) * 2).sum()
