"""A worker process imports dask in the background once registered (``shoal.worker.__main__``),
and every unpickle waits for that import (``_execute.imports_ready``). The scheduler's answer
to the registration can arrive in one batch with the worker's first tasks: the import must be
under way before the first of them reaches the executor, or the task thread unpickles and runs
it beside the background import, and two threads importing dask at once can hand one a
half-initialized ``dask._task_spec`` (a correct task failed with ImportError under load)."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.protocol._call import Call
from shoal.protocol._messages import Compute, RegisterReply
from shoal.protocol._serialize import FunctionCache, dumps_task

from ._shell import fresh_worker


def _compute(key: str) -> Compute:
    functions = FunctionCache()
    payload, fids = dumps_task(Call(abs, (-3,), {}), functions)
    return Compute(key, payload, [], {f: functions.blob(f) for f in fids}, (0,), True, "abs", 1)


def test_the_registered_hook_runs_before_the_batch_s_tasks_reach_the_executor() -> None:
    seen: list[Any] = []

    async def scenario() -> None:
        worker, sched = fresh_worker()
        worker._registered = asyncio.get_running_loop().create_future()
        assert worker.state is not None and worker._executor is not None
        state = worker.state
        worker.on_registered = lambda: seen.append(sorted(state.tasks))
        try:
            worker._on_scheduler(sched, [RegisterReply(True, ""), _compute("t")])
            assert worker._registered.result() is None
            assert "t" in state.tasks  # the batch's task was taken, after the hook
        finally:
            worker._executor.close()

    asyncio.run(scenario())
    assert seen == [[]]


def test_a_refused_registration_does_not_run_the_hook() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        worker, sched = fresh_worker()
        worker._registered = asyncio.get_running_loop().create_future()
        worker.on_registered = lambda: seen.append("ran")
        assert worker._executor is not None
        try:
            worker._on_scheduler(sched, [RegisterReply(False, "address taken")])
            assert worker._registered.result() == "address taken"
        finally:
            worker._executor.close()

    asyncio.run(scenario())
    assert seen == []
