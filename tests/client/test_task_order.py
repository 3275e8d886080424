"""A graph's static order (``_task_order``): dask's ``order`` in linear time for trees."""

from __future__ import annotations

import random
from typing import Any

import dask.array as da
import pytest
from dask import delayed
from dask._task_spec import Task, TaskRef, convert_legacy_graph
from dask.base import collections_to_expr
from dask.order import order

from shoal.client._task_order import inputs_before, ordered, task_order, tree_order


def f(*args: Any) -> int:
    return 0


def _tree(rng: random.Random, leaves: int, max_inputs: int, outside: int = 0,
          outputs: int = 1) -> dict[Any, Task]:
    """A random in-forest: ``leaves`` tasks without inputs, ``outside`` keys that are not
    in the graph (held futures), reduced by tasks of 1..max_inputs inputs down to
    ``outputs`` outputs (fewer if there are fewer leaves)."""
    graph: dict[Any, Task] = {}
    level: list[Any] = []
    for i in range(leaves):
        graph[f"leaf-{i}"] = Task(f"leaf-{i}", f, i)
        level.append(f"leaf-{i}")
    level += [f"held-{j}" for j in range(outside)]
    rng.shuffle(level)
    n = 0
    while len(level) > outputs:
        take = rng.randint(1, max_inputs)
        inputs, level = level[:take], level[take:]
        key = ("reduce", n)
        n += 1
        graph[key] = Task(key, f, *map(TaskRef, inputs))
        level.insert(rng.randint(0, len(level)), key)
    return graph


def _graph(collection: Any) -> dict[Any, Any]:
    expr = collections_to_expr([collection], True).optimize()
    return convert_legacy_graph(dict(expr.__dask_graph__()))


