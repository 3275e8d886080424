"""The executor: threads that run tasks and hand outcomes back to the event loop.

These run real threads and a real event loop (the executor is I/O, not logic), but no
processes or sockets; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest

from shoal.protocol._serialize import FunctionTable, dumps
from shoal.worker._events import Execute, ExecuteDone
from shoal.worker._execute import Executor

DEADLINE = 10.0
_started = threading.Event()
_release = threading.Event()


def _exits(values: dict[Any, Any]) -> Any:
    sys.exit(3)


def _interrupts(values: dict[Any, Any]) -> Any:
    raise KeyboardInterrupt


def _one(values: dict[Any, Any]) -> int:
    return 1


def _blocks(values: dict[Any, Any]) -> int:
    _started.set()
    if not _release.wait(DEADLINE):
        raise TimeoutError("the test never released this task")
    return 2


def execute(key: str, fn: Any, priority: Any = (0,)) -> Execute:
    return Execute(key, dumps(fn), priority, False, ())


class Harness:
    """An executor on the running loop, collecting the tasks it reports done."""

    def __init__(self, nthreads: int) -> None:
        self.done: list[ExecuteDone] = []
        self._arrived = asyncio.Event()
        self.executor = Executor(nthreads, {}, FunctionTable(), asyncio.get_running_loop(),
                                 self._on_done, "tcp://me:1")

    def _on_done(self, batch: list[ExecuteDone]) -> None:
        self.done.extend(batch)
        self._arrived.set()

    async def wait_done(self, n: int) -> dict[str, ExecuteDone]:
        async def enough() -> None:
            while len(self.done) < n:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), DEADLINE)
        return {d.key: d for d in self.done}


@pytest.mark.parametrize("fn, name", [(_exits, "SystemExit"), (_interrupts, "KeyboardInterrupt")])
def test_task_raising_system_exit_errs_and_keeps_its_thread(fn: Any, name: str) -> None:
    async def main() -> dict[str, ExecuteDone]:
        h = Harness(nthreads=1)
        try:
            h.executor.submit(execute("bad", fn))
            h.executor.submit(execute("good", _one))  # needs the one thread to survive
            return await h.wait_done(2)
        finally:
            h.executor.close()

    done = asyncio.run(main())
    error = done["bad"].error
    assert error is not None
    assert name in error["message"] and "bad" in error["message"]
    assert done["good"].error is None and done["good"].nbytes > 0


def test_task_raising_system_exit_ends_the_worker_when_it_is_to_end_on_it() -> None:
    # A worker process under a nanny, as dask's: the worker is told (on its loop), and the
    # task gets no outcome, so the scheduler sees its worker die running it.
    async def main() -> tuple[list[tuple[Any, str]], list[ExecuteDone]]:
        h = Harness(nthreads=1)
        told = asyncio.Event()
        exits: list[tuple[Any, str]] = []

        def on_task_exit(key: Any, exc: BaseException) -> None:
            exits.append((key, repr(exc)))
            told.set()

        h.executor.on_task_exit = on_task_exit
        try:
            h.executor.submit(execute("bad", _exits))
            await asyncio.wait_for(told.wait(), DEADLINE)
            return exits, list(h.done)
        finally:
            h.executor.close()

    exits, done = asyncio.run(main())
    assert exits == [("bad", "SystemExit(3)")]
    assert all(d.key != "bad" for d in done)


def test_close_with_tasks_queued_stops_the_threads() -> None:
    async def main() -> tuple[Executor, list[ExecuteDone]]:
        h = Harness(nthreads=1)
        _started.clear()
        _release.clear()
        h.executor.submit(execute("running", _blocks, (0,)))
        assert await asyncio.to_thread(_started.wait, DEADLINE)
        for i in range(5):
            h.executor.submit(execute(f"queued-{i}", _one, (1, i)))
        h.executor.close()  # raised TypeError: a float stop marker against tuple priorities
        _release.set()
        await h.wait_done(1)
        return h.executor, h.done

    executor, done = asyncio.run(main())
    for t in executor._threads:
        t.join(DEADLINE)
        assert not t.is_alive(), t
    # the task that was running finishes; the queued ones never start on a closed executor
    assert [d.key for d in done] == ["running"]


LOAD_SECONDS = 0.5


def _load_slowly() -> Any:
    time.sleep(LOAD_SECONDS)  # the task's function takes this long to load (an import)
    return _one


class _SlowToLoad:
    def __reduce__(self) -> Any:
        return (_load_slowly, ())


def test_a_tasks_duration_is_its_run_not_the_loading_of_its_function() -> None:
    # dask's compute start/stop wrap the call alone. The load counted here (imports of a
    # function's module on the worker's first task: 1.6 s in the 100k map) made the
    # scheduler expect every task of the prefix to take that long, and starve the worker.
    async def main() -> dict[str, ExecuteDone]:
        h = Harness(nthreads=1)
        try:
            h.executor.submit(execute("first", _SlowToLoad()))
            return await h.wait_done(1)
        finally:
            h.executor.close()

    done = asyncio.run(main())["first"]
    assert done.error is None
    assert done.stop - done.start < LOAD_SECONDS / 2, done.stop - done.start
