"""A fused dask task's subgraph ordered once on the client (``_subgraph``): it must give
what dask's ``_execute_subgraph`` gives, for every fused task of real array graphs."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pytest
from dask._task_spec import DataNode, Task, TaskRef, _execute_subgraph, execute_graph
from dask.base import collections_to_expr

from shoal.client._collections import _flat_call
from shoal.protocol._call import RefCall, RefCallPickles
from shoal.protocol._serialize import FunctionCache, FunctionTable, Serialized, loads
from shoal.protocol._subgraph import ordered_subgraph, run_subgraph


def _graph(collection: Any) -> dict[Any, Any]:
    expr = collections_to_expr([collection], True).optimize()
    return dict(expr.__dask_graph__())


def _results(graph: dict[Any, Any]) -> dict[Any, Any]:
    return dict(execute_graph(graph))


@pytest.mark.parametrize(
    "make",
    [
        lambda: da.ones(40, chunks=1).sum(),
        lambda: (da.arange(60, chunks=4) * 2 + 1).mean(),
        lambda: da.ones((6, 6), chunks=2).T.dot(da.arange(6, chunks=2)),
    ],
    ids=["ones-sum", "elementwise-mean", "transpose-dot"],
)
def test_templated_fused_tasks_give_what_dask_gives(make: Any) -> None:
    graph = _graph(make())
    values = _results(graph)
    cache = FunctionCache()
    pickles = RefCallPickles(cache)
    fused = 0
    for key, task in graph.items():
        flat = _flat_call(task)
        if flat is None or flat[0] is not _execute_subgraph:
            continue
        fused += 1
        made = pickles.templated(*flat)
        assert made is not None
        table = FunctionTable()
        table.add_blobs({fid: cache.blobs[fid] for fid in made[1]})
        payload = loads(Serialized([bytes(f) for f in made[0].frames]), table)
        assert type(payload) is RefCall
        assert payload.func is run_subgraph
        inputs = {d: values[d] for d in task.dependencies}
        np.testing.assert_array_equal(payload(inputs), values[key])
    assert fused


def record(*args: Any) -> tuple[Any, ...]:
    return args


def test_the_plan_runs_in_dasks_order_and_drops_what_is_used_up() -> None:
    seen: list[str] = []

    def step(name: str, *inputs: Any) -> str:
        seen.append(name)
        return name

    inner = {
        "a": Task("a", step, "a", TaskRef("x")),
        "b": Task("b", step, "b", TaskRef("a")),
        "c": Task("c", step, "c", TaskRef("a"), TaskRef("b")),
    }
    ordered = ordered_subgraph(_execute_subgraph, (inner, "c", ("x",), None))
    assert ordered is not None
    func, args = ordered
    plan = args[0]
    assert [k for k, _, _ in plan] == ["a", "b", "c"]
    assert dict((k, set(d)) for k, _, d in plan) == {"a": {"x"}, "b": set(), "c": {"a", "b"}}
    assert func(*args[:3], "input") == "c" == _execute_subgraph(inner, "c", ("x",), "input")
    assert seen == ["a", "b", "c"] * 2


@pytest.mark.parametrize(
    "func, args",
    [
        (record, ({}, "k", ())),  # not dask's subgraph runner
        (_execute_subgraph, ({"k": 1}, "k", ())),  # not task nodes
        (_execute_subgraph, ({"k": DataNode("k", 1)}, "missing", ())),  # no such output
        (_execute_subgraph, ([], "k", ())),
    ],
    ids=["other-function", "not-nodes", "no-output", "not-a-dict"],
)
def test_other_calls_are_not_planned(func: Any, args: tuple[Any, ...]) -> None:
    assert ordered_subgraph(func, args) is None

