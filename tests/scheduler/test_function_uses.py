"""A graph's tasks are counted as users of their functions in runs of rows that share one
function tuple: the count per function is the number of tasks using it, however the rows
interleave, and forgetting the tasks brings it back down."""

from __future__ import annotations

from shoal.scheduler._state import SchedulerState

from ._sim import Sim, row


def test_function_use_counts_follow_interleaved_rows(sim: Sim, state: SchedulerState) -> None:
    fids = ["fa", "fa", "fb", "fb", "fb", "fa", "fab", "fa"]
    rows = [row(f"k{i}", fids=("fa", "fb") if f == "fab" else (f,))
            for i, f in enumerate(fids)]
    sim.submit(rows)
    assert state.functions.refs == {"fa": 5, "fb": 4}
    sim.release("k0", "k2", "k6")
    assert state.functions.refs == {"fa": 3, "fb": 2}
    sim.release(*(f"k{i}" for i in (1, 3, 4, 5, 7)))
    assert state.functions.refs == {}
    assert set(state.functions.idle) == {"fa", "fb"}
