"""Function blobs are reference-counted by the tasks that use them (issue 9, item 15): one no
task has used for two ticks is forgotten; one still used, or used again soon, is kept."""

from __future__ import annotations

from shoal.scheduler._events import ForgetFunctions, Tick
from shoal.scheduler._functions import FunctionRefs

from ._sim import Sim, of, row


def _tick(sim: Sim) -> list[str]:
    sim.now += 1.0
    return [fid for cmd in of(sim.state.handle(Tick(sim.now)), ForgetFunctions) for fid in cmd.fids]


def test_function_no_task_uses_is_forgotten_after_two_ticks(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", fids=["f1"])])
    sim.finish("a")
    sim.release("a")
    assert "a" not in sim.state.tasks
    assert _tick(sim) == []
    assert _tick(sim) == ["f1"]
    assert _tick(sim) == []


def test_function_used_again_before_it_expires_is_kept(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a", fids=["f1"])])
    sim.finish("a")
    sim.release("a")
    _tick(sim)
    sim.submit([row("b", fids=["f1"])])
    assert _tick(sim) == [] and _tick(sim) == []


def test_function_a_live_task_still_uses_is_kept(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.submit([row("a", fids=["f1"]), row("b", fids=["f1", "f2"])])
    sim.finish("a")
    sim.release("a")
    assert _tick(sim) == [] and _tick(sim) == []
    sim.finish("b")
    sim.release("b")
    _tick(sim)
    assert sorted(_tick(sim)) == ["f1", "f2"]


def test_refs_count_each_task() -> None:
    refs = FunctionRefs()
    refs.use(["f"])
    refs.use(["f"])
    refs.release(["f"])
    assert refs.refs == {"f": 1} and refs.idle == {}
    refs.release(["f"])
    assert refs.refs == {} and refs.idle == {"f": 0}
    refs.validate()
