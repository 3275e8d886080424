"""The check that a graph's inputs from outside it are still on the cluster
(``_collections._check_external_inputs``): only keys a closed client held can fail it."""

from __future__ import annotations

from typing import Any

import pytest
from dask._task_spec import Task, TaskRef

from shoal.client import _collections, _core


def f(*args: Any) -> int:
    return 0


class _Client:
    def __init__(self, held: set[Any]) -> None:
        self.held = held

    def _held(self, key: Any) -> bool:
        return key in self.held


class _NoWalk(dict):  # type: ignore[type-arg]
    """A graph that refuses to be walked (its tasks read one by one)."""

    def values(self) -> Any:
        raise AssertionError("the graph was walked")


@pytest.fixture
def orphans(monkeypatch: pytest.MonkeyPatch) -> Any:
    noted: Any = type(_core._orphaned)()
    monkeypatch.setattr(_core, "_orphaned", noted)
    return noted


def _graph() -> dict[Any, Task]:
    graph = {"a": Task("a", f, TaskRef("outside")), "b": Task("b", f, TaskRef("a"))}
    graph.update({f"c{i}": Task(f"c{i}", f, TaskRef("b")) for i in range(5)})
    return graph


def test_an_input_a_closed_client_held_is_named(orphans: Any) -> None:
    _core.orphan_keys(["outside"])
    with pytest.raises(RuntimeError, match="'outside', which was held by a Client that has been closed"):
        _collections._check_external_inputs(_Client(set()), _graph())  # type: ignore[arg-type]


def test_an_input_held_again_or_in_the_graph_passes(orphans: Any) -> None:
    _core.orphan_keys(["outside", "a"])
    _collections._check_external_inputs(_Client({"outside"}), _graph())  # type: ignore[arg-type]


def test_the_graph_is_not_walked_when_no_input_can_fail(orphans: Any) -> None:
    # a million-task graph: no pass over it before its first piece, unless a key a
    # closed client held may be among its inputs
    _collections._check_external_inputs(_Client(set()), _NoWalk(_graph()))  # type: ignore[arg-type]
    _core.orphan_keys(["a", "held-again"])  # in the graph, or held now: cannot fail
    _collections._check_external_inputs(_Client({"held-again"}), _NoWalk(_graph()))  # type: ignore[arg-type]
    _core.orphan_keys(["outside"])
    with pytest.raises(AssertionError, match="walked"):
        _collections._check_external_inputs(_Client(set()), _NoWalk(_graph()))  # type: ignore[arg-type]


def test_more_orphans_than_tasks_are_looked_up_per_input(orphans: Any) -> None:
    _core.orphan_keys([f"other-{i}" for i in range(10)] + ["outside"])
    with pytest.raises(RuntimeError, match="'outside'"):
        _collections._check_external_inputs(_Client(set()), _graph())  # type: ignore[arg-type]
    _collections._check_external_inputs(_Client({"outside"}), _graph())  # type: ignore[arg-type]
