"""A worker shell with no sockets, for tests that feed its scheduler connection by hand:
what it writes to the scheduler is recorded."""

from __future__ import annotations

import asyncio

from shoal.comm import Connection
from shoal.protocol._messages import Message
from shoal.worker._server import Worker


class Recorder(Connection):
    """A scheduler connection that keeps what the worker writes."""

    def __init__(self) -> None:
        super().__init__()
        self.peer = "tcp://scheduler:1"
        self.written: list[Message] = []

    def _write_batch(self, batch: list[Message]) -> None:
        self.written.extend(batch)

    def _close(self) -> None:
        pass


def fresh_worker() -> tuple[Worker, Recorder]:
    """A worker in a fresh session (call on a running loop), its scheduler a Recorder."""
    worker = Worker("tcp://127.0.0.1:1")
    worker.address = "tcp://127.0.0.1:2"
    worker._new_session(asyncio.get_running_loop())
    sched = Recorder()
    worker._scheduler = sched
    return worker, sched
