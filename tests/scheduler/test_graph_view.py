"""The dashboard's /graph view of the pure scheduler state: nodes, states, edges, priority
order, the structure token, and the cap that keeps big graphs cheap."""

from __future__ import annotations

import time

from shoal.scheduler._graph_view import EDGES_PER_TASK, task_graph

from ._sim import Sim, row


def diamond(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([
        row("load-0", prefix="load", priority=(0,)),
        row("load-1", prefix="load", priority=(1,)),
        row("add-0", ["load-0", "load-1"], prefix="add", priority=(2,)),
        row("sum-0", ["add-0", "load-0"], prefix="sum", priority=(3,)),
    ])


def by_key(doc: dict) -> dict[str, str]:
    return {k: doc["states"][c] for k, c in zip(doc["nodes"], doc["state"], strict=True)}


def test_graph_lists_every_task_with_state_prefix_and_dependency_edges(sim: Sim) -> None:
    diamond(sim)
    doc = task_graph(sim.state, limit=100)
    assert doc["too_many"] is False and doc["tasks"] == 4
    assert by_key(doc) == {"load-0": "processing", "load-1": "queued", "add-0": "waiting",
                           "sum-0": "waiting"}
    nodes = doc["nodes"]
    pairs = {(nodes[a], nodes[b]) for a, b in zip(doc["edges"][::2], doc["edges"][1::2],
                                                   strict=True)}
    assert pairs == {("load-0", "add-0"), ("load-1", "add-0"), ("add-0", "sum-0"),
                     ("load-0", "sum-0")}
    assert doc["edge_count"] == 4
    assert [doc["prefixes"][p] for p in doc["prefix"]] == ["load", "load", "add", "sum"]
    ranks = dict(zip(nodes, doc["rank"], strict=True))
    assert sorted(ranks, key=ranks.__getitem__) == ["load-0", "load-1", "add-0", "sum-0"]


def test_states_follow_the_run_and_structure_is_sent_once(sim: Sim) -> None:
    diamond(sim)
    first = task_graph(sim.state, limit=100)
    sim.finish("load-0")
    again = task_graph(sim.state, limit=100, known=first["layout"])
    assert again["layout"] == first["layout"]
    assert "nodes" not in again and "edges" not in again  # states only
    states = dict(zip(first["nodes"], (again["states"][c] for c in again["state"]), strict=True))
    assert states["load-0"] == "memory" and states["load-1"] == "processing"
    # a new task changes the structure: the next answer carries it again
    sim.submit([row("extra-0", ["sum-0"], prefix="extra", priority=(4,))])
    grown = task_graph(sim.state, limit=100, known=first["layout"])
    assert grown["layout"] != first["layout"] and "extra-0" in grown["nodes"]


def test_forgotten_tasks_leave_the_graph(sim: Sim) -> None:
    diamond(sim)
    before = task_graph(sim.state, limit=100)
    sim.cancel("load-0", "load-1", "add-0", "sum-0")
    after = task_graph(sim.state, limit=100, known=before["layout"])
    assert after["tasks"] == 0 and after["nodes"] == [] and after["edges"] == []


def test_past_the_limit_only_counts_are_given(sim: Sim) -> None:
    diamond(sim)
    doc = task_graph(sim.state, limit=3)
    assert doc["too_many"] is True and doc["tasks"] == 4 and doc["limit"] == 3
    assert "nodes" not in doc and "state" not in doc
    assert doc["by_state"]["waiting"] == 2 and doc["by_state"]["processing"] == 1


def test_too_many_edges_count_as_too_big(sim: Sim) -> None:
    sim.join("w1")
    n = k = 20  # every y-task reads every x-task: 400 edges among 40 tasks
    assert n * k > EDGES_PER_TASK * (n + k)
    sim.submit([row(f"x-{i}", prefix="x") for i in range(n)]
               + [row(f"y-{i}", [f"x-{j}" for j in range(n)], prefix="y") for i in range(k)])
    doc = task_graph(sim.state, limit=n + k)
    assert doc["too_many"] is True and doc["edge_count"] == n * k
    assert "nodes" not in doc


def test_a_graph_past_the_limit_costs_only_its_prefixes(sim: Sim) -> None:
    """200k tasks here; the answer reads len(tasks) and the per-prefix counts, never the
    tasks, so a million cost the same."""
    sim.join("w1")
    sim.submit([row(f"inc-{i}", prefix="inc", priority=(i,)) for i in range(200_000)])
    t0 = time.perf_counter()
    doc = task_graph(sim.state, limit=5000)
    elapsed = time.perf_counter() - t0
    assert doc["too_many"] is True and doc["by_state"]["queued"] == 199_999
    assert elapsed < 0.01, f"{elapsed * 1e3:.1f} ms for a capped answer: must be O(prefixes)"


def test_graph_at_the_limit_is_quick(sim: Sim) -> None:
    sim.join("w1")
    sim.submit([row(f"a-{i}", prefix="a", priority=(i,)) for i in range(2500)]
               + [row(f"b-{i}", [f"a-{i}", f"a-{(i + 1) % 2500}"], prefix="b", priority=(i,))
                  for i in range(2500)])
    t0 = time.perf_counter()
    first = task_graph(sim.state, limit=5000)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    task_graph(sim.state, limit=5000, known=first["layout"])
    states_only = time.perf_counter() - t0
    assert len(first["nodes"]) == 5000 and first["edge_count"] == 5000
    # generous bounds for a loaded 2-core machine; typically ~10 ms and ~2 ms
    assert full < 0.25 and states_only < 0.1, (full, states_only)
