"""Every move in ``_TRANSITIONS`` is exercised by a scenario driven through events, and the
scenario table covers the transition table exactly (a new transition needs a new scenario)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shoal.scheduler._events import SendFree
from shoal.scheduler._state import _TRANSITIONS, SchedulerState

from ._sim import Sim, error_for, row

Scenario = Callable[[Sim], Any]  # drives the state; returns the key that made the move


def _submit_dependent(sim: Sim) -> Any:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    return "b"


def _missing_dependency(sim: Sim) -> Any:
    sim.submit([row("b", ["gone"])])
    return "b"


def _scatter(sim: Sim) -> Any:
    sim.join("w1")
    sim.scatter([("x", 1)])
    return "x"


def _scatter_over_computation(sim: Sim) -> Any:
    sim.join("w1")
    sim.submit([row("x")])
    sim.scatter([("x", 1)])
    return "x"


def _scatter_nobody_can_load(sim: Sim) -> Any:
    sim.join("w1")
    sim.scatter([("x", 1)], ack=False)
    sim.ack("w1", "x", error_for("x", ImportError("nope")))
    return "x"


def _queue(sim: Sim) -> Any:
    sim.submit([row("a")])
    return "a"


def _restricted(sim: Sim) -> Any:
    sim.join("w1")
    sim.submit([row("a", workers=["w9"])])
    return "a"


def _release_waiting(sim: Sim) -> Any:
    _submit_dependent(sim)
    sim.release("b")
    return "b"


def _input_fails(sim: Sim) -> Any:
    _submit_dependent(sim)
    sim.fail("a")
    return "b"


def _run(sim: Sim) -> Any:
    sim.join("w1")
    sim.submit([row("a")])
    return "a"


def _release_queued(sim: Sim) -> Any:
    sim.join("w1")
    sim.submit([row("a", priority=(0,)), row("b", priority=(1,))])
    sim.release("b")
    return "b"


def _lost_scattered_input(sim: Sim, *, b_workers: list[str] | None) -> None:
    """x (scattered, on w1) vanishes while ``a`` runs on w2 and ``b`` needs it too: the
    MissingData report makes x lost for good, and every task that needs it fails."""
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 1)], workers=["w1"])
    sim.submit([row("busy-1", workers=["w1"]), row("busy-2", workers=["w2"])])
    sim.submit([row("a", ["x"], workers=["w2"], priority=(0,)),
                row("b", ["x"], workers=b_workers, priority=(1,))])
    sim.finish("busy-2", duration=5.0)  # a starts on w2 and b stays where it is
    assert sim.states("a") == ["processing"]
    sim.missing("w2", "x", "w1", "a")
    assert sim.states("x", "a", "b") == ["erred", "erred", "erred"]


def _queued_input_lost(sim: Sim) -> Any:
    _lost_scattered_input(sim, b_workers=None)
    return "b"


def _no_worker_input_lost(sim: Sim) -> Any:
    _lost_scattered_input(sim, b_workers=["w9"])
    return "b"


def _processing_input_lost(sim: Sim) -> Any:
    sim.join("w3")
    _lost_scattered_input(sim, b_workers=["w3"])
    return "b"


def _worker_joins(sim: Sim) -> Any:
    _restricted(sim)
    sim.join("w9")
    return "a"


def _release_no_worker(sim: Sim) -> Any:
    _restricted(sim)
    sim.release("a")
    return "a"


def _finish(sim: Sim) -> Any:
    _run(sim)
    sim.finish("a")
    return "a"


def _cancel_processing(sim: Sim) -> Any:
    _run(sim)
    sim.cancel("a")
    return "a"


def _fail(sim: Sim) -> Any:
    _run(sim)
    sim.fail("a")
    return "a"


def _release_memory(sim: Sim) -> Any:
    _finish(sim)
    sim.release("a")
    return "a"


def _retry(sim: Sim) -> Any:
    _fail(sim)
    sim.retry("a")
    return "a"


def _steal(sim: Sim) -> Any:
    sim.join("w1")
    sim.scatter([("x", 10**6)], workers=["w1"])
    sim.submit([row(f"t-{i}", ["x"], priority=(i,)) for i in range(10)])
    sim.join("w2")  # idle: takes what w1 would run last
    return "t-9"


SCENARIOS: dict[tuple[str, str], Scenario] = {
    ("released", "waiting"): _submit_dependent,
    ("released", "erred"): _missing_dependency,
    ("released", "memory"): _scatter_over_computation,
    ("released", "scattering"): _scatter,
    ("scattering", "memory"): _scatter,
    ("scattering", "erred"): _scatter_nobody_can_load,
    ("waiting", "queued"): _queue,
    ("waiting", "no-worker"): _restricted,
    ("waiting", "released"): _release_waiting,
    ("waiting", "erred"): _input_fails,
    ("queued", "processing"): _run,
    ("queued", "released"): _release_queued,
    ("queued", "erred"): _queued_input_lost,
    ("no-worker", "waiting"): _worker_joins,
    ("no-worker", "released"): _release_no_worker,
    ("no-worker", "erred"): _no_worker_input_lost,
    ("processing", "memory"): _finish,
    ("processing", "released"): _cancel_processing,
    ("processing", "erred"): _processing_input_lost,
    ("processing", "processing"): _steal,
    ("memory", "released"): _release_memory,
    ("erred", "released"): _retry,
}


def test_scenarios_cover_the_transition_table_exactly() -> None:
    assert set(SCENARIOS) == set(_TRANSITIONS)


@pytest.mark.parametrize("move", sorted(SCENARIOS), ids=lambda m: f"{m[0]}->{m[1]}")
def test_transition_is_reachable_through_events(
    move: tuple[str, str], state: SchedulerState, sim: Sim
) -> None:
    key = SCENARIOS[move](sim)
    seen = {(start, finish) for _, start, finish, _, _ in state.story(key)}
    assert move in seen, state.story(key)


def test_processing_input_lost_frees_the_task_on_its_worker(sim: Sim) -> None:
    sim.join("w3")
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("x", 1)], workers=["w1"])
    sim.submit([row("a", ["x"], workers=["w2"]), row("b", ["x"], workers=["w3"])])
    out = sim.missing("w2", "x", "w1", "a")
    assert SendFree("w3", ["b"]) in out
