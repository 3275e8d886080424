"""``shoal.span`` on the client side, with no cluster: dask's annotation shape, nesting,
ids, and the wrapper that carries it into a task."""

from __future__ import annotations

import pickle

import dask
import pytest
from dask._task_spec import Task, TaskRef

from shoal import span
from shoal.client._spans import InSpan, graph_in_span


def _read() -> object:
    return dask.get_annotations().get("span")


def test_span_nests_names_and_ids_as_dask_does():
    with pytest.raises(ValueError, match="at least one span tag"), span():
        pass
    with span("a") as outer:
        assert dask.get_annotations()["span"] == {"name": ("a",), "ids": (outer,)}
        with span("b", "c") as inner:
            got = dask.get_annotations()["span"]
            assert got["name"] == ("a", "b", "c")
            assert got["ids"][0] == outer and got["ids"][-1] == inner and len(got["ids"]) == 3
    assert "span" not in dask.get_annotations()
    with span("a") as again:
        assert again != outer  # a fresh span each time the block is entered


def test_a_wrapped_task_function_runs_in_its_span_and_pickles():
    ann = {"name": ("x",), "ids": ("1",)}
    wrapped = pickle.loads(pickle.dumps(InSpan(ann, _read)))
    assert wrapped() == ann
    assert _read() is None
    graph = {"a": Task("a", _read), "b": Task("b", len, TaskRef("a"))}
    out = graph_in_span(graph, ann)
    assert out["b"].dependencies == {"a"} and isinstance(out["b"].func, InSpan)
    assert out["a"]() == ann
    assert graph_in_span(graph, None) is graph
