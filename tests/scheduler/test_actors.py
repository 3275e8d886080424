"""Actors in the scheduler's task machine: an actor is a task whose result lives on one
worker and cannot be recomputed; losing that worker errs it (as dask.distributed does)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shoal.protocol._errors import error_to_exception
from shoal.scheduler._events import Command, GraphSubmitted, ReportErred, SendCompute
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row

WORKERS = ["w1", "w2", "w3"]


def submit_actor(sim: Sim, key: str, **kwargs: Any) -> list[Command]:
    return sim.state.handle(GraphSubmitted(sim.client, [row(key, **kwargs)], [key], [key]))


def test_an_actor_is_placed_and_held_like_a_task(sim: Sim) -> None:
    sim.join("w1")
    out = submit_actor(sim, "Counter-1")
    assert computes(out) == [("w1", "Counter-1")]
    sim.finish("Counter-1", typename="Actor")
    ts = sim.state.tasks["Counter-1"]
    assert ts.actor
    assert (ts.state, [w.address for w in ts.who_has]) == ("memory", ["w1"])


def test_actors_go_to_the_worker_holding_the_fewest_actors(sim: Sim) -> None:
    sim.join("w1", nthreads=4)
    sim.join("w2", nthreads=1)
    placed = {f"A-{i}": computes(submit_actor(sim, f"A-{i}"))[0][0] for i in range(6)}
    assert sorted(placed.values()) == ["w1"] * 3 + ["w2"] * 3
    for key in placed:
        sim.finish(key)
    # held actors count, and released ones no longer do: w2's go, so w2 gets the next
    sim.release(*(k for k, w in placed.items() if w == "w2"))
    assert computes(submit_actor(sim, "A-6")) == [("w2", "A-6")]


def test_actors_are_placed_at_once_even_on_a_busy_worker(sim: Sim) -> None:
    """Like dask, actors skip the queue: a worker busy with tasks still gets its share."""
    sim.join("w1")
    sim.submit([row(f"t-{i}") for i in range(3)])
    out = submit_actor(sim, "A-0")
    assert computes(out) == [("w1", "A-0")]


def test_an_actor_waits_for_an_allowed_worker(sim: Sim) -> None:
    sim.join("w1")
    out = submit_actor(sim, "A-0", workers=["w2"])
    assert computes(out) == []
    assert sim.states("A-0") == ["no-worker"]
    assert computes(sim.join("w2")) == [("w2", "A-0")]


def test_only_the_keys_named_as_actors_are_actors(sim: Sim) -> None:
    sim.join("w1")
    sim.state.handle(GraphSubmitted(sim.client, [row("a"), row("b")], ["a", "b"], ["b"]))
    assert (sim.state.tasks["a"].actor, sim.state.tasks["b"].actor) == (False, True)


def test_losing_the_actors_worker_errs_it_instead_of_recomputing(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    submit_actor(sim, "Counter-1", workers=["w1"])
    sim.finish("Counter-1")
    out = sim.leave("w1", reason="connection closed")
    assert computes(out) == []
    (report,) = of(out, ReportErred)
    assert report.key == "Counter-1"
    assert sim.states("Counter-1") == ["erred"]
    exc = error_to_exception(report.error)
    assert isinstance(exc, RuntimeError)
    assert "Worker holding Actor was lost" in str(exc)
    assert "'Counter-1'" in str(exc) and "w1" in str(exc) and "connection closed" in str(exc)


def test_an_ordinary_task_lost_the_same_way_is_recomputed(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("plain")])
    worker = sim.state.tasks["plain"].processing_on
    assert worker is not None
    sim.finish("plain")
    out = sim.leave(worker.address)
    assert of(out, ReportErred) == []
    assert len(of(out, SendCompute)) == 1


def test_tasks_using_a_lost_actor_err_with_it(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    submit_actor(sim, "Counter-1", workers=["w1"])
    sim.finish("Counter-1")
    sim.submit([row("use", ["Counter-1"], workers=["w2"])])
    assert sim.states("use") == ["processing"]
    out = sim.leave("w1")
    assert sorted(r.key for r in of(out, ReportErred)) == ["Counter-1", "use"]
    assert sim.states("Counter-1", "use") == ["erred", "erred"]


def test_an_actor_whose_creation_was_interrupted_is_started_again(sim: Sim) -> None:
    """Until the object exists there is no state to lose: the task is retried like any."""
    sim.join("w1")
    sim.join("w2")
    submit_actor(sim, "Counter-1")
    first = sim.state.tasks["Counter-1"].processing_on
    assert first is not None
    out = sim.leave(first.address)
    assert of(out, ReportErred) == []
    assert [k for _, k in computes(out)] == ["Counter-1"]


def test_an_unreachable_actor_errs_rather_than_starting_afresh(sim: Sim) -> None:
    """A peer that cannot fetch the actor's proxy from its holder reports it missing: with
    no other holder the actor is gone; recomputing would silently create a new one."""
    sim.join("w1")
    sim.join("w2")
    submit_actor(sim, "Counter-1", workers=["w1"])
    sim.finish("Counter-1")
    sim.submit([row("use", ["Counter-1"], workers=["w2"])])
    out = sim.missing("w2", "Counter-1", "w1", "use")
    assert computes(out) == []
    assert sorted(r.key for r in of(out, ReportErred)) == ["Counter-1", "use"]
    (report,) = [r for r in of(out, ReportErred) if r.key == "Counter-1"]
    assert "w1" in report.error["message"]


def test_a_released_actor_is_forgotten_and_freed_on_its_worker(sim: Sim) -> None:
    sim.join("w1")
    submit_actor(sim, "Counter-1")
    sim.finish("Counter-1")
    out = sim.release("Counter-1")
    assert "Counter-1" not in sim.state.tasks
    assert [(c.worker, c.keys) for c in out] == [("w1", ["Counter-1"])]


@pytest.mark.parametrize("seed", range(10))
def test_random_actor_lifetimes_keep_the_invariants(seed: int) -> None:
    """Actors and their users created, finished, released, and their workers lost in
    seeded random order: the invariants hold after every step, a held actor has one
    holder, and no actor whose holder was lost is ever computed again."""
    rng = random.Random(seed)
    state = SchedulerState()
    sim = Sim(state)
    lost_actors: set[str] = set()
    n = 0
    for _ in range(300):
        action = rng.choice(["join", "leave", "actor", "use", "finish", "release", "missing"])
        keys = list(state.tasks)
        if action == "join":
            out = sim.join(rng.choice(WORKERS))
        elif action == "leave" and state.workers:
            gone = rng.choice(sorted(state.workers))
            held = [t.key for t in state.tasks.values() if t.actor and t.state == "memory"
                    and {w.address for w in t.who_has} == {gone}]
            out = sim.leave(gone)
            lost_actors.update(held)
        elif action == "actor":
            n += 1
            out = submit_actor(sim, f"A-{n}")
        elif action == "use" and keys:
            n += 1
            out = sim.submit([row(f"use-{n}", [rng.choice(keys)])])
        elif action == "finish":
            busy = [k for k, t in state.tasks.items() if t.state == "processing"]
            out = sim.finish(rng.choice(busy)) if busy else []
        elif action == "release" and keys:
            out = sim.release(rng.choice(keys))
        elif action == "missing" and state.workers:
            held = [t for t in state.tasks.values() if t.state == "memory"]
            if not held:
                continue
            t = rng.choice(held)
            holder = next(iter(t.who_has)).address
            lost_actors.update([t.key] if t.actor else [])
            out = sim.missing(rng.choice(sorted(state.workers)), t.key, holder, "nobody")
        else:
            continue
        state.validate()
        assert not {k for _, k in computes(out)} & lost_actors
