"""(c) The client's connection to the scheduler drops in the middle of a ``gather``: the
gather ends with a clear error, the futures are ``lost``, the scheduler lets go of that
client's work, and a new Client works."""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any

import pytest
from integration._helpers import Gate, gated, wait_for

from shoal import Client

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


class Proxy:
    """A TCP relay between one client and the scheduler, which the test can cut."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._cut = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._listener.settimeout(60)
        inner, _ = self._listener.accept()
        outer = socket.create_connection(self._target, timeout=10)
        self._sockets = [inner, outer]
        peers = {inner: outer, outer: inner}
        with selectors.DefaultSelector() as sel:
            for s in peers:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while not self._cut.is_set():
                for key, _ in sel.select(timeout=0.05):
                    src: Any = key.fileobj
                    try:
                        data = src.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._cut.set()
                        break
                    peers[src].setblocking(True)
                    peers[src].sendall(data)
                    peers[src].setblocking(False)
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._listener.close()

    def cut(self) -> None:
        self._cut.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


def inc(x: int) -> int:
    return x + 1


@pytest.mark.timeout(300)
def test_dropped_scheduler_connection_mid_gather_loses_futures_clearly(
    chaos_cluster, tmp_path
) -> None:
    cluster, _ = chaos_cluster(n_workers=2)
    gate = Gate(tmp_path / "gate")
    proxy = Proxy(cluster.scheduler_address)
    client = Client(proxy.address, set_as_default=False)
    try:
        quick = client.map(inc, range(20), pure=False)
        big = client.submit(bytes, 4_000_000, pure=False)  # finished, its value on a worker
        wait_for(lambda: all(f.done() for f in [*quick, big]), timeout=120)
        slow = client.map(gated, [gate.path] * 4, range(4), pure=False)
        keys = [f.key for f in slow]
        state = cluster.scheduler.state
        wait_for(lambda: all(k in state.tasks for k in keys), timeout=60)

        outcome: dict[str, BaseException] = {}

        def gather() -> None:
            try:
                client.gather(quick + slow)
            except BaseException as exc:
                outcome["error"] = exc

        waiter = threading.Thread(target=gather, daemon=True)
        waiter.start()
        wait_for(lambda: any(state.tasks[k].state == "processing" for k in keys), timeout=60)
        proxy.cut()
        waiter.join(timeout=60)
        assert not waiter.is_alive(), "gather still waits after the connection was lost"
        error = outcome["error"]
        assert "connection to the scheduler was lost" in str(error), error
        assert [f.status for f in slow] == ["lost"] * len(slow)
        with pytest.raises(Exception, match="connection to the scheduler was lost"):
            slow[0].result(timeout=5)
        # A finished future whose value is on a worker: no fetch can happen any more, so
        # it is lost too (it waited for that fetch for ever), as dask cancels every future.
        assert big.status == "lost"
        with pytest.raises(Exception, match="connection to the scheduler was lost"):
            big.result(timeout=5)
        # The scheduler lets go of the departed client's work.
        wait_for(lambda: not any(k in state.tasks for k in keys), timeout=60)
    finally:
        gate.open()
        client.close()
    with Client(cluster.scheduler_address, set_as_default=False) as fresh:
        assert fresh.gather(fresh.map(inc, range(10), pure=False)) == list(range(1, 11))
