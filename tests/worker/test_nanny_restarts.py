"""The nanny's restart limit: it gives up on a worker that cannot start (dies before
registering, 10 times a minute), never on one that registered (dask's nanny always restarts;
a task that kills its workers ends as KilledWorker by the scheduler's allowed-failures)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from shoal.worker._nanny import MAX_RESTARTS_PER_MINUTE, Nanny


class _Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode = 1


def _supervised(registers: bool, stop_after: int) -> tuple[int, bool]:
    """Spawns made by the supervisor for a worker that always dies (exit status 1), and
    whether it gave up (returned) before ``stop_after`` spawns."""
    nanny = Nanny("tcp://127.0.0.1:1", name="n")
    pids = itertools.count(100)
    nanny.process = _Proc(next(pids))  # type: ignore[assignment]
    spawns = 0

    async def watch(proc: Any) -> int:
        return 1

    async def nothing(*args: Any) -> None:
        return None

    async def registered() -> str | None:
        return "tcp://127.0.0.1:2" if registers else None

    async def not_retired(address: str, pid: int) -> bool:
        return False

    async def spawn() -> None:
        nonlocal spawns
        spawns += 1
        nanny.process = _Proc(next(pids))  # type: ignore[assignment]
        if spawns >= stop_after:
            nanny._closing = True

    nanny._watch = watch  # type: ignore[method-assign]
    nanny._remove_worker_space = nothing  # type: ignore[method-assign]
    nanny._registered_address = registered  # type: ignore[method-assign]
    nanny._was_retired = not_retired  # type: ignore[method-assign]
    nanny._spawn = spawn  # type: ignore[method-assign]
    nanny._declared_exit = lambda pid: b""  # type: ignore[method-assign]
    asyncio.run(asyncio.wait_for(nanny._supervise(), 10))
    return spawns, spawns < stop_after


def test_a_worker_dying_before_it_registers_is_given_up_after_ten_a_minute() -> None:
    spawns, gave_up = _supervised(registers=False, stop_after=100)
    assert gave_up and spawns == MAX_RESTARTS_PER_MINUTE


def test_a_worker_dying_after_it_registered_is_always_restarted() -> None:
    spawns, gave_up = _supervised(registers=True, stop_after=3 * MAX_RESTARTS_PER_MINUTE)
    assert not gave_up and spawns == 3 * MAX_RESTARTS_PER_MINUTE

