"""Scenario tests of where the pure scheduler sends a task: locality of inputs, spreading, restrictions.

No sockets, no event loop, no clock: every test runs in well under a millisecond.
"""

from __future__ import annotations

from shoal.scheduler import _placement as placement
from shoal.scheduler._events import (
    ReportDone,
    SendCompute,
    SendFree,
)
from shoal.scheduler._state import SchedulerState

from ._sim import Sim, computes, of, row

BIG = placement.LOCALITY_BYTES + 1

# --- dependencies and placement ---------------------------------------------------------------


def test_dependent_waits_for_its_input_then_runs(sim: Sim) -> None:
    sim.join("w1")
    out = sim.submit([row("a"), row("b", ["a"])], wanted=["b"])
    assert computes(out) == [("w1", "a")]
    assert sim.states("a", "b") == ["processing", "waiting"]
    out = sim.finish("a", nbytes=10)
    (cmd,) = of(out, SendCompute)
    assert (cmd.worker, cmd.key, cmd.deps) == ("w1", "b", [("a", ["w1"], 10)])
    assert of(out, ReportDone) == []  # nobody wants a
    assert sim.finish("b") == [ReportDone("c", "b", 8, "int", None), SendFree("w1", ["a"])]
    # a's value is freed once its last dependent is done; its record stays as b's lineage
    assert sim.states("a", "b") == ["released", "memory"]
    assert sim.release("b") == [SendFree("w1", ["b"])]
    assert sim.state.tasks == {}


def test_input_released_after_last_dependent_finishes(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row("a"), row("b", ["a"], priority=(1,)), row("c", ["a"], priority=(2,))],
               wanted=["b", "c"])
    assert computes(sim.finish("a")) == [("w1", "b")]
    out = sim.finish("b")
    assert out[0] == ReportDone("c", "b", 8, "int", None)
    assert computes(out) == [("w1", "c")]
    assert of(out, SendFree) == []  # c still needs a
    out = sim.finish("c")
    assert out == [ReportDone("c", "c", 8, "int", None), SendFree("w1", ["a"])]
    assert sim.states("a") == ["released"]


def test_big_input_pulls_dependent_to_its_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit(
        [row("big", workers=["w2"]), row("small", workers=["w1"]), row("f", ["big", "small"])],
        wanted=["f"],
    )
    sim.finish("small", nbytes=100)
    out = sim.finish("big", nbytes=BIG)
    assert computes(out) == [("w2", "f")]


def test_busy_holder_loses_a_task_whose_input_is_cheap_to_move(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=BIG)  # moves in ~3 ms at 100 MB/s
    sim.submit([row(f"busy-{i}", workers=["w1"]) for i in range(3)])  # ~1.5 s of work
    out = sim.submit([row("y", ["x"])])
    assert computes(out) == [("w2", "y")]


def test_busy_holder_keeps_a_task_whose_input_costs_more_to_move(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=10**9)  # 10 s at 100 MB/s
    sim.submit([row(f"busy-{i}", workers=["w1"]) for i in range(3)])
    out = sim.submit([row("y", ["x"])])
    assert computes(out) == [("w1", "y")]


def test_tasks_sharing_one_big_input_spread_over_all_workers(sim: Sim) -> None:
    """model = submit(train) (8 MB), then map(predict, chunks, model=model)."""
    for w in ("w1", "w2", "w3", "w4"):
        sim.join(w)
    sim.submit([row("train", workers=["w1"])])
    sim.finish("train", nbytes=8 * 2**20)
    out = sim.submit([row(f"predict-{i}", ["train"], prefix="predict", priority=(i,))
                      for i in range(1000)])
    per_worker: dict[str, int] = {}
    for w, _ in computes(out):
        per_worker[w] = per_worker.get(w, 0) + 1
    assert sum(per_worker.values()) == 1000
    assert sorted(per_worker) == ["w1", "w2", "w3", "w4"]
    assert min(per_worker.values()) >= 200, per_worker


def test_new_tasks_each_reading_its_own_big_input_run_where_the_input_is(sim: Sim) -> None:
    """``x.persist()`` of 20 MB chunks, then ``x.sum()``: each chunk's sum runs on the
    worker holding the chunk. Their duration is unknown yet, and the guesses (0.5 s each)
    of their siblings queued on the holder are no reason to move 20 MB per task."""
    sim.join("w1")
    sim.join("w2")
    for i in range(20):
        sim.submit([row(f"x-{i}", workers=["w1" if i < 10 else "w2"])])
        sim.finish(f"x-{i}", nbytes=20_000_000)
    out = sim.submit([row(f"sum-{i}", [f"x-{i}"], prefix="sum", priority=(i,))
                      for i in range(20)])
    assert sorted(computes(out)) == sorted(
        ("w1" if i < 10 else "w2", f"sum-{i}") for i in range(20))


