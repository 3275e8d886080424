"""A finished task's report leaves for the scheduler in the step that takes the executor's
hand-back, not one event-loop iteration later (the executor batched it already)."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.protocol._call import Call
from shoal.protocol._messages import Compute, TaskDone
from shoal.protocol._serialize import FunctionCache, dumps_task

from ._shell import fresh_worker


def test_a_finished_task_is_reported_in_the_step_that_hands_it_back() -> None:
    async def scenario() -> None:
        worker, sched = fresh_worker()
        assert worker._executor is not None
        handed_back = asyncio.get_running_loop().create_future()
        on_done = worker._executor._on_done

        def watched(batch: list[Any]) -> None:
            on_done(batch)
            handed_back.set_result([type(m) for m in sched.written])  # before any next step

        worker._executor._on_done = watched
        functions = FunctionCache()
        payload, fids = dumps_task(Call(abs, (-3,), {}), functions)
        compute = Compute("t", payload, [], {f: functions.blob(f) for f in fids}, (0,), True, "abs", 1)
        try:
            worker._on_scheduler(sched, [compute])
            written = await asyncio.wait_for(handed_back, 10)
        finally:
            worker._executor.close()
        assert TaskDone in written

    asyncio.run(scenario())
