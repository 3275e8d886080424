"""Releasing many results at once frees them with one ``SendFree`` per worker (not one
command per key), and still before any later compute sent to that worker."""

from __future__ import annotations

from shoal.scheduler._events import SendCompute, SendFree

from ._sim import Sim, of, row


def _finish_all(sim: Sim, keys: list[str]) -> None:
    while True:
        running = [k for k in keys if sim.state.tasks[k].state == "processing"]
        if not running:
            return
        for k in running:
            sim.finish(k)


def test_released_results_are_freed_with_one_command_per_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    keys = [f"x{i}" for i in range(40)]
    sim.submit([row(k) for k in keys])
    _finish_all(sim, keys)
    holders = {k: next(iter(sim.state.tasks[k].who_has)).address for k in keys}
    assert set(holders.values()) == {"w1", "w2"}

    frees = of(sim.release(*keys), SendFree)

    assert sorted(f.worker for f in frees) == ["w1", "w2"]
    for f in frees:
        assert sorted(f.keys) == sorted(k for k, w in holders.items() if w == f.worker)
    assert not sim.state.tasks


def test_a_free_merged_in_a_release_still_precedes_a_later_compute(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b")])
    _finish_all(sim, ["a", "b"])
    sim.release("a", "b")
    cmds = sim.submit([row("a")])  # computed again after the frees
    assert [type(c) for c in cmds] == [SendCompute]
    # and a release and a resubmission in one batch: the free of the old copy comes first
    _finish_all(sim, ["a"])
    from shoal.scheduler._events import GraphSubmitted, KeysReleased

    cmds = sim.state.handle(KeysReleased("c", ["a"]), GraphSubmitted("c", [row("a")], ["a"]))
    kinds = [(type(c).__name__, getattr(c, "key", None) or tuple(getattr(c, "keys", ())))
             for c in cmds if isinstance(c, (SendFree, SendCompute))]
    assert kinds == [("SendFree", ("a",)), ("SendCompute", "a")]