def test_new_tasks_whose_inputs_are_split_over_workers_spread_over_them(sim: Sim) -> None:
    """The joins of a shuffle: each reads pieces from every worker, so its inputs move
    wherever it runs, and the guesses of its siblings spread the joins over the workers."""
    sim.join("w1")
    sim.join("w2")
    for i in range(10):
        for w in ("w1", "w2"):
            sim.submit([row(f"piece-{w}-{i}", workers=[w])])
            sim.finish(f"piece-{w}-{i}", nbytes=4_000_000 + (i if w == "w1" else 0))
    out = sim.submit([row(f"join-{i}", [f"piece-w1-{i}", f"piece-w2-{i}"], prefix="join",
                          priority=(i,)) for i in range(10)])
    per_worker = [w for w, _ in computes(out)]
    assert per_worker.count("w1") == per_worker.count("w2") == 5, per_worker


def test_a_measured_backlog_of_siblings_still_sends_work_to_an_idle_worker(sim: Sim) -> None:
    """Once tasks of the prefix are known to be long (2 s here), a holder's queue of them
    makes moving a 20 MB input (0.2 s at 100 MB/s) the faster start."""
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("slow-0")])
    sim.finish("slow-0", duration=2.0)
    for i in range(6):
        sim.submit([row(f"x-{i}", workers=["w1"])])
        sim.finish(f"x-{i}", nbytes=20_000_000)
    out = sim.submit([row(f"slow-{i + 1}", [f"x-{i}"], prefix="slow", priority=(i,))
                      for i in range(6)])
    assert {w for w, _ in computes(out)} == {"w1", "w2"}


def test_low_bandwidth_keeps_work_with_the_holder() -> None:
    state = SchedulerState(bandwidth=1_000.0)  # 1 kB/s: moving 8 MB never pays
    sim = Sim(state)
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("train", workers=["w1"])])
    sim.finish("train", nbytes=8 * 2**20)
    out = sim.submit([row(f"predict-{i}", ["train"], prefix="predict") for i in range(20)])
    assert {w for w, _ in computes(out)} == {"w1"}
    state.validate()


def test_tiny_inputs_spread_over_workers(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=8)
    out = sim.submit([row(f"y-{i}", ["x"]) for i in range(2)])
    assert sorted(w for w, _ in computes(out)) == ["w1", "w2"]


def test_dependency_inputs_listed_with_their_holders(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("a", workers=["w1"]), row("b", workers=["w2"])])
    sim.finish("a", nbytes=3)
    sim.finish("b", nbytes=4)
    (cmd,) = of(sim.submit([row("c", ["a", "b"])]), SendCompute)
    assert sorted(cmd.deps) == [("a", ["w1"], 3), ("b", ["w2"], 4)]


# --- restrictions ---------------------------------------------------------------------------


def test_restricted_task_waits_for_matching_worker(sim: Sim) -> None:
    sim.join("w1")
    assert sim.submit([row("a", workers=["w2"])]) == []
    assert sim.states("a") == ["no-worker"]
    assert computes(sim.join("w3")) == []
    assert computes(sim.join("w2")) == [("w2", "a")]


def test_restriction_matches_worker_name(sim: Sim) -> None:
    sim.join("tcp://10.0.0.1:1234", name="alice")
    sim.join("tcp://10.0.0.2:1234", name="bob")
    out = sim.submit([row("a", workers=["bob"])])
    assert computes(out) == [("tcp://10.0.0.2:1234", "a")]


def test_restricted_tasks_wait_on_the_scheduler_for_their_worker(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row(f"t-{i}", workers=["w1"]) for i in range(3)])
    # Unknown durations: one per thread is sent; the rest wait for w1, never go to w2.
    assert len(sim.state.workers["w1"].processing) == 1
    assert not sim.state.workers["w2"].processing
    (done,) = sim.state.workers["w1"].processing
    # Measured short (1 ms), the other two fit in w1's batch at once.
    assert sorted(w for w, _ in computes(sim.finish(done.key))) == ["w1", "w1"]


def test_restriction_beats_locality(sim: Sim) -> None:
    sim.join("w1")
    sim.join("w2")
    sim.submit([row("x", workers=["w1"])])
    sim.finish("x", nbytes=BIG)
    assert computes(sim.submit([row("y", ["x"], workers=["w2"])])) == [("w2", "y")]
