"""Issue 9, items 6 and 16: workers stay until told to go, and never outlive their nanny.

- A worker whose scheduler connection drops reconnects (as a fresh worker) instead of exiting.
- Liveness uses a monotonic clock: a wall-clock jump (suspended laptop, paused VM, NTP step)
  evicts nobody.
- A second ``Register`` for an address that is still connected is refused.
- SIGKILL of the process that supervises workers (the ``shoal worker`` command, or a user's
  program running a LocalCluster) takes its worker processes with it.
- A ``client.run`` function that never returns does not keep a worker from exiting.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal import Client
from shoal.comm import connect
from shoal.comm._connection import Connection
from shoal.protocol._messages import PROTOCOL_VERSION, Hello, Message, Register
from shoal.scheduler._server import Scheduler

from ._helpers import alive, process_tree, wait_for

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("shoal"))


def _inbox(conn: Connection) -> list[list[Message] | None]:
    got: list[list[Message] | None] = []
    conn.set_handler(lambda _conn, batch: got.append(batch))
    return got


async def _register(scheduler: Scheduler, address: str) -> tuple[Connection, list[Any]]:
    conn = await connect(scheduler.address)
    inbox = _inbox(conn)
    conn.send(Hello("worker", PROTOCOL_VERSION, address))
    conn.send(Register(address, address, 1, 0, os.getpid(), "127.0.0.1"))
    return conn, inbox


async def _until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.01)


# --- scheduler side: clocks and registration ------------------------------------------------


def test_a_wall_clock_jump_does_not_evict_workers(monkeypatch):
    async def main() -> None:
        scheduler = Scheduler(worker_ttl=60)
        await scheduler.start()
        try:
            conn, _ = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: "tcp://127.0.0.1:1" in scheduler.state.workers)
            wall = time.time
            monkeypatch.setattr(time, "time", lambda: wall() + 3600)  # the laptop slept an hour
            ticks = len(scheduler._tps)
            await _until(lambda: len(scheduler._tps) >= ticks + 2)  # two liveness checks ran
            assert "tcp://127.0.0.1:1" in scheduler.state.workers
            conn.close()
        finally:
            await scheduler.close()

    asyncio.run(main())


def test_a_worker_shown_to_users_was_last_seen_on_the_wall_clock():
    async def main() -> None:
        scheduler = Scheduler()
        await scheduler.start()
        try:
            conn, _ = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: "tcp://127.0.0.1:1" in scheduler.state.workers)
            from shoal.scheduler._views import worker_info

            [info] = worker_info(scheduler)
            assert abs(info["last_seen"] - time.time()) < 30
            conn.close()
        finally:
            await scheduler.close()

    asyncio.run(main())


def test_a_second_register_for_a_connected_address_is_refused_with_a_reason():
    from shoal.protocol._messages import RegisterReply

    async def main() -> None:
        scheduler = Scheduler()
        await scheduler.start()
        try:
            first, first_inbox = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: "tcp://127.0.0.1:1" in scheduler.state.workers)
            second, second_inbox = await _register(scheduler, "tcp://127.0.0.1:1")
            await _until(lambda: None in second_inbox)  # the scheduler closed it
            replies = [m for b in second_inbox if b for m in b if isinstance(m, RegisterReply)]
            assert [r.accepted for r in replies] == [False]
            assert "already connected" in replies[0].reason
            assert [m for b in first_inbox if b for m in b] == [RegisterReply(True, "")]
            assert not first.closed
            assert scheduler._workers["tcp://127.0.0.1:1"] is not None
            assert None not in first_inbox
            # The refused connection's close does not remove the registered worker.
            assert "tcp://127.0.0.1:1" in scheduler.state.workers
            first.close()
        finally:
            await scheduler.close()

    asyncio.run(main())
