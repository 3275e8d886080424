"""The two faces of one client operation: ``_loop.run_sync`` blocks a user thread,
``_loop.run_async`` hands an awaitable to the caller's own loop (never blocking it)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from _waiting import wait_for

from shoal import _loop


async def _on_shoal_loop() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


def test_run_sync_runs_on_the_shared_loop_thread() -> None:
    assert _loop.run_sync(_on_shoal_loop(), 5) == "shoal-loop"


def test_run_async_is_awaitable_from_another_loop_without_blocking_it() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return threading.current_thread().name

    async def main() -> str:
        t = asyncio.get_running_loop().create_task(ticker())
        name = await _loop.run_async(slow(), 5)
        t.cancel()
        return name

    assert asyncio.run(main()) == "shoal-loop"
    assert ticks > 1  # the caller's loop kept running while it waited


def test_run_async_timeout_raises_timeout_error() -> None:
    async def main() -> None:
        await _loop.run_async(asyncio.sleep(10), 0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(main())


def test_run_async_outside_a_running_loop_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="outside a running event loop"):
        _loop.run_async(_on_shoal_loop())


def test_run_sync_keeps_the_operations_own_timeout_error() -> None:
    async def gives_up() -> None:
        raise TimeoutError("waited for the lock 'x' for 1 s; release it or wait longer")

    with pytest.raises(TimeoutError, match="waited for the lock 'x'"):
        _loop.run_sync(gives_up())
    with pytest.raises(TimeoutError, match="waited for the lock 'x'"):
        _loop.run_sync(gives_up(), 5)


class _InterruptedAfter:
    """A thread's end-of-life lock whose ``acquire`` answers, then is interrupted: what a
    Ctrl-C due at the end of that call does (CPython checks for signals there)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def acquire(self, *args: Any) -> bool:
        self.real.acquire(*args)
        raise KeyboardInterrupt

    def locked(self) -> bool:
        return bool(self.real.locked())

    def release(self) -> None:
        self.real.release()


def test_a_ctrl_c_as_the_loop_is_looked_up_does_not_start_a_second_loop(monkeypatch) -> None:
    # Python 3.11's Thread.is_alive(), interrupted so, releases the live thread's lock and
    # marks it ended: the next lookup started a second loop, and the client's messages went
    # to it, away from its connection (a fresh loop here, not the shared one of the session).
    monkeypatch.setattr(_loop, "_loop", None)
    monkeypatch.setattr(_loop, "_thread", None)
    first = _loop.get_loop()
    thread = _loop._thread
    assert thread is not None
    try:
        monkeypatch.setattr(thread, "_tstate_lock", _InterruptedAfter(thread._tstate_lock))
        with contextlib.suppress(KeyboardInterrupt):  # (where is_alive() took it)
            _loop.get_loop()
        assert _loop.get_loop() is first
    finally:
        for loop in {first, _loop._loop}:
            if loop is not None:
                loop.call_soon_threadsafe(loop.stop)
                wait_for(lambda loop=loop: not loop.is_running(), timeout=10)
