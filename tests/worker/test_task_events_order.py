"""Events a task logs (``shoal.print``, ``shoal.warn``, ``get_worker().log_event``) reach the
scheduler ahead of the task's result, so a client shows them before ``result()`` returns
(in Jupyter: in the cell that waits, not after it ended).

The executor asks the loop for one hand-back when a task starts; if the loop runs it only
after the task ended, that hand-back carries the result. Events the task logged meanwhile
must not be sent after it."""

from __future__ import annotations

import asyncio

from shoal import get_worker
from shoal.protocol._call import Call
from shoal.protocol._messages import Compute, TaskDone, TopicLog
from shoal.protocol._serialize import FunctionCache, dumps_task
from tests._waiting import wait_for

from ._shell import fresh_worker


def _log_twice() -> int:
    worker = get_worker()
    worker.log_event("first", {"n": 1})
    worker.log_event("second", {"n": 2})
    return 7


def _compute(key: str) -> Compute:
    functions = FunctionCache()
    payload, fids = dumps_task(Call(_log_twice, (), {}), functions)
    return Compute(key, payload, [], {f: functions.blob(f) for f in fids}, (0,), True, "log", 1)


def test_events_logged_by_a_task_are_sent_before_its_result_when_the_loop_wakes_late() -> None:
    async def scenario() -> list[object]:
        worker, sched = fresh_worker()
        executor = worker._executor
        assert executor is not None
        try:
            worker._on_scheduler(sched, [_compute("t")])
            # The loop thread stays busy until the task has ended, so the hand-back asked
            # for at its start runs after it (the order a loaded machine produces).
            wait_for(lambda: executor._done, timeout=10)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not any(isinstance(m, TaskDone) for m in sched.written):
                assert loop.time() < deadline, sched.written
                await asyncio.sleep(0.005)
            await asyncio.sleep(0)  # callbacks queued behind the hand-back, if any
            return list(sched.written)
        finally:
            executor.close()

    written = asyncio.run(scenario())
    order = [m.topics[0] if isinstance(m, TopicLog) else type(m).__name__
             for m in written if isinstance(m, (TopicLog, TaskDone))]
    assert order == ["first", "second", "TaskDone"], order
