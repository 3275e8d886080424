"""The Active Memory Manager's decisions (``shoal.scheduler._amm``), driven purely: a task
state in memory, copies recorded with ``ReplicasAdded``, a pass, its drops applied back as
``ReplicasDropped`` (what the shell does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.scheduler import _amm as amm
from shoal.scheduler._events import (
    HeartbeatReceived,
    ReplicasAdded,
    ReplicasDropped,
    ReplicasWanted,
    SendCompute,
    SendFree,
    WorkerPaused,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, of, row


@pytest.fixture
def manager(state: SchedulerState) -> Iterator[amm.ActiveMemoryManager]:
    m = amm.ActiveMemoryManager()
    yield m
    m.validate(amm.View(state.replicated_tasks, state.workers, state.replicas_wanted))


def run(m: amm.ActiveMemoryManager, state: SchedulerState, retiring: frozenset[str] = frozenset(),
        ) -> tuple[dict[str, list[object]], list[object], int]:
    """One whole pass as the shell runs it: ``(drops by worker, the state's commands,
    steps)``."""
    drops: dict[str, list[object]] = {}
    commands: list[object] = []
    steps = 0
    event: amm.Event = amm.PassAsked()
    while True:
        steps += 1
        out = m.handle(amm.View(state.replicated_tasks, state.workers, state.replicas_wanted, retiring), event)
        for cmd in out:
            if isinstance(cmd, amm.DropReplicas):
                drops.setdefault(cmd.worker, []).extend(cmd.keys)
                commands += state.handle(ReplicasDropped(cmd.worker, cmd.keys))
        if not any(isinstance(c, amm.ContinuePass) for c in out):
            assert isinstance(out[-1], amm.PassDone)
            return drops, commands, steps
        event = amm.StepAsked()


def compute_all(sim: Sim, n: int) -> None:
    """Tasks 0..n-1 submitted and run to memory, as their workers take them."""
    sim.submit([row(i) for i in range(n)])
    while True:  # ends: every round finishes what is processing; the queue empties
        running = [ts.key for w in sim.state.workers.values() for ts in w.processing]
        if not running:
            break
        for key in running:
            sim.finish(key)
    assert all(sim.state.tasks[i].state == "memory" for i in range(n))


def holders(state: SchedulerState, key: object) -> set[str]:
    return {w.address for w in state.tasks[key].who_has}


def copied(sim: Sim, key: str = "a", workers: tuple[str, ...] = ("w1", "w2", "w3"),
           nbytes: int = 100) -> None:
    """``key`` computed and then copied to every one of ``workers``."""
    for w in workers:
        if w not in sim.state.workers:
            sim.join(w)
    sim.submit([row(key)])
    sim.finish(key, nbytes=nbytes)
    for w in workers:
        if w not in holders(sim.state, key):
            sim.state.handle(ReplicasAdded(w, [key]))


def test_copies_are_tracked_and_a_pass_leaves_one_holder(sim: Sim, state: SchedulerState,
                                                         manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    assert state.tasks["a"] in state.replicated_tasks
    drops, commands, _ = run(manager, state)
    assert len(holders(state, "a")) == 1
    assert sum(len(k) for k in drops.values()) == 2
    assert sorted(c.worker for c in of(commands, SendFree)) == sorted(drops)
    assert state.tasks["a"] not in state.replicated_tasks
    assert run(manager, state)[0] == {}  # nothing more to do


def test_the_copy_dropped_is_on_the_worker_using_the_most_memory(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    sim.submit([row("big")])
    sim.finish("big", nbytes=10_000)
    fullest = max(state.workers.values(), key=lambda w: w.nbytes).address
    drops, _, _ = run(manager, state)
    assert list(drops) == [fullest]


def test_no_copy_is_dropped_where_a_dependent_runs(sim: Sim, state: SchedulerState,
                                                   manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    sim.submit([row("big")])
    sim.finish("big", nbytes=10_000)
    fullest = max(state.workers.values(), key=lambda w: w.nbytes).address
    # A dependent of a runs on the fullest worker: its copy there stays, the other goes.
    sim.submit([row("b", ["a"], workers=[fullest])])
    assert state.tasks["b"].processing_on is not None
    assert state.tasks["b"].processing_on.address == fullest
    drops, _, _ = run(manager, state)
    assert fullest not in drops
    assert holders(state, "a") == {fullest}


def test_a_key_keeps_a_copy_per_place_its_dependents_will_run(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    sim.submit([row("b", ["a"], workers=["w1"]), row("c", ["a"], workers=["w2"])])
    run(manager, state)
    assert holders(state, "a") >= {"w1", "w2"}  # both running dependents keep theirs
    sim.finish("b")
    sim.finish("c")
    run(manager, state)
    assert len(holders(state, "a")) == 1


def test_the_last_copy_on_a_running_worker_stays_when_the_others_are_paused_or_retiring(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    state.handle(WorkerPaused("w1", True))
    drops, _, _ = run(manager, state, retiring=frozenset({"w2"}))
    # The paused and the retiring worker drop theirs; the running one keeps the last copy.
    assert sorted(drops) == ["w1", "w2"]
    assert holders(state, "a") == {"w3"}


def test_copies_on_paused_workers_only_are_reduced_to_one(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    state.handle(WorkerPaused("w1", True), WorkerPaused("w2", True))
    run(manager, state)
    assert len(holders(state, "a")) == 1


def test_a_running_worker_never_gives_its_copy_up_to_a_retiring_one(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    sim.submit([row("big")])
    sim.finish("big", "w1", nbytes=10_000) if state.tasks["big"].processing_on.address == "w1" \
        else sim.finish("big", nbytes=10_000)
    # w2 retires: its copy goes even if w1 uses more memory.
    drops, _, _ = run(manager, state, retiring=frozenset({"w2"}))
    assert list(drops) == ["w2"]
    assert holders(state, "a") == {"w1"}


def test_copies_asked_for_are_kept_until_the_wish_is_withdrawn(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    state.handle(ReplicasWanted(["a"], 3))
    assert state.tasks["a"] not in state.replicated_tasks  # nothing for the AMM to look at
    assert run(manager, state)[0] == {}
    state.handle(ReplicasWanted(["a"], 2))
    run(manager, state)
    assert len(holders(state, "a")) == 2
    state.handle(ReplicasWanted(["a"], 1))
    run(manager, state)
    assert len(holders(state, "a")) == 1
    assert state.replicas_wanted == {}


def test_a_copy_beyond_the_wish_is_dropped(sim: Sim, state: SchedulerState,
                                           manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    state.handle(ReplicasWanted(["a"], 2))
    sim.join("w3")
    state.handle(ReplicasAdded("w3", ["a"]))
    assert state.tasks["a"] in state.replicated_tasks
    run(manager, state)
    assert len(holders(state, "a")) == 2


def test_a_broadcast_scatter_is_tracked_as_copies(sim: Sim, state: SchedulerState,
                                                  manager: amm.ActiveMemoryManager) -> None:
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    sim.scatter([("s", 10)], broadcast=True, ack=False)
    state.handle(ReplicasWanted(["s"], 3))  # what the shell says right after the scatter
    for w in ("w1", "w2", "w3"):
        sim.ack(w, "s")
    assert len(holders(state, "s")) == 3
    assert state.tasks["s"] not in state.replicated_tasks
    assert run(manager, state)[0] == {}


def test_the_wish_goes_with_the_key(sim: Sim, state: SchedulerState,
                                    manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    state.handle(ReplicasWanted(["a"], 3))
    sim.release("a")
    assert state.replicas_wanted == {}
    assert not state.replicated_tasks


def test_the_wish_of_a_broadcast_released_while_stored_goes(sim: Sim, state: SchedulerState) -> None:
    for w in ("w1", "w2"):
        sim.join(w)
    sim.scatter([("s", 10)], broadcast=True, ack=False)
    state.handle(ReplicasWanted(["s"], 2))
    sim.release("s")  # while the stores are on their way
    sim.ack("w1", "s")
    sim.ack("w2", "s")
    assert state.replicas_wanted == {}


def test_a_worker_leaving_prunes_the_tracked_copies(sim: Sim, state: SchedulerState,
                                                    manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    sim.leave("w2")
    assert run(manager, state)[0] == {}
    assert state.tasks["a"] not in state.replicated_tasks


def test_actors_are_never_touched(sim: Sim, state: SchedulerState,
                                  manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    state.tasks["a"].actor = True  # (an actor never has copies; the rule holds anyway)
    state._actors.add(state.tasks["a"])
    try:
        assert run(manager, state)[0] == {}
    finally:
        state.tasks["a"].actor = False
        state._actors.discard(state.tasks["a"])


# --- races: a drop against a task that comes to need the copy ---------------------------------


def test_after_a_drop_a_new_task_on_that_worker_is_told_to_fetch_from_the_others(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    drops, _, _ = run(manager, state)
    (dropper,) = drops
    (keeper,) = holders(state, "a")
    # The free went out before anything later to that worker; a task placed there now
    # lists only the remaining holder, so the worker fetches it instead of expecting its own.
    cmds = sim.submit([row("b", ["a"], workers=[dropper])])
    (compute,) = of(cmds, SendCompute)
    assert compute.worker == dropper
    assert compute.deps == [("a", [keeper], 100)]


def test_a_peer_that_finds_the_dropped_copy_gone_fetches_another(
        sim: Sim, state: SchedulerState, manager: amm.ActiveMemoryManager) -> None:
    copied(sim)
    # b was sent to w3 listing all three holders; then the AMM drops two copies (w3's own
    # copy stays: b runs there).
    sim.submit([row("b", ["a"], workers=["w3"])])
    drops, _, _ = run(manager, state)
    gone = sorted(drops)
    assert "w3" not in gone
    # w3 had tried one of the dropped holders first: it reports it missing and tries the
    # next one; the scheduler loses nothing and leaves b running.
    cmds = sim.missing("w3", "a", gone[0], "b")
    assert state.tasks["a"].state == "memory"
    assert state.tasks["b"].state == "processing"
    assert not of(cmds, SendCompute)


def test_a_copy_whose_last_other_holder_left_is_kept(sim: Sim, state: SchedulerState,
                                                     manager: amm.ActiveMemoryManager) -> None:
    copied(sim, workers=("w1", "w2"))
    # The drop is decided, then (before the shell applies it) the other holder leaves:
    # the state refuses to drop the last copy.
    out = manager.handle(amm.View(state.replicated_tasks, state.workers, state.replicas_wanted), amm.PassAsked())
    (drop,) = of(out, amm.DropReplicas)
    other = ({"w1", "w2"} - {drop.worker}).pop()
    sim.leave(other)
    assert state.handle(ReplicasDropped(drop.worker, drop.keys)) == []
    assert holders(state, "a") == {drop.worker}


# --- cost: bounded steps, only copied keys looked at ------------------------------------------


def test_a_pass_looks_only_at_copied_keys(sim: Sim, state: SchedulerState) -> None:
    m = amm.ActiveMemoryManager(step=10 * amm.FULL)
    for w in ("w1", "w2"):
        sim.join(w)
    compute_all(sim, 5_000)
    for i in range(10):
        state.handle(ReplicasAdded("w1", [i]), ReplicasAdded("w2", [i]))
    drops, _, steps = run(m, state)
    assert steps == 1  # 10 keys, not 5,000
    assert sum(len(k) for k in drops.values()) == 10


def test_a_big_pass_is_cut_into_bounded_steps(sim: Sim, state: SchedulerState) -> None:
    m = amm.ActiveMemoryManager(step=1_000 * amm.FULL)
    for w in ("w1", "w2"):
        sim.join(w)
    n = 20_000
    compute_all(sim, n)
    state.handle(ReplicasAdded("w1", list(range(n))), ReplicasAdded("w2", list(range(n))))
    view = amm.View(state.replicated_tasks, state.workers, state.replicas_wanted)
    out = m.handle(view, amm.PassAsked())
    steps, most = 1, 0
    while True:  # ends: each step takes 1,000 keys off the pass's list
        dropped = of(out, amm.DropReplicas)
        most = max(most, sum(len(c.keys) for c in dropped))
        for c in dropped:
            state.handle(ReplicasDropped(c.worker, c.keys))
        if not of(out, amm.ContinuePass):
            break
        out = m.handle(view, amm.StepAsked())
        steps += 1
    # Work per step is counted, not timed (the time per key: benchmarks/RESULTS.md).
    assert steps == n // 1_000
    assert most == 1_000
    assert all(len(ts.who_has) == 1 for ts in state.tasks.values())
    assert not state.replicated_tasks


def test_a_pass_asked_while_one_is_under_way_goes_on_with_it(sim: Sim, state: SchedulerState
                                                            ) -> None:
    m = amm.ActiveMemoryManager(step=2 * amm.FULL)
    for w in ("w1", "w2"):
        sim.join(w)
    compute_all(sim, 5)
    state.handle(ReplicasAdded("w1", list(range(5))), ReplicasAdded("w2", list(range(5))))
    view = amm.View(state.replicated_tasks, state.workers, state.replicas_wanted)
    m.handle(view, amm.PassAsked())
    assert m.passing
    m.handle(view, amm.PassAsked())
    m.handle(view, amm.PassAsked())
    assert not m.passing
    assert m.passes == 1


def test_keys_holding_the_copies_asked_for_cost_a_pass_nothing(sim: Sim,
                                                               state: SchedulerState) -> None:
    m = amm.ActiveMemoryManager(step=amm.FULL)
    for w in ("w1", "w2", "w3"):
        sim.join(w)
    compute_all(sim, 3_000)
    keys = list(range(3_000))
    state.handle(ReplicasWanted(keys, 3))
    state.handle(*(ReplicasAdded(w, keys) for w in ("w1", "w2", "w3")))
    assert not state.replicated_tasks
    drops, _, steps = run(m, state)
    assert (drops, steps) == ({}, 1)


def test_unknown_measure_or_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="measure must be one of"):
        amm.ActiveMemoryManager(measure="rss")
    with pytest.raises(ValueError, match="only ReduceReplicas"):
        amm.ActiveMemoryManager(policies=["RetireWorker"])


def test_no_policies_drop_nothing(sim: Sim, state: SchedulerState) -> None:
    copied(sim)
    assert run(amm.ActiveMemoryManager(policies=()), state)[0] == {}


def test_process_measure_reads_the_heartbeats(sim: Sim, state: SchedulerState) -> None:
    copied(sim, workers=("w1", "w2"))
    state.handle(HeartbeatReceived("w2", 5_000_000, 100, 0.0, 0, 0.0))
    drops, _, _ = run(amm.ActiveMemoryManager(measure="process"), state)
    assert list(drops) == ["w2"]
