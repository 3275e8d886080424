"""Variable state: set/get/delete, waiting for a first value, deadlines, futures held."""

from __future__ import annotations

from shoal.scheduler.coordination import CoordinationState
from shoal.scheduler.coordination._events import (
    HolderLeft,
    KeysReceived,
    Tick,
    VariableDelete,
    VariableGet,
    VariableSet,
)

from ._helpers import failures, holds, replies, wakes


def vset(holder: str, rid: int, item: tuple[str, object], name: str = "v") -> VariableSet:
    return VariableSet(holder, rid, name, item)


def vget(holder: str, rid: int, *, deadline: float | None = None, now: float = 0.0,
         name: str = "v") -> VariableGet:
    return VariableGet(holder, rid, name, deadline, now)


def test_get_returns_the_last_value_set(coord: CoordinationState) -> None:
    coord.handle(vset("a", 1, ("data", 1)), vset("a", 2, ("data", 2)))
    assert replies(coord.handle(vget("b", 1))) == {("b", 1): ("data", 2)}


def test_get_waits_for_a_first_value(coord: CoordinationState) -> None:
    assert replies(coord.handle(vget("b", 1), vget("c", 1))) == {}
    out = coord.handle(vset("a", 1, ("data", 7)))
    assert replies(out) == {("a", 1): None, ("b", 1): ("data", 7), ("c", 1): ("data", 7)}


def test_get_past_its_deadline_is_a_timeout(coord: CoordinationState) -> None:
    assert wakes(coord.handle(vget("b", 1, deadline=2.0))) == [2.0]
    assert failures(coord.handle(Tick(2.5))) == {("b", 1): "TimeoutError"}


def test_get_with_zero_timeout_of_unset_variable_fails_at_once(coord: CoordinationState) -> None:
    assert failures(coord.handle(vget("b", 1, deadline=0.0))) == {("b", 1): "TimeoutError"}


def test_delete_forgets_the_value(coord: CoordinationState) -> None:
    coord.handle(vset("a", 1, ("data", 1)), VariableDelete("a", "v"))
    assert failures(coord.handle(vget("b", 1, deadline=0.0))) == {("b", 1): "TimeoutError"}


def test_future_value_is_held_until_replaced(coord: CoordinationState) -> None:
    assert holds(coord.handle(vset("a", 1, ("future", "k1")))) == [("hold", "variable:v", ["k1"])]
    assert holds(coord.handle(vset("a", 2, ("future", "k1")))) == []
    assert holds(coord.handle(vset("a", 3, ("future", "k2")))) == [
        ("hold", "variable:v", ["k2"]), ("drop", "variable:v", ["k1"])]
    assert holds(coord.handle(vset("a", 4, ("data", 0)))) == [("drop", "variable:v", ["k2"])]


def test_future_value_is_let_go_on_delete(coord: CoordinationState) -> None:
    coord.handle(vset("a", 1, ("future", "k")))
    assert holds(coord.handle(VariableDelete("a", "v"))) == [("drop", "variable:v", ["k"])]


def test_getter_of_a_future_takes_its_own_hold_once_it_has_it(coord: CoordinationState) -> None:
    coord.handle(vset("a", 1, ("future", "k")))
    out = coord.handle(vget("b", 1))
    assert replies(out) == {("b", 1): ("future", "k")}
    assert holds(out) == []
    assert holds(coord.handle(KeysReceived("b", 1))) == [("hold", "b", ["k"])]


def test_deleted_future_value_stays_held_until_the_getter_has_it(coord: CoordinationState) -> None:
    coord.handle(vset("a", 1, ("future", "k")), vget("b", 1))
    assert holds(coord.handle(VariableDelete("a", "v"))) == []
    assert holds(coord.handle(KeysReceived("b", 1))) == [
        ("hold", "b", ["k"]), ("drop", "variable:v", ["k"])]


def test_getter_that_leaves_is_forgotten(coord: CoordinationState) -> None:
    coord.handle(vget("b", 1), HolderLeft("b", now=0.0))
    assert replies(coord.handle(vset("a", 1, ("data", 1)))) == {("a", 1): None}