def _delayed_tree(leaves: int) -> Any:
    level = [delayed(f)(i) for i in range(leaves)]
    while len(level) > 1:
        pairs = [delayed(f)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = pairs + level[len(pairs) * 2:]
    return level[0]


def _inputs(graph: dict[Any, Any]) -> dict[Any, list[Any]]:
    """Each task's inputs; keys from outside the graph count as tasks without inputs."""
    out: dict[Any, list[Any]] = {k: list(node.dependencies) for k, node in graph.items()}
    for deps in list(out.values()):
        for d in deps:
            out.setdefault(d, [])
    return out


def _subtrees_are_contiguous(graph: dict[Any, Any], ranks: dict[Any, int]) -> bool:
    """Each task's subtree takes consecutive places that end with the task: a reduction
    runs as soon as its inputs are done, before the leaves of another subtree start."""
    inputs = _inputs(graph)
    for key in graph:
        members, stack = {key}, [key]
        while stack:
            for d in inputs[stack.pop()]:
                members.add(d)
                stack.append(d)
        places = sorted(ranks[k] for k in members if k in graph)
        if places != list(range(places[0], places[0] + len(places))) or ranks[key] != places[-1]:
            return False
    return True


def _trees(graph: dict[Any, Any]) -> list[set[Any]]:
    inputs = _inputs(graph)
    used = {d for ds in inputs.values() for d in ds}
    out = []
    for key in graph:
        if key not in used:
            members, stack = {key}, [key]
            while stack:
                for d in inputs[stack.pop()]:
                    members.add(d)
                    stack.append(d)
            out.append(members & graph.keys())
    return out


@pytest.mark.parametrize("seed", range(60))
def test_trees_of_tasks_with_at_most_two_inputs_get_exactly_dasks_order(seed: int) -> None:
    rng = random.Random(seed)
    graph = _tree(rng, rng.randint(1, 150), max_inputs=2, outside=rng.randint(0, 3),
                  outputs=rng.choice([1, 1, 3]))
    ours, dasks = tree_order(graph), order(graph)
    assert ours is not None
    trees = _trees(graph)
    if any(len(t) == 1 for t in trees) and any(len(t) > 1 for t in trees):
        # Tasks with neither inputs nor users beside trees: whether dask takes the largest
        # or the smallest tree first follows set iteration order. Within each tree, exact.
        for members in trees:
            assert sorted(members, key=ours.get) == sorted(members, key=dasks.get)
        assert _subtrees_are_contiguous(graph, ours)
    else:
        assert ours == dasks


def test_a_delayed_reduction_tree_gets_exactly_dasks_order() -> None:
    graph = _graph(_delayed_tree(1_000))
    assert tree_order(graph) == order(graph)


def test_a_pairwise_array_sum_gets_exactly_dasks_order() -> None:
    graph = _graph(da.ones(300, chunks=1).sum(split_every=2))
    assert tree_order(graph) == order(graph)


def _first_paths(graph: dict[Any, Any]) -> set[Any]:
    """The tasks on dask's first path down from each output (the largest input each step):
    dask takes their other inputs in set iteration order, which follows the hash seed."""
    inputs = _inputs(graph)
    size: dict[Any, int] = {}
    roots: dict[Any, int] = {}  # roots under a task (none under a root: dask's count)
    for key in reversed(list(_topological(graph, inputs))):
        size[key] = 1 + sum(size[d] for d in inputs[key])
        roots[key] = sum(roots[d] or 1 for d in inputs[key])
    used = {d for ds in inputs.values() for d in ds}
    on_path = set()
    for key in graph:
        if key in used:
            continue
        while inputs[key]:
            on_path.add(key)
            key = max(inputs[key], key=lambda k: (size[k], len(inputs[k]), roots[k], str(k)))
    return on_path


def _topological(graph: dict[Any, Any], inputs: dict[Any, list[Any]]) -> list[Any]:
    used = {d for ds in inputs.values() for d in ds}
    seq = [k for k in graph if k not in used]
    for k in seq:
        seq.extend(inputs[k])
    return seq


@pytest.mark.parametrize("seed", range(30))
def test_wider_trees_take_inputs_in_dasks_order_except_where_dask_follows_set_order(seed: int) -> None:
    rng = random.Random(seed)
    graph = _tree(rng, rng.randint(2, 150), max_inputs=6, outside=rng.randint(0, 2))
    ours, dasks = tree_order(graph), order(graph)
    assert ours is not None
    free = _first_paths(graph)
    for key, all_inputs in _inputs(graph).items():
        ins = [d for d in all_inputs if d in graph]  # keys from outside have no place
        if len(ins) < 2:
            continue
        by_ours, by_dask = sorted(ins, key=ours.get), sorted(ins, key=dasks.get)
        if key in free:
            assert by_ours[0] == by_dask[0]  # both start with the largest input
        else:
            assert by_ours == by_dask
    assert _subtrees_are_contiguous(graph, ours) and _subtrees_are_contiguous(graph, dasks)


def test_an_array_sum_finishes_each_partial_sum_before_starting_more_chunks() -> None:
    graph = _graph(da.ones(2_000, chunks=1).sum())
    ranks = tree_order(graph)
    assert ranks is not None
    assert sorted(ranks.values()) == list(range(len(graph)))
    assert _subtrees_are_contiguous(graph, ranks)


def test_independent_chains_of_a_persist_go_in_dasks_order() -> None:
    graph = _graph(da.ones(40, chunks=1) * 2 + 1)
    assert tree_order(graph) == order(graph)


def test_graphs_where_a_key_feeds_two_tasks_take_dasks_order() -> None:
    graph = {
        "x": Task("x", f, 1),
        "y": Task("y", f, TaskRef("x")),
        "z": Task("z", f, TaskRef("x")),
        "w": Task("w", f, TaskRef("y"), TaskRef("z")),
    }
    assert tree_order(graph) is None
    assert task_order(graph) == order(graph)


def test_a_held_input_used_by_two_tasks_takes_dasks_order() -> None:
    graph = {"y": Task("y", f, TaskRef("held")), "z": Task("z", f, TaskRef("held"))}
    assert tree_order(graph) is None
    assert task_order(graph) == order(graph)


def test_a_cycle_is_left_to_dask_which_names_it() -> None:
    graph = {"a": Task("a", f, TaskRef("b")), "b": Task("b", f, TaskRef("a")), "c": Task("c", f, 1)}
    assert tree_order(graph) is None
    with pytest.raises(RuntimeError, match="Cycle detected"):
        task_order(graph)


def test_a_one_task_graph_is_first() -> None:
    assert task_order({"only": Task("only", f, 1)}) == {"only": 0}
    assert task_order({}) == {}


def test_ordered_lists_a_trees_keys_in_dasks_order_each_after_its_inputs() -> None:
    graph = _graph(da.ones(50, chunks=1).sum(split_every=2))  # exact where 2 inputs each
    pairs = list(ordered(graph))
    ranks, keys = dict(pairs), [k for k, _ in pairs]
    assert ranks == order(graph)
    assert keys == sorted(graph, key=ranks.__getitem__)
    _assert_inputs_first(graph, keys)


def test_ordered_lists_any_graphs_keys_each_after_its_inputs() -> None:
    x = da.ones((20, 20), chunks=5)
    graph = _graph((x @ x.T + x).sum())  # shared inputs: not a tree, dask.order's
    assert tree_order(graph) is None
    pairs = list(ordered(graph))
    ranks, keys = dict(pairs), [k for k, _ in pairs]
    assert ranks == order(graph)
    assert sorted(keys, key=str) == sorted(graph, key=str)
    _assert_inputs_first(graph, keys)


def test_inputs_before_moves_a_key_only_past_its_inputs() -> None:
    graph = {"a": Task("a", f), "b": Task("b", f, TaskRef("a")), "c": Task("c", f),
             "d": Task("d", f, TaskRef("b"), TaskRef("held"))}
    assert inputs_before(graph, ["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    assert inputs_before(graph, ["d", "c", "b", "a"]) == ["c", "a", "b", "d"]


def _assert_inputs_first(graph: dict[Any, Any], keys: list[Any]) -> None:
    place = {k: i for i, k in enumerate(keys)}
    for k in keys:
        for d in graph[k].dependencies:
            assert place[d] < place[k], (d, k)


def test_a_single_task_depending_on_itself_is_a_cycle_as_in_dask() -> None:
    # dask.order names the cycle; a one-task graph skipped it (and then waited forever).
    graph = convert_legacy_graph({"a": (f, "a", 1)})
    with pytest.raises(RuntimeError, match="Cycle detected"):
        task_order(graph)
    with pytest.raises(RuntimeError, match="Cycle detected"):
        list(ordered(graph))
    with pytest.raises(RuntimeError, match="Cycle detected"):
        order(graph)  # (what dask says)


class _CountsLookups(dict):  # type: ignore[type-arg]
    """A graph that counts the membership tests made on it (the walk's, one per key)."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def test_a_trees_keys_come_as_walked_not_after_the_whole_walk() -> None:
    # At a million tasks the walk takes seconds: a graph's first piece goes out after
    # the subtrees' sizes, before the rest of the walk.
    graph = _CountsLookups(_graph(da.ones(400, chunks=1).sum(split_every=4)))
    pairs = ordered(graph)
    first = [next(pairs) for _ in range(5)]
    assert graph.lookups < 10  # the first keys, not the whole graph
    rest = list(pairs)
    assert graph.lookups >= len(graph)
    assert dict(first + rest) == tree_order(dict(graph))
    assert [rank for _, rank in first + rest] == list(range(len(graph)))
