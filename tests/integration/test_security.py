"""Issue 13 (security core), on loopback: authentication, scheduler files, TLS, and a
protocol that reads nothing from a stranger.

The payload ``Touch`` creates a file when unpickled: that the file does not exist after an
intruder sent it proves nothing of what it sent was unpickled (the control test shows the
same bytes do create it on a cluster without authentication).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal import Client, LocalCluster, Security, _loop
from shoal.comm import connect
from shoal.comm._handshake import MISSING_TOKEN
from shoal.protocol._framing import encode
from shoal.protocol._messages import (
    PROTOCOL_VERSION,
    CancelKeys,
    Data,
    Hello,
    ReleaseKeys,
    Scatter,
    UpdateGraph,
)
from shoal.protocol._serialize import Serialized

from ._helpers import gated, wait_for

pytestmark = pytest.mark.integration

TOKEN = "a-token-only-these-tests-know"
CLI = str(Path(sys.executable).with_name("shoal"))
NO_TOKEN_HELLO = b"\x01SHOAL\x01\x00" + bytes(32)
# The timeout of a client whose every attempt fails (it retries until then): an attempt on
# loopback takes milliseconds, so a few seconds still see several under load.
REFUSED_TIMEOUT = 3


class Touch:
    """Unpickling this creates ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def poisoned_frames(path: str) -> bytes:
    """A batch a client or peer could send: a scatter and a data reply carrying Touch."""
    payload = Serialized([pickle.dumps(Touch(path))])
    msgs = [Hello("client", PROTOCOL_VERSION, "intruder"),
            Scatter(1, [("poison", payload, 8, "object")], None, False),
            Data(1, {"poison": payload}, [], {})]
    return b"".join(bytes(b) for b in encode(msgs))


