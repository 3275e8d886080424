"""The graph of delayed collections read from their layers (``_delayed_graph``): the same
tasks and annotations as dask's optimisation gives, without its layer-by-layer cull."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import pytest
from dask import delayed
from dask._task_spec import Task, TaskRef, convert_legacy_graph
from dask.base import collections_to_expr
from dask.delayed import Delayed

from shoal.client._delayed_graph import delayed_graph


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def _expr(*collections: Any, optimize_graph: bool = True) -> Any:
    return collections_to_expr(list(collections), optimize_graph).optimize()


def _dasks(expr: Any) -> tuple[dict[Any, Any], dict[str, Any]]:
    return convert_legacy_graph(dict(expr.__dask_graph__())), dict(expr.__dask_annotations__())


def _ours(expr: Any) -> tuple[dict[Any, Any], dict[str, Any]]:
    read = delayed_graph(expr)
    assert read is not None
    graph, annotations = read
    return convert_legacy_graph(graph), annotations


def _tree(leaves: int) -> Any:
    level = [delayed(inc)(i) for i in range(leaves)]
    while len(level) > 1:
        pairs = [delayed(add)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = pairs + level[len(pairs) * 2:]
    return level[0]


def test_a_delayed_tree_reads_as_dask_optimizes_it() -> None:
    expr = _expr(_tree(100))
    assert _ours(expr) == _dasks(expr)


def test_several_delayed_collections_sharing_tasks_read_as_one_graph() -> None:
    a = delayed(inc)(1)
    b = delayed(add)(a, 2)
    c = delayed(add)(a, b)
    expr = _expr(b, c, delayed(inc)(7))
    graph, _ = _ours(expr)
    assert graph == _dasks(expr)[0]
    assert len(graph) == 4


def test_tasks_the_wanted_keys_do_not_need_are_culled() -> None:
    dsk = {
        "needed": Task("needed", inc, 1),
        "out": Task("out", add, TaskRef("needed"), 1),
        "unneeded": Task("unneeded", inc, TaskRef("needed")),
    }
    expr = _expr(Delayed("out", dsk))
    graph, _ = _ours(expr)
    assert set(graph) == {"needed", "out"}
    assert graph == _dasks(expr)[0]


def test_without_optimization_every_task_is_kept_as_dask_does() -> None:
    dsk = {"out": Task("out", inc, 1), "extra": Task("extra", inc, 2)}
    expr = _expr(Delayed("out", dsk), optimize_graph=False)
    graph, _ = _ours(expr)
    assert set(graph) == {"out", "extra"}
    assert graph == _dasks(expr)[0]


def test_annotations_of_the_kept_tasks_are_read_as_dask_reads_them() -> None:
    with dask.annotate(retries=3, priority=lambda key: len(key)):
        a = delayed(inc)(1, dask_key_name="short")
    b = delayed(add)(a, 1, dask_key_name="longer-name")
    with dask.annotate(workers=["w1"]):
        c = delayed(inc)(b)
    expr = _expr(c)
    _, annotations = _ours(expr)
    assert annotations == _dasks(expr)[1]
    assert annotations["retries"] == {"short": 3}
    assert annotations["priority"] == {"short": 5}
    assert annotations["workers"] == {c.key: ["w1"]}


def test_annotations_of_culled_tasks_are_left_out() -> None:
    dsk = {"out": Task("out", inc, 1), "culled": Task("culled", inc, 2)}
    with dask.annotate(retries=2):  # a plain dict's layer is made with the expression
        expr = _expr(Delayed("out", dsk))
    _, annotations = _ours(expr)
    assert annotations == {"retries": {"out": 2}} == _dasks(expr)[1]


@pytest.mark.parametrize(
    "setting", [{"optimization.fuse.delayed": True}, {"delayed_optimize": lambda dsk, keys: dsk}]
)
def test_dasks_own_path_is_taken_when_delayed_optimization_is_configured(setting: dict[str, Any]) -> None:
    with dask.config.set(setting):
        assert delayed_graph(_expr(_tree(8))) is None


def test_other_collections_take_dasks_path() -> None:
    assert delayed_graph(_expr(da.ones(10, chunks=5).sum())) is None
    assert delayed_graph(_expr(da.ones(10, chunks=5).sum(), _tree(4))) is None
    assert delayed_graph({"a": Task("a", inc, 1)}) is None


def test_a_graph_with_old_style_tuple_tasks_takes_dasks_path() -> None:
    expr = _expr(Delayed("out", {"x": 1, "out": (inc, "x")}))
    assert delayed_graph(expr) is None
