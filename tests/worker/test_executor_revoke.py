"""The executor skips queued tasks the scheduler freed (cancelled, or stolen by another
worker) instead of running them for nothing; a task wanted again before it is reached runs.

Real threads and a real event loop (the executor is I/O), no processes; every wait has a
deadline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from shoal.protocol._serialize import FunctionTable, dumps
from shoal.worker._events import Execute, ExecuteDone
from shoal.worker._execute import Executor

DEADLINE = 10.0
_gate = threading.Event()


def _wait_for_gate(values: dict[Any, Any]) -> int:
    if not _gate.wait(DEADLINE):
        raise TimeoutError("the test never opened the gate")
    return 0


def _two(values: dict[Any, Any]) -> int:
    return 2


def _execute(key: str, fn: Any, priority: Any) -> Execute:
    return Execute(key, dumps(fn), priority, False, ())


async def _scenario(revoke: list[str], unrevoke: list[str]) -> tuple[list[str], list[str]]:
    """One thread busy on a gated task while b and c wait in its queue; returns the keys
    run after the gate and those skipped."""
    _gate.clear()
    loop = asyncio.get_running_loop()
    done: list[ExecuteDone] = []
    skipped: list[str] = []
    settled = asyncio.Event()

    def on_done(batch: list[ExecuteDone]) -> None:
        done.extend(batch)
        settled.set()

    def on_skipped(cmds: list[Execute]) -> None:
        skipped.extend(c.key for c in cmds)
        settled.set()

    ex = Executor(1, {}, FunctionTable(), loop, on_done, "tcp://me:1", None, on_skipped)
    try:
        ex.submit(_execute("a", _wait_for_gate, (0,)))
        ex.submit(_execute("b", _two, (1,)))
        ex.submit(_execute("c", _two, (2,)))
        ex.revoke(revoke)
        for key in unrevoke:
            ex.unrevoke(key)
        _gate.set()

        async def all_handled() -> None:
            while len(done) + len(skipped) < 3:
                settled.clear()
                await settled.wait()

        await asyncio.wait_for(all_handled(), DEADLINE)
    finally:
        ex.close()
    assert all(d.error is None for d in done), done
    return [d.key for d in done if d.key != "a"], skipped


def test_freed_queued_task_is_skipped_not_run() -> None:
    ran, skipped = asyncio.run(_scenario(revoke=["b"], unrevoke=[]))
    assert ran == ["c"]
    assert skipped == ["b"]


def test_task_wanted_again_before_its_turn_runs() -> None:
    ran, skipped = asyncio.run(_scenario(revoke=["b", "c"], unrevoke=["c"]))
    assert ran == ["c"]
    assert skipped == ["b"]
