"""The task state learns of copies made by replicate/rebalance, and forgets dropped ones."""

from __future__ import annotations

from shoal.scheduler._events import ReplicasAdded, ReplicasDropped, SendFree
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, of, row


def _in_memory(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a")])
    sim.finish("a", nbytes=100)


def test_confirmed_copies_show_in_who_has_and_in_the_worker_bytes(sim: Sim,
                                                                   state: SchedulerState) -> None:
    _in_memory(sim)
    holder = next(iter(state.tasks["a"].who_has)).address
    other = "w2" if holder == "w1" else "w1"
    assert state.handle(ReplicasAdded(other, ["a"])) == []
    assert {w.address for w in state.tasks["a"].who_has} == {"w1", "w2"}
    assert state.workers[other].nbytes == 100


def test_a_dropped_copy_leaves_who_has_and_the_worker_is_told_to_free_it(
        sim: Sim, state: SchedulerState) -> None:
    _in_memory(sim)
    state.handle(ReplicasAdded("w1", ["a"]), ReplicasAdded("w2", ["a"]))
    cmds = state.handle(ReplicasDropped("w1", ["a"]))
    assert [(c.worker, c.keys) for c in of(cmds, SendFree)] == [("w1", ["a"])]
    assert {w.address for w in state.tasks["a"].who_has} == {"w2"}
    assert state.workers["w1"].nbytes == 0


def test_the_last_copy_is_never_dropped(sim: Sim, state: SchedulerState) -> None:
    _in_memory(sim)
    holder = next(iter(state.tasks["a"].who_has)).address
    assert state.handle(ReplicasDropped(holder, ["a"])) == []
    assert state.tasks["a"].state == "memory"


def test_a_copy_of_a_key_released_meanwhile_is_freed_on_that_worker(sim: Sim,
                                                                    state: SchedulerState) -> None:
    _in_memory(sim)
    sim.release("a")
    cmds = state.handle(ReplicasAdded("w2", ["a"]))
    assert [(c.worker, c.keys) for c in of(cmds, SendFree)] == [("w2", ["a"])]


def test_released_key_frees_every_copy(sim: Sim, state: SchedulerState) -> None:
    _in_memory(sim)
    state.handle(ReplicasAdded("w1", ["a"]), ReplicasAdded("w2", ["a"]))
    cmds = sim.release("a")
    assert sorted(c.worker for c in of(cmds, SendFree)) == ["w1", "w2"]


def test_a_dropped_copy_whose_scatter_ack_is_still_on_its_way_is_not_held_again(
        sim: Sim, state: SchedulerState) -> None:
    # A broadcast's store reached w2 and its ack is on the wire; a copy made there meanwhile
    # (replicate) is dropped again (replicate n=1, the AMM): the free drops the stored
    # value too, so the late ack must not make w2 a holder (found by the cluster fuzzer
    # with the AMM, seed 1060).
    sim.join("w1")
    sim.join("w2")
    sim.scatter([("s", 10)], broadcast=True, ack=False)
    sim.ack("w1", "s")
    state.handle(ReplicasAdded("w2", ["s"]))
    cmds = state.handle(ReplicasDropped("w2", ["s"]))
    assert [(c.worker, c.keys) for c in of(cmds, SendFree)] == [("w2", ["s"])]
    sim.ack("w2", "s")
    assert {w.address for w in state.tasks["s"].who_has} == {"w1"}
