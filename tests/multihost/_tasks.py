"""Task functions for the multi-host tests: a module both the client (agent) and the
workers import by name (tests/multihost is on every process's PYTHONPATH)."""

from __future__ import annotations

import socket
import time


def payload(n: int) -> bytes:
    """Data made on one worker, to be fetched by another."""
    return bytes(range(256)) * (n // 256)


def where(x: object) -> str:
    """The namespace address of the worker that runs this (its eth0 address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.213.0.1", 9))
        return str(s.getsockname()[0])


def length(x: bytes) -> int:
    return len(x)


def slow_inc(x: int, seconds: float = 0.3) -> int:
    time.sleep(seconds)
    return x + 1
