"""Back-pressure: every task waiting for a paused connection to drain is woken when it
resumes (two replies sent in pieces on one connection used to leave one waiter hanging
until its deadline, which stalled a task-based shuffle for 30 s)."""

from __future__ import annotations

import asyncio

from shoal.comm._tcp import TCPConnection


def test_every_drain_waiter_wakes_when_writing_resumes() -> None:
    async def main() -> None:
        conn = TCPConnection()
        conn.pause_writing()
        first = asyncio.ensure_future(conn.drain())
        second = asyncio.ensure_future(conn.drain())
        cancelled = asyncio.ensure_future(conn.drain())
        await asyncio.sleep(0)
        cancelled.cancel()  # one waiter giving up must not end the others' wait
        await asyncio.sleep(0)
        conn.resume_writing()
        await asyncio.wait_for(asyncio.gather(first, second), 5)

    asyncio.run(main())
