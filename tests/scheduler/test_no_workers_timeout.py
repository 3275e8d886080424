"""dask's ``distributed.scheduler.no-workers-timeout``: tasks no worker can run fail after
waiting that long, timed by the Ticks the shell sends (``_no_workers``)."""

from __future__ import annotations

import pickle

import pytest

from shoal.protocol._errors import error_to_exception
from shoal.scheduler import NoValidWorkerError, NoWorkerError
from shoal.scheduler._events import LogEvent, ReportErred, Tick, WorkerPaused
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row

GPU = {"a": ({"GPU": 1.0}, False)}


@pytest.fixture
def sim() -> Sim:
    st = SchedulerState(no_workers_timeout=1.0)
    yield Sim(st)
    st.validate()


def tick(sim: Sim, now: float) -> list:
    return sim.state.handle(Tick(now))


def erred(out: list) -> dict:
    return {c.key: error_to_exception(c.error) for c in of(out, ReportErred)}


def test_by_default_a_task_no_worker_can_run_waits_forever() -> None:
    sim = Sim(SchedulerState())
    sim.join("w1")
    sim.submit([row("a")], restrictions=GPU)
    sim.submit([row("q")])
    sim.leave("w1")
    for now in (1.0, 100.0, 10_000.0):
        assert of(tick(sim, now), ReportErred) == []
    assert sim.states("a", "q") == ["no-worker", "queued"]
    sim.state.validate()


def test_a_restricted_task_fails_once_it_waited_longer_than_the_timeout(sim: Sim) -> None:
    sim.join("w1")  # no GPU
    sim.submit([row("a")], restrictions=GPU)
    assert of(tick(sim, 1.0), ReportErred) == []  # first seen waiting: timed from here
    assert of(tick(sim, 2.0), ReportErred) == []  # exactly the timeout: not longer
    out = tick(sim, 2.5)
    exc = erred(out)["a"]
    assert isinstance(exc, NoValidWorkerError)
    assert (exc.task, exc.resource_restrictions, exc.timeout) == ("a", {"GPU": 1.0}, 1.0)
    assert "no-workers-timeout" in str(exc) and "resources" in str(exc)
    assert sim.states("a") == ["erred"]
    logs = [c.msg for c in of(out, LogEvent) if c.topics == ["scheduler"]]
    assert logs == [{"action": "no-workers-timeout-exceeded", "keys": ["a"]}]
    pickle.loads(pickle.dumps(exc))  # crosses processes as dask's does


def test_the_failure_reaches_the_dependents(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], restrictions=GPU)
    tick(sim, 1.0)
    out = tick(sim, 2.5)
    errors = erred(out)
    assert set(errors) == {"a", "b"}
    assert isinstance(errors["b"], NoValidWorkerError) and errors["b"].task == "a"
    assert sim.states("a", "b") == ["erred", "erred"]


