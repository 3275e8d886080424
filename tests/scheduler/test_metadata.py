"""The scheduler's metadata store (``client.set_metadata`` / ``get_metadata``), pure."""

from __future__ import annotations

import pytest

from shoal.scheduler._metadata import Metadata


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


def test_setting_inside_a_value_that_is_not_a_dict_is_refused() -> None:
    m = Metadata()
    m.set(["x"], 1)
    with pytest.raises(ValueError, match=r"\['x'\] is int"):
        m.set(["x", "y"], 2)
    with pytest.raises(ValueError, match="at least one key"):
        m.set([], 2)
    assert m.get(["x"]) == (True, 1)
