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
from shoal.protocol._messages import Compute, RegisterReply, TasksStarted
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


def _accepted_registration(imported: bool) -> list[Any]:
    """What a worker with no hook (its imports done or under way) writes when the
    scheduler accepts it: a worker that reconnects in the same process, or runs in-process."""
    from shoal.worker import _execute

    async def scenario() -> list[Any]:
        worker, sched = fresh_worker()
        worker._registered = asyncio.get_running_loop().create_future()
        assert worker.on_registered is None and worker._executor is not None
        if not imported:
            _execute.imports_ready.clear()
        try:
            worker._on_scheduler(sched, [RegisterReply(True, "")])
            return list(sched.written)
        finally:
            _execute.imports_ready.set()  # before the loop's shutdown waits for its threads
            worker._executor.close()

    return asyncio.run(scenario())


def test_a_worker_whose_imports_are_done_says_it_is_ready_once_registered() -> None:
    """Its tasks may start at once: its death before their first report must blame them
    (the scheduler's fallback applies to a ready worker only)."""
    written = _accepted_registration(imported=True)
    assert [(type(m), list(m.keys)) for m in written] == [(TasksStarted, [])]


def test_a_worker_still_importing_leaves_the_ready_notice_to_its_import() -> None:
    assert _accepted_registration(imported=False) == []