def test_a_worker_able_to_run_it_joining_in_time_runs_it(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")], restrictions=GPU)
    tick(sim, 1.0)
    out = sim.join("gpu", resources={"GPU": 1})
    assert computes(out) == [("gpu", "a")]
    assert of(tick(sim, 5.0), ReportErred) == []
    assert sim.states("a") == ["processing"]


def test_workers_unable_to_run_it_coming_and_going_do_not_restart_its_clock(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")], restrictions=GPU)
    tick(sim, 1.0)
    sim.join("w2")
    sim.leave("w2")
    sim.state.handle(WorkerPaused("w1", True))
    sim.state.handle(WorkerPaused("w1", False))
    assert isinstance(erred(tick(sim, 2.5))["a"], NoValidWorkerError)


def test_queued_tasks_fail_after_the_timeout_without_any_worker(sim: Sim) -> None:
    sim.submit([row("q1"), row("q2"), row("d", ["q1"])])
    assert sim.states("q1", "q2", "d") == ["queued", "queued", "waiting"]
    tick(sim, 1.0)
    assert of(tick(sim, 2.0), ReportErred) == []
    errors = erred(tick(sim, 2.5))
    assert set(errors) == {"q1", "q2", "d"}
    assert all(isinstance(e, NoWorkerError) for e in errors.values())
    assert "no running worker" in str(errors["q1"])
    # the next task waits its own timeout, not what is left of the last one's
    sim.submit([row("late")])
    assert of(tick(sim, 3.0), ReportErred) == []
    assert of(tick(sim, 3.9), ReportErred) == []
    assert set(erred(tick(sim, 4.1))) == {"late"}


def test_paused_workers_only_count_as_no_running_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.state.handle(WorkerPaused("w1", True))
    sim.submit([row("q")])
    tick(sim, 1.0)
    assert isinstance(erred(tick(sim, 2.5))["q"], NoWorkerError)


def test_a_worker_joining_in_time_saves_queued_tasks(sim: Sim) -> None:
    sim.submit([row("q")])
    tick(sim, 1.0)
    assert computes(sim.join("w1")) == [("w1", "q")]
    assert of(tick(sim, 2.5), ReportErred) == []


def test_restricted_task_fails_with_no_worker_error_when_the_cluster_had_none_all_along(
    sim: Sim,
) -> None:
    sim.submit([row("q")])
    tick(sim, 0.5)  # no running worker since 0.5
    sim.submit([row("a")], restrictions=GPU)
    tick(sim, 1.0)  # "a" first seen waiting
    errors = erred(tick(sim, 2.1))
    assert isinstance(errors["a"], NoWorkerError) and isinstance(errors["q"], NoWorkerError)


def test_a_released_task_leaves_the_no_worker_wait(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a")], restrictions=GPU)
    tick(sim, 1.0)
    sim.release("a")
    assert of(tick(sim, 5.0), ReportErred) == []


def test_the_timeout_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="no-workers-timeout"):
        SchedulerState(no_workers_timeout=-1.0)


def test_the_timeout_comes_from_dasks_config() -> None:
    import dask

    from shoal.scheduler._server import _no_workers_timeout

    assert _no_workers_timeout() is None  # dask's default: null, wait forever
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "30s"}):
        assert _no_workers_timeout() == 30.0
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "500ms"}):
        assert _no_workers_timeout() == 0.5


def test_random_lives_keep_the_invariants_and_never_fail_a_task_early() -> None:
    """Workers with and without the resource joining, leaving and pausing, tasks submitted,
    finished and released, Ticks at random times: the state stays valid, and no task that
    needs a resource fails for want of a worker before it waited longer than the timeout.
    (Unrestricted tasks queued with no running worker fail with the rest of the queue, as
    in dask: however recently each came.)"""
    import random

    for seed in range(60):
        rng = random.Random(seed)
        sim = Sim(SchedulerState(no_workers_timeout=1.0, worker_ttl=1e9))
        submitted: dict[str, float] = {}
        n = 0
        for _ in range(80):
            action = rng.choice(["join", "leave", "pause", "submit", "finish", "release",
                                 "tick", "tick"])
            workers = sorted(sim.state.workers)
            if action == "join":
                n += 1
                sim.join(f"w{n}", resources={"GPU": 1} if rng.random() < 0.3 else None)
            elif action == "leave" and workers:
                sim.leave(rng.choice(workers))
            elif action == "pause" and workers:
                sim.state.handle(WorkerPaused(rng.choice(workers), rng.random() < 0.6))
            elif action == "submit":
                n += 1
                a, b = f"a{n}", f"b{n}"
                if rng.random() < 0.5:
                    sim.submit([row(a), row(b, [a])], restrictions={a: ({"GPU": 1.0}, False)})
                    submitted[a] = sim.now
                else:
                    sim.submit([row(a), row(b, [a])])
            elif action == "finish":
                running = [k for k, t in sim.state.tasks.items() if t.state == "processing"]
                if running:
                    sim.finish(rng.choice(running))
            elif action == "release" and sim.state.tasks:
                sim.release(rng.choice(sorted(sim.state.tasks, key=str)))
            else:
                sim.now += rng.choice([0.3, 0.6, 1.1])
                for key, exc in erred(tick(sim, sim.now)).items():
                    if isinstance(exc, (NoValidWorkerError, NoWorkerError)) and (
                            exc.task in submitted):
                        assert sim.now - submitted[exc.task] > 1.0, (seed, key)
            sim.state.validate()
