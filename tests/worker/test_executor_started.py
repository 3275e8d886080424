"""The executor reports a task's start only when its result has not said it already, and
handing back a batch costs what changed, not a scan of every started task.

Real threads; the event loop is left still while the tasks run, so that one hand-back
(``_drain``, run when the loop turns) meets many results at once; every wait has a deadline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from _waiting import wait_for

from shoal.protocol._serialize import FunctionTable, dumps
from shoal.worker._events import Execute, ExecuteDone
from shoal.worker._execute import Executor

DEADLINE = 10.0
N = 200
_gate = threading.Event()
_gated_started = threading.Event()


class CountedKey(str):
    """A key that counts how often it is hashed (a set or dict lookup of it)."""

    hashes = 0

    def __hash__(self) -> int:
        CountedKey.hashes += 1
        return str.__hash__(self)


def _gated(values: dict[Any, Any]) -> int:
    _gated_started.set()
    if not _gate.wait(DEADLINE):
        raise TimeoutError("the test never opened the gate")
    return 0


def _one(values: dict[Any, Any]) -> int:
    return 1


def test_a_hand_back_reports_only_starts_without_results_and_examines_no_other_key() -> None:
    _gate.clear()
    _gated_started.clear()
    loop = asyncio.new_event_loop()
    done: list[ExecuteDone] = []
    started: list[Any] = []
    ex = Executor(1, {}, FunctionTable(), loop, done.extend, "tcp://me:1", started.extend)
    try:
        quick = [CountedKey(f"quick-{i}") for i in range(N)]
        for i, key in enumerate(quick):
            ex.submit(Execute(key, dumps(_one), (i,), False, ()))
        ex.submit(Execute(CountedKey("gated"), dumps(_gated), (N,), False, ()))
        assert _gated_started.wait(DEADLINE)
        wait_for(lambda: ex.executing == 1, timeout=DEADLINE)  # the quick ones all done
        CountedKey.hashes = 0
        loop.run_until_complete(asyncio.sleep(0))  # the loop turns: the hand-back runs
        examined = CountedKey.hashes
        assert sorted(d.key for d in done) == sorted(quick)
        # The quick tasks' results say they started; only the gated task's start is news.
        assert started == ["gated"]
        # Nothing was looked up per task already handed back (was: a set of the N results
        # built and each started key looked up in it, 2N + 1 hashes).
        assert examined == 0, examined
    finally:
        _gate.set()
        ex.close()
        wait_for(lambda: ex.executing == 0, timeout=DEADLINE)
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_a_task_waiting_for_the_workers_background_import_is_not_reported_started() -> None:
    # A worker killed while it imports dask must not have its waiting tasks blamed.
    from shoal.worker._execute import imports_ready

    loop = asyncio.new_event_loop()
    done: list[ExecuteDone] = []
    started: list[Any] = []
    ex = Executor(1, {}, FunctionTable(), loop, done.extend, "tcp://me:1", started.extend)
    imports_ready.clear()
    try:
        ex.submit(Execute("waits", dumps(_one), (0,), False, ()))
        wait_for(lambda: not ex._queue._heap, timeout=DEADLINE)  # a thread took it
        loop.run_until_complete(asyncio.sleep(0.05))  # any hand-back it asked for runs
        assert started == [] and done == [] and ex.executing == 0
        imports_ready.set()
        wait_for(lambda: ex.executing == 0 and not ex._queue._heap and
                 (loop.run_until_complete(asyncio.sleep(0)) or done), timeout=DEADLINE)
        assert [d.key for d in done] == ["waits"]
    finally:
        imports_ready.set()
        ex.close()
        loop.close()
