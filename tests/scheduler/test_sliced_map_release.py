"""A large map's release goes in bounded slices (``_tidy_step`` tasks per ``handle``, the
rest after WorkResumed), and a key submitted again between two slices behaves as a
submission of a key in that state would: still in memory, it is kept and reported done
at once (never freed); already forgotten, it is computed afresh."""

from __future__ import annotations

from shoal.scheduler._events import ContinueWork, ReportDone, SendFree, WorkResumed
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row


def _finished_map(n: int) -> Sim:
    sim = Sim(SchedulerState())
    sim.join("w1", nthreads=2)
    sim.join("w2", nthreads=2)
    sim.submit([row(("m", i)) for i in range(n)])
    while running := [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]:
        for key in running:
            sim.finish(key)
    return sim


def _freed(cmds: list[object]) -> set[object]:
    return {k for c in of(cmds, SendFree) for k in c.keys}


def test_keys_submitted_again_between_release_slices_are_kept_or_recomputed() -> None:
    sim = _finished_map(40)
    sim.state._tidy_step = 5
    first = sim.release(*[("m", i) for i in range(40)])
    assert of(first, ContinueWork)
    gone, left = ("m", 39), ("m", 0)  # the walk takes the last released key first
    assert gone not in sim.state.tasks and left in sim.state.tasks
    freed = _freed(first)

    again = sim.submit([row(gone), row(left)])  # (its step walks on, too)
    sim.state.validate()
    freed |= _freed(again)
    assert [c.key for c in of(again, ReportDone)] == [left]  # in memory: done at once
    assert [k for _, k in computes(again)] == [gone]  # forgotten: computed afresh
    cmds = first
    while of(cmds, ContinueWork):
        cmds = sim.state.handle(WorkResumed())
        sim.state.validate()
        freed |= _freed(cmds)

    assert left not in freed  # never freed on its worker
    assert sim.state.tasks[left].state == "memory"
    assert sim.state.tasks[left].who_wants == {"c"}
    sim.finish(gone)
    assert sim.state.tasks[gone].state == "memory"
    assert set(sim.state.tasks) == {gone, left}  # the other 38 forgotten, as in one step
    assert freed == {("m", i) for i in range(1, 39)} | {gone}
    sim.state.validate()
