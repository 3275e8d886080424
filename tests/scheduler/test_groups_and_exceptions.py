"""The task-group counts and the recent failures the dashboard's /groups and /exceptions
read: kept by the pure state as tasks move, read in O(rows asked for)."""

from __future__ import annotations

from shoal.scheduler._state import SchedulerState
from shoal.scheduler._views import erred_tasks, task_groups

from ._sim import Sim, row


def test_group_counts_follow_a_layer_of_tuple_keys_and_a_prefix_of_plain_keys(sim: Sim) -> None:
    sim.join("w1", nthreads=2)
    sim.submit([row(("x-aaaa1111", i), prefix="x") for i in range(3)]
               + [row(("x-bbbb2222", i), prefix="x") for i in range(2)]
               + [row(f"inc-{i}", prefix="inc") for i in range(2)])
    groups = sim.state.group_counts
    assert list(groups) == ["x-aaaa1111", "x-bbbb2222", "inc"]  # the order they appeared
    assert sum(groups["x-aaaa1111"].values()) == 3
    assert sum(groups["inc"].values()) == 2
    running = [k for k, ts in sim.state.tasks.items() if ts.state == "processing"]
    sim.finish(running[0])
    sim.fail(running[1])
    done, failed = (sim.state.tasks[k] for k in running[:2])
    assert (done.state, failed.state) == ("memory", "erred")
    by_state = {g: {s: n for s, n in c.items() if n} for g, c in groups.items()}
    assert sum(c.get("memory", 0) for c in by_state.values()) == 1
    assert sum(c.get("erred", 0) for c in by_state.values()) == 1
    sim.state.validate()  # the counts match the tasks' states, group by group
    sim.release(*[("x-aaaa1111", i) for i in range(3)])
    sim.state.validate()
    assert "x-aaaa1111" not in sim.state.group_counts  # its last task forgotten: row gone


def test_task_groups_view_reads_the_newest_groups_first_up_to_the_limit(sim: Sim) -> None:
    sim.submit([row((f"layer{i}-abcdef12", 0), prefix=f"layer{i}") for i in range(50)])
    doc = task_groups(sim.state, 10)
    assert doc["groups"] == 50 and doc["limit"] == 10
    assert [r["name"] for r in doc["rows"]] == [f"layer{i}-abcdef12" for i in range(49, 39, -1)]
    assert doc["rows"][0]["prefix"] == "layer49"
    assert doc["rows"][0]["released"] + doc["rows"][0]["waiting"] + doc["rows"][0]["queued"] == 1


def test_erred_tasks_keep_the_failing_task_not_its_dependents_newest_first() -> None:
    state = SchedulerState(erred_history=2)
    sim = Sim(state)
    sim.join("w1", nthreads=4)
    sim.submit([row("a"), row("b", ["a"]), row("c"), row("d")])
    sim.fail("a", exc=ValueError("bad a"))
    assert state.tasks["b"].state == "erred"  # through its input: not listed
    doc = erred_tasks(state, 10)
    assert [r["key"] for r in doc["rows"]] == ["a"]
    (first,) = doc["rows"]
    assert "ValueError" in first["type"] and first["exception"] == "bad a"
    assert "bad a" in first["traceback"] and first["worker"] == "w1"
    sim.fail("c", exc=RuntimeError("bad c"))
    sim.fail("d", exc=RuntimeError("bad d"))
    doc = erred_tasks(state, 10)
    assert doc["count"] == 2 and doc["kept"] == 2  # bounded: "a" fell off
    assert [r["key"] for r in doc["rows"]] == ["d", "c"]
    assert [r["key"] for r in erred_tasks(state, 1)["rows"]] == ["d"]
    state.validate()
