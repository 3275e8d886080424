"""The scheduler's metadata store (``client.set_metadata`` / ``get_metadata``), pure, and the
scheduler's word that a watched task was forgotten (its metadata goes then, as in dask)."""

from __future__ import annotations

import pytest

from shoal.scheduler._events import ClusterReset, ForgetWatched, WatchedKeysForgotten
from shoal.scheduler._metadata import Metadata

from ._sim import of, row


def test_a_path_sets_nested_dicts_made_on_demand() -> None:
    m = Metadata()
    m.set(["a", "b", "c"], 123)
    assert m.get(["a"]) == (True, {"b": {"c": 123}})
    assert m.get(["a", "b", "c"]) == (True, 123)
    m.set(["a", "w"], 4)
    assert m.get(["a"]) == (True, {"b": {"c": 123}, "w": 4})
    m.validate()


def test_missing_paths_are_reported_not_raised() -> None:
    m = Metadata()
    m.set(["x"], 1)
    assert m.get(["y"]) == (False, None)
    assert m.get(["x", "below-a-number"]) == (False, None)


def test_tuple_keys_are_single_keys() -> None:
    m = Metadata()
    m.set([("x", 1)], "v")
    assert m.get([("x", 1)]) == (True, "v")
    assert m.get(["x"]) == (False, None)


def test_setting_below_a_value_that_is_not_a_dict_replaces_it_as_dask_documents() -> None:
    # dask's Client.set_metadata docstring: set 'x' to 123, then ['x', 'y'] to 123, and
    # get_metadata('x') is {'y': 123}; then ['x', 'w', 'z'] adds {'w': {'z': 456}}.
    m = Metadata()
    m.set(["x"], 123)
    m.set(["x", "y"], 123)
    assert m.get(["x"]) == (True, {"y": 123})
    m.set(["x", "w", "z"], 456)
    assert m.get(["x"]) == (True, {"y": 123, "w": {"z": 456}})
    assert m.get(["x", "w"]) == (True, {"z": 456})
    m.set(["l"], [10, 20])
    m.set(["l", 1], 21)  # a list on the way is indexed, as in dask
    assert m.get(["l"]) == (True, [10, 21])
    with pytest.raises(ValueError, match=r"\['l'\] is a list"):
        m.set(["l", "k", "z"], 2)
    with pytest.raises(ValueError, match="at least one key"):
        m.set([], 2)
    m.validate()


def test_forgetting_drops_only_the_named_top_level_entries() -> None:
    m = Metadata()
    m.set(["task-1", "a"], 1)
    m.set(["plain"], 2)
    m.forget(["task-1", "never-set"])
    assert m.get(["task-1"]) == (False, None)
    assert m.get(["plain"]) == (True, 2)
    m.validate()


def test_the_scheduler_says_when_a_watched_task_is_forgotten(state, sim) -> None:
    state.handle(ForgetWatched(["x", "plain"]))
    sim.join("w1", nthreads=2)
    sim.submit([row("x"), row("y")])
    sim.finish("x")
    sim.finish("y")
    out = sim.release("x", "y")
    assert [c.keys for c in of(out, WatchedKeysForgotten)] == [["x"]]  # y is not watched
    # A second task of the same key, once forgotten, is not reported unless watched again.
    sim.submit([row("x")])
    out = sim.release("x")
    assert "x" not in state.tasks
    assert of(out, WatchedKeysForgotten) == []


def test_a_cluster_reset_forgets_watched_tasks_too(state, sim) -> None:
    state.handle(ForgetWatched(["x", "plain"]))
    sim.join("w1")
    sim.submit([row("x")])
    out = state.handle(ClusterReset("restart"))
    assert [c.keys for c in of(out, WatchedKeysForgotten)] == [["x"]]
