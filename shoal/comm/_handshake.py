"""The connection handshake: who may talk to a shoal process, decided before any frame.

Owns: the few fixed-size records both ends exchange when a TCP or TLS connection opens,
and the mutual challenge-response that proves both ends know the cluster's secret token.
A pure state machine in the style of h11: bytes in, bytes out; it never touches a socket,
a clock or the config. The transport feeds it what it reads and writes what it returns,
and reads no frame of the shoal protocol until :attr:`Handshake.done` (so nothing a
stranger sends is ever unpickled, or even given a buffer larger than :data:`HANDSHAKE_CAP`).

The exchange (``I`` initiator, ``A`` acceptor; ``nI``, ``nA`` 32 random bytes each)::

    I -> A  HELLO(mode, nI)                      mode 1: "I have a token", 0: "I have none"
    A -> I  HELLO(mode, nA) [+ PROOF(HMAC(k, "acceptor"|nI|nA))]   or REFUSE(reason)
    I -> A  PROOF(HMAC(k, "initiator"|nI|nA))    (mode 1 only), then frames follow

Both ends hold the same token or neither does. An acceptor with a token refuses an
initiator without one (saying which credential is missing); an initiator with a token
refuses an acceptor that cannot prove it knows it (a wrong token, or a peer without one:
work is never sent to an impostor). The labels keep a proof from being reflected back.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import NoReturn

MAGIC = b"SHOAL"
VERSION = 1
NONCE_BYTES = 32
PROOF_BYTES = 32
MAX_REASON_BYTES = 255
# No handshake record is longer than this: a transport never buffers more before ``done``.
HANDSHAKE_CAP = 512

_HELLO = 0x01
_PROOF = 0x02
_REFUSE = 0x03
_HELLO_LEN = 1 + len(MAGIC) + 2 + NONCE_BYTES  # type, magic, version, mode, nonce
_PROOF_LEN = 1 + PROOF_BYTES

# What a user without the token is told; the transport adds the address.
MISSING_TOKEN = (
    "this shoal cluster requires authentication and no token was given: pass "
    "scheduler_file= (Client) / --scheduler-file (shoal worker) with the file the scheduler "
    "wrote, or set the SHOAL_TOKEN environment variable (--token on the command line)"
)
WRONG_TOKEN = (
    "the peer could not prove it knows this cluster's token (wrong token?): check that "
    "SHOAL_TOKEN / --token / the scheduler file belong to this cluster"
)
PEER_WITHOUT_TOKEN = (
    "the peer does not use authentication but this process has a token: refusing to "
    "send it work (is the address right? unset SHOAL_TOKEN to talk to an open cluster)"
)


class HandshakeError(ConnectionError):
    """The handshake failed; the message is one line saying why and what to do.

    ``remote`` is True when the peer refused us, False when we refused the peer."""

    def __init__(self, reason: str, remote: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.remote = remote

    def __reduce__(self) -> tuple[type, tuple[str, bool]]:
        return type(self), (self.reason, self.remote)


def new_token() -> str:
    """A fresh random token for a cluster (256 bits, URL-safe text)."""
    return os.urandom(32).hex()


def _proof(key: bytes, label: bytes, nonce_i: bytes, nonce_a: bytes) -> bytes:
    return hmac.new(key, label + nonce_i + nonce_a, hashlib.sha256).digest()


def _refuse_record(reason: str) -> bytes:
    data = reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]
    return bytes([_REFUSE, len(data)]) + data


class Handshake:
    """One end of the handshake.

    Args:
        initiator: True for the end that opened the connection.
        token: the cluster's secret, or None for a cluster without authentication.
        nonce: this end's random challenge (tests pass a fixed one; default random).

    Use: send :meth:`start`'s bytes, then pass everything received to :meth:`receive` and
    send what it returns, until :attr:`done` (bytes after the handshake are in
    :attr:`trailing`) or until it raises :class:`HandshakeError` (send :attr:`outgoing`,
    a refusal for the peer, then close).
    """

    def __init__(self, initiator: bool, token: str | bytes | None, nonce: bytes | None = None) -> None:
        self.initiator = initiator
        self._key = token.encode() if isinstance(token, str) else token
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        if len(self._nonce) != NONCE_BYTES:
            raise ValueError(f"a handshake nonce is {NONCE_BYTES} bytes")
        self._peer_nonce = b""
        self._buf = bytearray()
        self.state = "start"  # start -> (initiator) hello-sent / (acceptor) wait-hello
        #                        -> wait-proof -> done | refused
        self.done = False
        self.trailing = b""
        self.outgoing = b""  # on failure: what to send the peer before closing

    @property
    def authenticated(self) -> bool:
        return self._key is not None

    def _hello(self) -> bytes:
        mode = 1 if self._key is not None else 0
        return bytes([_HELLO]) + MAGIC + bytes([VERSION, mode]) + self._nonce

    def start(self) -> bytes:
        """The bytes this end sends first (the initiator's hello; nothing for the acceptor)."""
        if self.state != "start":
            raise RuntimeError(f"handshake already started (state {self.state})")
        if self.initiator:
            self.state = "hello-sent"
            return self._hello()
        self.state = "wait-hello"
        return b""

    def wanted(self) -> int:
        """At most how many more bytes this end reads before it is done."""
        return max(HANDSHAKE_CAP - len(self._buf), 1)

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the peer; returns bytes to send it.

        Raises:
            HandshakeError: the peer was refused or refused us. ``outgoing`` holds the
                refusal to send the peer (empty when the peer refused us).
        """
        if self.done:
            self.trailing += bytes(data)
            return b""
        if self.state in ("start", "refused"):
            raise RuntimeError(f"handshake cannot receive in state {self.state}")
        view = memoryview(bytes(data))
        out = bytearray()
        while view and not self.done:
            room = HANDSHAKE_CAP - len(self._buf)  # never hold more than the cap
            self._buf += view[:room]
            view = view[room:]
            while not self.done and self._buf:
                record = self._next_record()
                if record is None:
                    if len(self._buf) >= HANDSHAKE_CAP:
                        self._fail("the peer sent more than a handshake holds", False)
                    break
                out += self._on_record(*record)
        if self.done:
            self.trailing, self._buf = bytes(self._buf) + bytes(view), bytearray()
        return bytes(out)

    # --- internals ------------------------------------------------------------------------

    def _fail(self, reason: str, remote: bool) -> NoReturn:
        self.state = "refused"
        self.outgoing = b"" if remote else _refuse_record(reason)
        raise HandshakeError(reason, remote)

    def _next_record(self) -> tuple[int, bytes] | None:
        """The next complete record (kind, body), or None if more bytes are needed."""
        buf = self._buf
        kind = buf[0]
        if kind == _HELLO:
            size = _HELLO_LEN
        elif kind == _PROOF:
            size = _PROOF_LEN
        elif kind == _REFUSE:
            if len(buf) < 2:
                return None
            size = 2 + buf[1]
        else:
            self._fail("the peer does not speak shoal's protocol (not a shoal process, or a "
                       "plain-TCP client talking to a TLS port or vice versa)", False)
        if len(buf) < size:
            return None
        body = bytes(buf[1:size])
        del buf[:size]
        return kind, body

    def _on_record(self, kind: int, body: bytes) -> bytes:
        if kind == _REFUSE:
            reason = body[1:].decode("utf-8", "replace") or "refused by the peer"
            self._fail(reason, True)
        if self.state in ("wait-hello", "hello-sent"):
            if kind != _HELLO:
                self._fail(f"the peer sent a handshake record of kind {kind} before its hello",
                           False)
            return self._on_hello(body)
        if self.state == "wait-proof":
            if kind != _PROOF:
                self._fail(f"the peer sent a handshake record of kind {kind} instead of its "
                           "proof", False)
            return self._on_proof(body)
        raise AssertionError(self.state)  # pragma: no cover

    def _on_hello(self, body: bytes) -> bytes:
        magic, version, mode = body[: len(MAGIC)], body[len(MAGIC)], body[len(MAGIC) + 1]
        if magic != MAGIC:
            self._fail("the peer does not speak shoal's protocol", False)
        if version != VERSION:
            self._fail(f"handshake version mismatch: the peer speaks {version}, this process "
                       f"{VERSION}; run the same shoal version everywhere", False)
        if mode not in (0, 1):
            self._fail(f"unknown handshake mode {mode}", False)
        self._peer_nonce = body[len(MAGIC) + 2 :]
        if self.initiator:
            return self._initiator_on_hello(mode)
        return self._acceptor_on_hello(mode)

    def _acceptor_on_hello(self, mode: int) -> bytes:
        if self._key is None:
            # No token here. An initiator with one refuses us when it reads our hello.
            self.done, self.state = True, "done"
            return self._hello()
        if mode == 0:
            self._fail(MISSING_TOKEN, False)
        self.state = "wait-proof"
        return self._hello() + bytes([_PROOF]) + _proof(
            self._key, b"acceptor", self._peer_nonce, self._nonce)

    def _initiator_on_hello(self, mode: int) -> bytes:
        if self._key is None:
            if mode == 1:  # pragma: no cover - an acceptor with a token refuses us instead
                self._fail(MISSING_TOKEN, False)
            self.done, self.state = True, "done"
            return b""
        if mode == 0:
            self._fail(PEER_WITHOUT_TOKEN, False)
        self.state = "wait-proof"
        return b""

    def _on_proof(self, body: bytes) -> bytes:
        assert self._key is not None
        if self.initiator:
            expected = _proof(self._key, b"acceptor", self._nonce, self._peer_nonce)
            if not hmac.compare_digest(body, expected):
                self._fail(WRONG_TOKEN, False)
            self.done, self.state = True, "done"
            return bytes([_PROOF]) + _proof(self._key, b"initiator", self._nonce,
                                            self._peer_nonce)
        expected = _proof(self._key, b"initiator", self._peer_nonce, self._nonce)
        if not hmac.compare_digest(body, expected):
            self._fail(WRONG_TOKEN, False)
        self.done, self.state = True, "done"
        return b""