def send_raw(address: str, data: bytes) -> bytes:
    """Send ``data`` on a plain socket; return everything received until the peer closes."""
    host, port = address.split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the peer may close before reading everything: that is the point
            pass
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    return got


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[LocalCluster]:
    """One token-secured cluster for the module's tests (a cluster start each was ~10 of
    them): those that throw garbage or forged frames at it then check it still serves."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("SHOAL_TOKEN", raising=False)
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                          security=Security(token=TOKEN)) as cluster:
            yield cluster


def ports(cluster: LocalCluster) -> list[str]:
    return [cluster.scheduler_address, *cluster.scheduler.workers]


def inc(x: int) -> int:
    return x + 1


# --- authentication ----------------------------------------------------------------------------


def test_a_client_without_the_token_is_refused_and_told_which_credential(token_cluster):
    with pytest.raises(OSError) as refused:
        Client(token_cluster.scheduler_address, timeout=10)
    message = str(refused.value)
    assert MISSING_TOKEN in message
    assert "SHOAL_TOKEN" in message and "scheduler_file" in message


def test_a_wrong_token_is_refused(token_cluster):
    with pytest.raises(OSError, match="wrong token"):
        Client(token_cluster.scheduler_address, timeout=10, security=Security(token="guess"))


def test_the_right_token_from_shoal_token_is_accepted(token_cluster, monkeypatch):
    monkeypatch.setenv("SHOAL_TOKEN", TOKEN)
    with Client(token_cluster.scheduler_address, timeout=10) as c:
        assert c.submit(inc, 1).result(timeout=20) == 2
        # results come straight from the workers' data ports: authenticated too
        x = c.submit(np.arange, 100_000)
        assert c.submit(np.sum, x).result(timeout=20) == int(np.arange(100_000).sum())
        assert c.gather(x).shape == (100_000,)


def test_a_raw_socket_sending_frames_is_refused_and_nothing_is_unpickled(token_cluster, tmp_path):
    for i, address in enumerate(ports(token_cluster)):
        marker = tmp_path / f"unpickled-{i}"
        frames = poisoned_frames(str(marker))
        assert send_raw(address, frames)[:1] == b"\x03"  # a refusal record, then closed
        reply = send_raw(address, NO_TOKEN_HELLO + frames)
        assert MISSING_TOKEN.encode()[:200] in reply
    with Client(token_cluster.scheduler_address, security=Security(token=TOKEN)) as c:
        assert c.submit(inc, 1).result(timeout=20) == 2  # the cluster is fine
        assert c.run(lambda: 1) == {w: 1 for w in token_cluster.scheduler.workers}
    assert not list(tmp_path.iterdir())


def test_the_same_frames_are_unpickled_on_a_cluster_without_authentication(tmp_path, monkeypatch):
    """The control: without a token the poisoned scatter reaches a worker and unpickles."""
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    marker = tmp_path / "unpickled"
    with LocalCluster(n_workers=1, dashboard_address=None) as cluster:
        host, port = cluster.scheduler_address.split("://")[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(NO_TOKEN_HELLO + poisoned_frames(str(marker)))
            wait_for(marker.exists, timeout=20)


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_and_huge_length_prefixes_at_every_port_crash_nothing(token_cluster, seed):
    rng = random.Random(seed)
    garbage = [
        rng.randbytes(rng.randrange(1, 5000)),
        (1).to_bytes(4, "little") + (1 << 40).to_bytes(8, "little") + rng.randbytes(100),
        NO_TOKEN_HELLO[:7] + b"\x01" + rng.randbytes(32) + b"\x02" + rng.randbytes(32),
        b"\x03\xff" + rng.randbytes(5000),
    ]
    for address in ports(token_cluster):
        for data in garbage:
            reply = send_raw(address, data)
            assert len(reply) <= 512
    with Client(token_cluster.scheduler_address, security=Security(token=TOKEN)) as c:
        assert c.submit(inc, seed).result(timeout=20) == seed + 1


def test_scheduler_file_carries_address_and_token_to_workers_and_clients(tmp_path, monkeypatch):
    """The HPC flow: ``shoal scheduler --scheduler-file``, ``shoal worker --scheduler-file``,
    ``Client(scheduler_file=...)``; the worker is started first and waits for the file."""
    path = tmp_path / "scheduler.json"
    log = tmp_path / "log"
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    procs: list[subprocess.Popen] = []
    try:
        with log.open("a") as out:
            procs.append(subprocess.Popen(
                [CLI, "worker", "--scheduler-file", str(path), "--nthreads", "1"],
                stdout=out, stderr=subprocess.STDOUT))
            env = dict(os.environ, SHOAL_TOKEN=TOKEN)  # the scheduler's own, not the others'
            procs.append(subprocess.Popen(
                [CLI, "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                 str(path)], stdout=out, stderr=subprocess.STDOUT, env=env))
        with Client(scheduler_file=str(path), timeout=30) as c:
            info = json.loads(path.read_text())
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert info["token"] == TOKEN
            assert {"type", "id", "address", "services", "started", "workers"} <= set(info)
            assert c.scheduler_address == info["address"]
            c.wait_for_workers(1, timeout=30)
            assert c.submit(sum, [41, 1]).result(timeout=120) == 42  # importable there
        with pytest.raises(OSError, match="SHOAL_TOKEN"):
            Client(info["address"], timeout=10)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert "Token written to" in log.read_text()


def test_off_loopback_without_security_makes_up_a_token_and_no_auth_does_not(caplog):
    from shoal.scheduler._server import Scheduler

    sched = Scheduler("0.0.0.0", security=Security(token=None))
    sched.security.token = None
    sched._choose_credentials()
    assert sched.token_generated and len(sched.security.token or "") >= 32
    loopback = Scheduler("127.0.0.1", security=Security(token=None))
    loopback.security.token = None
    loopback._choose_credentials()
    assert loopback.security.token is None
    open_door = Scheduler("0.0.0.0", auth=False, security=Security(token=None))
    open_door._choose_credentials()
    assert open_door.security.token is None
    assert "--no-auth" in caplog.text
    tls = Scheduler("0.0.0.0", security=Security.temporary())
    tls.security.token = None
    tls._choose_credentials()
    assert tls.security.token is None  # mutual TLS authenticates


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_end_to_end_with_a_temporary_certificate(monkeypatch):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    sec = Security.temporary()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      security=sec, protocol="tls://") as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        assert all(w.startswith("tls://") for w in cluster.scheduler.workers)
        with Client(cluster.scheduler_address, security=sec, timeout=20) as c:
            a, b = list(cluster.scheduler.workers)
            x = c.submit(np.ones, 1_000_000, workers=[a])
            total = c.submit(np.sum, x, workers=[b])  # a worker-to-worker fetch over TLS
            assert total.result(timeout=120) == 1_000_000
            assert c.gather(x).sum() == 1_000_000
        with pytest.raises(ValueError, match="no TLS certificate"):
            Client(cluster.scheduler_address, timeout=10)
        # A client retries a failed connection until its timeout (as dask's), then raises
        # with the last attempt's reason: a short timeout, which still sees many attempts.
        other = Security.temporary()  # a certificate from another CA
        with pytest.raises(OSError, match="TLS handshake"):
            Client(cluster.scheduler_address, security=other, timeout=REFUSED_TIMEOUT)
        plain = "tcp://" + cluster.scheduler_address.split("://")[1]
        with pytest.raises(OSError, match="tls://"):
            Client(plain, timeout=REFUSED_TIMEOUT)  # a plain-TCP client at a TLS port


def test_retiring_a_worker_of_a_tls_cluster_moves_its_data(monkeypatch):
    # The scheduler fetched a retiring worker's data with the process's default
    # credentials (a client's) instead of its own: refused on a TLS cluster.
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    sec = Security.temporary()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      security=sec, protocol="tls://") as cluster, \
            Client(cluster.scheduler_address, security=sec, timeout=20) as c:
        first, second = sorted(c.scheduler_info()["workers"])
        held = c.submit(np.ones, 1_000, workers=[first])
        assert held.result(timeout=120).sum() == 1_000
        assert list(c.retire_workers([first])) == [first]
        assert c.who_has(held)[held.key] == (second,)
        assert c.gather(held).sum() == 1_000


def test_require_encryption_refuses_plain_tcp(token_cluster):
    with pytest.raises(ValueError, match="requires encryption"):
        Client(token_cluster.scheduler_address, timeout=10,
               security=Security(require_encryption=True, token=TOKEN))


# --- protocol hardening -----------------------------------------------------------------------


def test_a_function_blob_with_a_wrong_content_id_is_refused(token_cluster):
    scheduler = token_cluster.scheduler
    fid = "0" * 24

    async def send() -> bool:
        conn = await connect(scheduler.address, security=Security(token=TOKEN))
        conn.send(Hello("client", PROTOCOL_VERSION, "forger"))
        conn.send(UpdateGraph([], [], {fid: pickle.dumps(print)}))
        await conn.wait_closed()
        return conn.closed

    assert _loop.run_sync(send(), 20)
    assert fid not in scheduler._functions


def test_a_client_cannot_release_or_cancel_another_clients_future(token_cluster, gate):
    sec = Security(token=TOKEN)
    with Client(token_cluster.scheduler_address, security=sec) as owner, \
            Client(token_cluster.scheduler_address, security=sec) as stranger:
        fut = owner.submit(gated, gate.path, 7, pure=False)
        done = owner.submit(inc, 1)
        assert done.result(timeout=20) == 2
        stranger._send(CancelKeys([fut.key], True))
        stranger._send(ReleaseKeys([fut.key, done.key]))
        # the stranger's messages are handled before this request is answered
        stranger.scheduler_info()
        tasks = token_cluster.scheduler.tasks
        assert tasks[fut.key].state == "processing"
        assert tasks[done.key].state == "memory"
        gate.open()
        assert fut.result(timeout=20) == 7
        assert done.result(timeout=20) == 2
        with pytest.raises(RuntimeError, match="does not hold"):
            stranger._sync_request("failure", timeout=10, key=fut.key)


def test_a_peer_that_never_finishes_the_handshake_is_dropped(token_cluster, monkeypatch):
    import shoal.comm._tcp as tcp

    monkeypatch.setattr(tcp, "HANDSHAKE_TIMEOUT", 0.3)
    host, port = token_cluster.scheduler_address.split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(NO_TOKEN_HELLO[:10])  # half a hello, then silence
        assert sock.recv(100) == b""  # closed by the scheduler, not by our timeout


def test_the_dashboard_of_a_tls_cluster_is_served_over_https_with_its_certificate(monkeypatch):
    import ssl
    import urllib.request

    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    sec = Security.temporary()
    with LocalCluster(n_workers=1, dashboard_address="127.0.0.1:0", security=sec,
                      protocol="tls://") as cluster:
        link = cluster.dashboard_link
        assert link is not None and link.startswith("https://")
        ctx = ssl.create_default_context(cadata=sec.tls_ca_file)
        ctx.check_hostname = False  # the certificate names shoal-internal, not 127.0.0.1
        with urllib.request.urlopen(link, context=ctx, timeout=20) as page:
            assert page.status == 200
            peer_cert = page.fp.raw._sock.getpeercert(binary_form=True)
        assert ssl.DER_cert_to_PEM_cert(peer_cert).split() == sec.tls_scheduler_cert.split()


def test_a_duplicate_register_is_refused_unless_it_is_the_same_worker_reconnecting():
    """A worker whose old connection still looks open (half-open after a partition) may take
    its place again, proven by the random incarnation only it sent; anyone else is refused."""
    import asyncio

    from shoal.protocol._messages import Register, RegisterReply
    from shoal.scheduler._server import Scheduler

    address = "tcp://127.0.0.1:1"

    async def register(scheduler: Scheduler, incarnation: str) -> tuple[Any, list[Any]]:
        conn = await connect(scheduler.address, security=Security(token=TOKEN))
        inbox: list[Any] = []
        conn.set_handler(lambda _c, batch: inbox.append(batch))
        conn.send(Hello("worker", PROTOCOL_VERSION, address))
        conn.send(Register(address, address, 1, 0, os.getpid(), "127.0.0.1", incarnation))
        return conn, inbox

    def replies(inbox: list[Any]) -> list[bool]:
        return [m.accepted for b in inbox if b for m in b if isinstance(m, RegisterReply)]

    async def until(predicate: Any) -> None:
        for _ in range(1000):
            if predicate():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition still false after 10 s")

    async def main() -> None:
        scheduler = Scheduler(security=Security(token=TOKEN))
        await scheduler.start()
        try:
            first, first_inbox = await register(scheduler, "incarnation-A")
            await until(lambda: replies(first_inbox) == [True])
            _stranger, stranger_inbox = await register(scheduler, "incarnation-B")
            await until(lambda: None in stranger_inbox)
            assert replies(stranger_inbox) == [False]
            assert scheduler._workers[address] is not None and not first.closed
            again, again_inbox = await register(scheduler, "incarnation-A")
            await until(lambda: replies(again_inbox) == [True])
            await until(lambda: None in first_inbox)  # the stale connection was dropped
            assert list(scheduler.state.workers) == [address]
            assert scheduler._workers[address] is not first
            again.close()
        finally:
            await scheduler.close()

    asyncio.run(main())


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


@pytest.mark.parametrize("processes", [True, False])
def test_a_client_of_a_secured_local_cluster_uses_its_credentials_for_workers_and_actors(
    monkeypatch, processes
):
    """Results and actor calls go straight to the workers: the client needs the cluster's
    credentials for those connections too, without being given them again."""
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    sec = Security.temporary()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, security=sec,
                      protocol="tls://", processes=processes) as cluster, Client(cluster) as c:
        big = c.submit(np.ones, 2_000_000)
        assert c.gather(big).sum() == 2_000_000  # fetched from the worker over TLS
        counter = c.submit(Counter, actor=True).result(timeout=20)
        assert counter.increment().result(timeout=20) == 1


def test_a_client_refused_by_a_worker_gets_the_reason_instead_of_waiting(token_cluster):
    """A client that reached the scheduler but cannot prove itself to a worker (wrong
    credentials for direct fetches) is told why, not left retrying forever."""
    with Client(token_cluster.scheduler_address, security=Security(token=TOKEN)) as c:
        big = c.submit(np.ones, 2_000_000)
        big.result(timeout=20)
        c.security = Security(token="not-the-token")
        c._worker_conns.clear()
        with pytest.raises(OSError, match="wrong token"):
            c.gather(big)


def test_command_line_tls_with_certificate_files(tmp_path, monkeypatch):
    """``--tls-ca-file --tls-cert --tls-key`` on both commands; a task's own client (which
    connects as a client) works with the worker's certificate."""
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    sec = Security.temporary()
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.write_text(sec.tls_ca_file)
    cert.write_text(sec.tls_scheduler_cert)
    key.write_text(sec.tls_scheduler_key)
    tls = ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    path = tmp_path / "scheduler.json"
    log = tmp_path / "log"
    procs: list[subprocess.Popen] = []
    try:
        with log.open("a") as out:
            procs.append(subprocess.Popen(
                [CLI, "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                 str(path), *tls], stdout=out, stderr=subprocess.STDOUT))
            procs.append(subprocess.Popen(
                [CLI, "worker", "--scheduler-file", str(path), "--nthreads", "2", *tls],
                stdout=out, stderr=subprocess.STDOUT))
        client_sec = Security(tls_ca_file=str(ca), tls_client_cert=str(cert),
                              tls_client_key=str(key))
        with Client(scheduler_file=str(path), security=client_sec, timeout=30) as c:
            assert c.scheduler_address.startswith("tls://")
            assert "token" not in json.loads(path.read_text())  # mutual TLS authenticates
            c.wait_for_workers(1, timeout=30)
            nested = c.submit(lambda: __import__("shoal").get_client().submit(abs, -3).result())
            assert nested.result(timeout=120) == 3
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
