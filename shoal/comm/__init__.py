"""Transports: TCP and in-process connections carrying batches of shoal messages."""

from shoal.comm._connection import Connection, ConnectionClosed, MessageHandler
from shoal.comm._inproc import inproc_pair
from shoal.comm._tcp import connect, listen, parse_address

__all__ = [
    "Connection",
    "ConnectionClosed",
    "MessageHandler",
    "connect",
    "inproc_pair",
    "listen",
    "parse_address",
]
