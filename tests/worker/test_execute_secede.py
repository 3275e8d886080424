"""The executor's secede / rejoin, with real threads but no processes or sockets: a seceded
task frees its slot for the next task, and a rejoining one waits for a slot."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.protocol._call import Call
from shoal.protocol._serialize import FunctionCache, FunctionTable, dumps_task
from shoal.worker._context import rejoin, secede
from shoal.worker._events import Execute, ExecuteDone
from shoal.worker._execute import Executor

TIMEOUT = 30


# Events the task functions wait on, by name: tasks travel pickled, and a
# threading.Event does not pickle, so they look them up here (same process).
EVENTS: dict[str, threading.Event] = {}


def event(name: str) -> threading.Event:
    return EVENTS.setdefault(name, threading.Event())


class Harness:
    """An executor on a loop running in a helper thread; records what it reports."""

    def __init__(self, nthreads: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.done: list[ExecuteDone] = []
        self.seceded: list[Any] = []
        self.cache = FunctionCache()
        self.functions = FunctionTable()
        self.executor = Executor(nthreads, {}, self.functions, self.loop, self.done.extend, "w")
        self.executor.on_secede = lambda key, duration: self.seceded.append(key)

    def run(self, key: str, func: Any, *args: Any, priority: Any = (0,)) -> None:
        payload, _ = dumps_task(Call(func, args, {}), self.cache)
        self.functions.add_blobs(self.cache.blobs)
        self.executor.submit(Execute(key, payload, priority, False, ()))

    def wait_done(self, *keys: str) -> None:
        for _ in range(TIMEOUT * 100):
            if set(keys) <= {d.key for d in self.done}:
                assert all(d.error is None for d in self.done), self.done
                return
            event("never").wait(0.01)
        raise AssertionError(f"{keys} not done; done: {[d.key for d in self.done]}")

    def close(self) -> None:
        self.executor.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)


@pytest.fixture
def harness() -> Iterator[Harness]:
    EVENTS.clear()
    h = Harness(nthreads=1)
    yield h
    for ev in EVENTS.values():
        ev.set()
    h.close()


def waits() -> str:
    secede()
    assert event("go").wait(TIMEOUT)
    return "waited"


def sets_go() -> None:
    event("go").set()


def test_seceded_task_lets_the_next_task_run_on_a_one_thread_pool(harness: Harness) -> None:
    harness.run("waits", waits)
    harness.run("quick", sets_go)
    harness.wait_done("waits", "quick")
    assert harness.seceded == ["waits"]


def seceded_until_go() -> None:
    secede()
    event("seceded").set()
    assert event("go").wait(TIMEOUT)


def test_a_seceded_task_is_counted_as_running_until_it_ends(harness: Harness) -> None:
    # What a worker's SIGTERM handler reads: a task out of the pool still runs there.
    harness.run("seceded", seceded_until_go)
    assert event("seceded").wait(TIMEOUT)
    assert (harness.executor.executing, harness.executor.seceded) == (0, 1)
    event("go").set()
    harness.wait_done("seceded")
    assert harness.executor.seceded == 0


def blocker() -> None:
    event("running").set()
    assert event("release").wait(TIMEOUT)


def rejoiner() -> None:
    secede()
    assert event("running").wait(TIMEOUT)
    rejoin()
    event("rejoined").set()


def test_rejoin_waits_until_a_running_task_finishes(harness: Harness) -> None:
    harness.run("rejoiner", rejoiner)
    harness.run("blocker", blocker)
    assert event("running").wait(TIMEOUT)
    # The only slot is the blocker's: rejoin cannot return before it ends.
    assert not event("rejoined").wait(0.2)
    event("release").set()
    assert event("rejoined").wait(TIMEOUT)
    harness.wait_done("rejoiner", "blocker")


def round_trip() -> None:
    secede()
    rejoin()


def task_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("shoal-task-")]


def test_pool_keeps_its_size_after_secede_and_rejoin(harness: Harness) -> None:
    for i in range(20):
        harness.run(f"rt-{i}", round_trip)
    harness.wait_done(*(f"rt-{i}" for i in range(20)))
    # Seceded threads either took a slot back (and its former thread ended) or ended.
    for _ in range(TIMEOUT * 100):
        if len(task_threads()) <= 1:
            break
        event("never").wait(0.01)
    assert len(task_threads()) == 1, task_threads()
    assert harness.executor.executing == 0


def late() -> None:
    secede()
    event("started").set()
    assert event("proceed").wait(TIMEOUT)
    rejoin()
    event("finished").set()


def test_rejoin_after_close_returns(harness: Harness) -> None:
    harness.run("late", late)
    assert event("started").wait(TIMEOUT)
    harness.executor.close()
    event("proceed").set()
    assert event("finished").wait(TIMEOUT)


def test_close_with_tasks_still_queued_does_not_raise(harness: Harness) -> None:
    # Task priorities are tuples; the stop marker used to be a bare float, and put()
    # raised TypeError comparing them while tasks were queued.
    harness.run("blocker", blocker)
    assert event("running").wait(TIMEOUT)
    for i in range(3):
        harness.run(f"queued-{i}", sets_go, priority=(0, i, 0))
    harness.executor.close()
    event("release").set()
    harness.wait_done("blocker")
