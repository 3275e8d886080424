"""Long walks of the state machine go in bounded steps: forgetting a large lineage when
its last future is dropped is cut into ``_tidy_step`` tasks per ``handle`` call, the
state asking for more with ContinueWork and going on when WorkResumed comes back."""

from __future__ import annotations

from shoal.scheduler._events import ContinueWork, GraphSubmitted, KeysReleased, WorkResumed
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, of, row


def _summed(sim: Sim, leaves: int) -> list[tuple[object, ...]]:
    """A sum of ``leaves`` leaves by pairs, run to the end, only the root wanted."""
    rows = [row(("leaf", i)) for i in range(leaves)]
    layer = [r[0] for r in rows]
    n = 0
    while len(layer) > 1:
        nxt = []
        for j in range(0, len(layer) - 1, 2):
            key = ("add", n)
            n += 1
            rows.append(row(key, [layer[j], layer[j + 1]]))
            nxt.append(key)
        layer = nxt + ([layer[-1]] if len(layer) % 2 else [])
    sim.submit(rows, [layer[0]])
    while running := [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]:
        for key in running:
            sim.finish(key)
    assert sim.state.tasks[layer[0]].state == "memory"
    return rows


def _fresh() -> Sim:
    sim = Sim(SchedulerState())
    sim.join("w1", nthreads=2)
    sim.join("w2", nthreads=2)
    return sim


def test_dropping_a_large_lineage_forgets_it_in_bounded_steps_like_one_step() -> None:
    whole, stepped = _fresh(), _fresh()
    rows = _summed(whole, 64)
    _summed(stepped, 64)
    stepped.state._tidy_step = 7
    root = rows[-1][0]
    cmds = whole.release(root)
    assert not of(cmds, ContinueWork)
    assert whole.state.tasks == {}

    cmds = stepped.release(root)
    sizes = [len(stepped.state.tasks)]
    while of(cmds, ContinueWork):
        assert len(of(cmds, ContinueWork)) == 1
        stepped.state.validate()
        cmds = stepped.state.handle(WorkResumed())
        sizes.append(len(stepped.state.tasks))
    forgotten_per_step = [a - b for a, b in zip([len(rows), *sizes], sizes, strict=False)]
    assert max(forgotten_per_step) <= 7  # each step bounded
    assert len(sizes) > len(rows) // 7  # so it took many
    assert stepped.state.tasks == {}  # and ended where one step ends
    stepped.state.validate()


def test_a_key_wanted_again_between_steps_is_kept() -> None:
    sim = _fresh()
    rows = _summed(sim, 32)
    sim.state._tidy_step = 5
    root = rows[-1][0]
    cmds = sim.release(root)
    assert of(cmds, ContinueWork)
    # the client asks for one of the inputs again before the walk reaches it
    again = next(r for r in rows if r[0] in sim.state.tasks and r[0] != root)
    sim.state.handle(GraphSubmitted("c", [again], [again[0]]))
    while of(cmds, ContinueWork):
        cmds = sim.state.handle(WorkResumed())
    assert again[0] in sim.state.tasks
    assert sim.state.tasks[again[0]].who_wants == {"c"}
    while running := [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]:
        for key in running:
            sim.finish(key)
    assert sim.state.tasks[again[0]].state == "memory"
    sim.state.handle(KeysReleased("c", [again[0]]))
    sim.state.validate()
