"""``_flat_call`` reads a dask Task's arguments in one pass and copies them only when it
replaces one (a reference by None, a DataNode by its value): the flat call must run as the
Task does, and the Task's own arguments must be left as they were."""

from __future__ import annotations

from typing import Any

import pytest
from dask._task_spec import DataNode, Task, TaskRef

from shoal.client._collections import _flat_call
from shoal.protocol._call import RefCall


def record(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return (args, kwargs)


VALUES = {"a": 1, ("b", 2): [2]}


@pytest.mark.parametrize(
    "task",
    [
        Task("k", record, 1, "x", (2, 3)),
        Task("k", record, DataNode(None, (1,)), 5, y=6),
        Task("k", record, 1, y=DataNode(None, [7]), z=8),
        Task("k", record, TaskRef("a"), z=TaskRef(("b", 2))),
        Task("k", record, DataNode(None, 0), TaskRef("a"), DataNode(None, "v"), w=TaskRef("a"),
             u=DataNode(None, None)),
    ],
    ids=["literals-only", "data-node-positional", "data-node-keyword", "references",
         "everything-mixed"],
)
def test_a_flat_call_runs_as_its_task_and_leaves_the_task_unchanged(task: Task) -> None:
    args, kwargs = tuple(task.args), dict(task.kwargs)
    flat = _flat_call(task)
    assert flat is not None
    call = RefCall(*flat)
    assert call(VALUES) == task(VALUES)
    assert call.dependencies == task.dependencies
    assert tuple(task.args) == args and dict(task.kwargs) == kwargs
    assert task(VALUES) == call(VALUES)  # and still runs the same after


def test_references_come_positional_first_then_by_keyword() -> None:
    task = Task("k", record, TaskRef("a"), 3, k=TaskRef(("b", 2)), j=TaskRef("a"))
    _, _, _, refs = _flat_call(task)
    assert refs == ((0, "a"), ("k", ("b", 2)), ("j", "a"))


def test_task_nodes_gives_what_dask_converts_a_graph_to() -> None:
    from dask._task_spec import Alias, convert_legacy_graph

    from shoal.client._collections import task_nodes

    nodes = {"a": DataNode("a", 1), "b": Task("b", record, TaskRef("a")),
             ("c", 0): Task(("c", 0), record, TaskRef("b"), 2)}
    out = task_nodes(nodes)
    assert out == convert_legacy_graph(nodes) and out is not nodes
    out["d"] = DataNode("d", 3)
    assert "d" not in nodes  # a copy: the caller may add to it (compute's finalize task)
    for graph in (
        {**nodes, "e": Alias("e", "e"), "f": Alias("f", "a")},  # a self-alias is dropped
        {"a": 1, "b": (record, "a", 2), "c": "b", "d": [1, "a"]},  # legacy tasks and values
    ):
        got, want = task_nodes(graph), convert_legacy_graph(graph)
        values = {"a": 1, "b": "B", "e": "E", "f": "F"}
        assert {k: (type(v), v(values)) for k, v in got.items()} == {
            k: (type(v), v(values)) for k, v in want.items()}
