"""A TCP relay between clients and a scheduler that a test can cut and restore.

``Relay(target)`` listens on a port of its own (``relay.address``) and relays each
connection it accepts to ``target``, both ways, on one thread. ``cut()`` closes every
relayed connection (both ends see the connection close, as when a link or the scheduler
goes) and, until ``restore()``, closes each new connection as soon as it is accepted: a
reconnect attempt then gets through TCP and is closed during its handshake (``refused``
counts them). ``half_cut()`` closes only the clients' side of every relayed connection and
leaves the target's side open, unread, until ``close()``: a half-open link, which the
client sees drop and the target does not (as after a partition or a NAT dropping the
flow, until TCP keepalive notices); new connections are still relayed. ``close()`` ends
it all.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import threading
from typing import Any


class Relay:
    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self.refused = 0  # connections closed at once while cut
        self.relayed = 0  # connections relayed to the target
        self._up = True
        self._peers: dict[socket.socket, socket.socket] = {}
        self._clients: set[socket.socket] = set()  # the accepted side of each relayed pair
        self._half_open: list[socket.socket] = []  # targets' sides left open by half_cut
        self._orders: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="chaos-relay", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Close every relayed connection; refuse new ones until ``restore()``."""
        self._order("cut")

    def half_cut(self) -> None:
        """Close the clients' side of every relayed connection; keep the target's open."""
        self._order("half_cut")

    def restore(self) -> None:
        """Relay new connections again."""
        self._order("restore")

    def close(self) -> None:
        if self._thread.is_alive():
            self._order("close")
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the relay's thread did not stop"

    def _order(self, what: str) -> None:
        done = threading.Event()
        self._orders.put((what, done))
        assert done.wait(10), f"the relay did not {what} within 10 s"

    # --- the relay's thread ------------------------------------------------------------------

    def _run(self) -> None:
        running = True
        while running:  # ends: a "close" order
            for key, _ in self._sel.select(timeout=0.02):
                sock: Any = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._forward(sock)
            while not self._orders.empty():
                what, done = self._orders.get()
                if what in ("cut", "close"):
                    self._up = False
                    for sock in list(self._peers):
                        self._drop(sock)
                if what == "half_cut":
                    for sock in [s for s in self._peers if s in self._clients]:
                        self._half_open.append(self._peers[sock])
                        self._drop(sock, keep=self._peers[sock])
                if what == "restore":
                    self._up = True
                if what == "close":
                    running = False
                done.set()
        for sock in self._half_open:
            _shut(sock)
        self._sel.unregister(self._listener)
        self._listener.close()
        self._sel.close()

    def _accept(self) -> None:
        try:
            inner, _ = self._listener.accept()
        except BlockingIOError:
            return
        if not self._up:
            self.refused += 1
            _shut(inner)
            return
        try:
            outer = socket.create_connection(self._target, timeout=2)
        except OSError:  # the target is down: the client sees its connection close
            self.refused += 1
            _shut(inner)
            return
        self.relayed += 1
        self._clients.add(inner)
        self._peers[inner], self._peers[outer] = outer, inner
        for s in (inner, outer):
            s.setblocking(False)
            self._sel.register(s, selectors.EVENT_READ)

    def _forward(self, src: socket.socket) -> None:
        try:
            data = src.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(src)
            return
        dst = self._peers[src]
        try:
            dst.setblocking(True)
            dst.settimeout(10)
            dst.sendall(data)
            dst.setblocking(False)
        except OSError:
            self._drop(src)

    def _drop(self, sock: socket.socket, keep: socket.socket | None = None) -> None:
        """Stop relaying ``sock``'s pair and close both ends (but ``keep``)."""
        other = self._peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peers.pop(s, None)
            self._clients.discard(s)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            if s is not keep:
                _shut(s)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
