"""The worker's per-task paths taken in bulk do what their one-at-a-time forms do: tasks
queued together run in priority order, a ``Drop`` of many keys from the spilling store
deletes what ``del`` of each would (held in memory or on disk; keys not held are
skipped), and the memory policy's object-free entry points book exactly as ``handle``."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np

from shoal.protocol._serialize import FunctionTable, dumps
from shoal.worker._events import Execute, ExecuteDone
from shoal.worker._execute import Executor, _TaskQueue
from shoal.worker._memory import MemoryLimits, MemoryPolicy, ValueRemoved, ValueStored
from shoal.worker._spill import SpillBuffer

DEADLINE = 10.0
MB = 1_000_000
_gate = threading.Event()
_entered = threading.Event()


def _waits(values: dict[Any, Any]) -> int:
    _entered.set()
    if not _gate.wait(DEADLINE):
        raise TimeoutError("the test never opened the gate")
    return 0


def _one(values: dict[Any, Any]) -> int:
    return 1


def test_entries_put_together_come_out_smallest_first_with_one_token_each() -> None:
    q = _TaskQueue()
    entries = [((1, (i % 3, -i)), i, f"k{i}") for i in range(30)]
    q.put_many(entries)
    q.put(((0,), 99, "first"))
    assert q.get() == ((0,), 99, "first")
    assert [q.get() for _ in entries] == sorted(entries)
    assert q._tokens.empty()  # no token without its entry


def test_tasks_submitted_together_run_in_priority_order() -> None:
    async def main() -> list[str]:
        done: list[ExecuteDone] = []
        arrived = asyncio.Event()

        def on_done(batch: list[ExecuteDone]) -> None:
            done.extend(batch)
            arrived.set()

        executor = Executor(1, {}, FunctionTable(), asyncio.get_running_loop(), on_done,
                            "tcp://me:1")
        _gate.clear()
        try:
            # The one thread is held while the rest are queued: they run by priority.
            executor.submit(Execute("hold", dumps(_waits), (0,), False, ()))
            executor.submit_many([Execute(f"t{p}", dumps(_one), (1, p), False, ())
                                  for p in (3, 1, 2, 0)])
            _gate.set()

            async def all_done() -> None:
                while len(done) < 5:
                    arrived.clear()
                    await arrived.wait()

            await asyncio.wait_for(all_done(), DEADLINE)
        finally:
            _gate.set()
            executor.close()
        return [d.key for d in done]

    assert asyncio.run(main()) == ["hold", "t0", "t1", "t2", "t3"]


def test_a_result_is_handed_back_before_a_pause_holds_the_task_queued_after_it() -> None:
    """A thread hands its finished task back together with the next queued task's start;
    when the executor is paused then, the result still goes back at once."""

    async def main() -> tuple[list[str], list[str]]:
        done: list[ExecuteDone] = []
        arrived = asyncio.Event()

        def on_done(batch: list[ExecuteDone]) -> None:
            done.extend(batch)
            arrived.set()

        async def until(n: int) -> None:
            while len(done) < n:
                arrived.clear()
                await arrived.wait()

        executor = Executor(1, {}, FunctionTable(), asyncio.get_running_loop(), on_done,
                            "tcp://me:1")
        _gate.clear()
        _entered.clear()
        try:
            executor.submit(Execute("running", dumps(_waits), (0,), False, ()))
            executor.submit(Execute("queued", dumps(_one), (1,), False, ()))
            assert await asyncio.to_thread(_entered.wait, DEADLINE)
            executor.pause()  # while "running" runs, with "queued" queued after it
            _gate.set()
            await asyncio.wait_for(until(1), DEADLINE)
            while_paused = [d.key for d in done]
            executor.resume()
            await asyncio.wait_for(until(2), DEADLINE)
        finally:
            _gate.set()
            executor.close()
        return while_paused, [d.key for d in done]

    assert asyncio.run(main()) == (["running"], ["running", "queued"])


def test_dropping_many_keys_deletes_those_held_in_memory_or_on_disk(buf: SpillBuffer) -> None:
    for i in range(4):
        buf[i] = np.full(2 * MB // 8, i, dtype="f8")
    buf["small"] = 1
    assert buf.on_disk(0)
    spill_dir = buf._dir
    assert spill_dir is not None
    files_before = len(list(Path(spill_dir).iterdir()))
    assert files_before >= 1
    buf.drop([0, 3, "small", "never-held"])
    assert sorted(buf, key=str) == [1, 2]
    assert not buf.on_disk(0)
    assert len(list(Path(spill_dir).iterdir())) == files_before - 1  # 0's file is gone
    assert buf.policy.fast.keys() | buf.policy.slow.keys() == {1, 2}


def test_object_free_policy_entry_points_book_as_handle_does() -> None:
    limits = MemoryLimits.from_fractions(10 * MB)  # target 6 MB
    by_event, direct = MemoryPolicy(limits), MemoryPolicy(limits)
    sizes = [("a", 2 * MB), ("b", 3 * MB), ("c", 2 * MB), ("a", 1 * MB), ("d", 7 * MB)]
    for key, nbytes in sizes:  # past the target: spills; a key stored again; too big
        assert direct.stored(key, nbytes) == by_event.handle(ValueStored(key, nbytes))
    for key in ("b", "d", "missing"):
        direct.removed(key)
        by_event.handle(ValueRemoved(key))
    for p in (by_event, direct):
        p.validate()
    assert (direct.fast, direct.slow, direct.fast_bytes, direct.slow_bytes) == (
        by_event.fast, by_event.slow, by_event.fast_bytes, by_event.slow_bytes)
    assert direct.stored("e", 1) == []  # nothing to do: no command
