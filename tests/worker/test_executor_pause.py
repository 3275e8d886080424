"""A paused executor (its worker's memory passed the pause threshold) starts no new task
until resumed; closing it while paused ends its threads. Real threads and a real event loop,
no processes; every wait has a deadline."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.protocol._serialize import FunctionTable, dumps
from shoal.worker._events import Execute, ExecuteDone
from shoal.worker._execute import Executor
from shoal.worker._memory import MemoryLimits
from shoal.worker._spill import SpillBuffer

DEADLINE = 10.0


def _two(values: dict[Any, Any]) -> int:
    return 2


def _execute(key: str) -> Execute:
    return Execute(key, dumps(_two), (0,), False, ())


def test_a_paused_executor_starts_nothing_until_resumed() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        done: list[ExecuteDone] = []
        arrived = asyncio.Event()

        def on_done(batch: list[ExecuteDone]) -> None:
            done.extend(batch)
            arrived.set()

        ex = Executor(1, {}, FunctionTable(), loop, on_done, "tcp://me:1")
        try:
            ex.pause()
            assert ex.paused
            ex.submit(_execute("a"))
            await asyncio.sleep(0.2)  # time to start it, were it not paused
            while_paused = [d.key for d in done]
            ex.resume()
            await asyncio.wait_for(arrived.wait(), DEADLINE)
            return while_paused, [d.key for d in done]
        finally:
            ex.close()

    assert asyncio.run(scenario()) == ([], ["a"])


def test_closing_a_paused_executor_ends_its_threads() -> None:
    async def scenario() -> bool:
        ex = Executor(2, {}, FunctionTable(), asyncio.get_running_loop(), lambda b: None,
                      "tcp://me:1")
        ex.pause()
        ex.submit(_execute("a"))
        ex.submit(_execute("b"))
        await asyncio.sleep(0.05)
        ex.close()
        for t in ex._threads:
            t.join(DEADLINE)
        return any(t.is_alive() for t in ex._threads)

    assert asyncio.run(scenario()) is False


def test_results_go_through_the_stores_put_with_their_size(tmp_path: Any) -> None:
    store = SpillBuffer(str(tmp_path), MemoryLimits.from_fractions(10**9))

    async def scenario() -> None:
        arrived = asyncio.Event()
        ex = Executor(1, store, FunctionTable(), asyncio.get_running_loop(),
                      lambda b: arrived.set(), "tcp://me:1")
        try:
            ex.submit(_execute("a"))
            await asyncio.wait_for(arrived.wait(), DEADLINE)
        finally:
            ex.close()

    asyncio.run(scenario())
    assert store["a"] == 2 and store.policy.fast["a"] > 0
    store.close()
