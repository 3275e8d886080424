"""Event state: clear until set, waiters released by set, deadlines, holders leaving."""

from __future__ import annotations

from shoal.scheduler.coordination import CoordinationState
from shoal.scheduler.coordination._events import (
    EventClear,
    EventIsSet,
    EventSet,
    EventWait,
    HolderLeft,
    Tick,
)

from ._helpers import replies, wakes


def is_set(coord: CoordinationState, name: str = "e") -> bool:
    return bool(replies(coord.handle(EventIsSet("z", 0, name)))[("z", 0)])


def test_new_event_is_clear(coord: CoordinationState) -> None:
    assert not is_set(coord)


def test_set_releases_every_waiter(coord: CoordinationState) -> None:
    coord.handle(EventWait("a", 1, "e", None, 0.0), EventWait("b", 1, "e", None, 0.0))
    out = coord.handle(EventSet("c", 1, "e"))
    assert replies(out) == {("a", 1): True, ("b", 1): True, ("c", 1): None}
    assert is_set(coord)


def test_wait_on_a_set_event_returns_at_once(coord: CoordinationState) -> None:
    coord.handle(EventSet("c", 1, "e"))
    assert replies(coord.handle(EventWait("a", 1, "e", None, 0.0))) == {("a", 1): True}


def test_clear_makes_waiters_wait_again(coord: CoordinationState) -> None:
    coord.handle(EventSet("c", 1, "e"), EventClear("c", 2, "e"))
    assert not is_set(coord)
    assert replies(coord.handle(EventWait("a", 1, "e", None, 0.0))) == {}


def test_wait_past_its_deadline_is_false(coord: CoordinationState) -> None:
    assert wakes(coord.handle(EventWait("a", 1, "e", 3.0, 1.0))) == [3.0]
    assert replies(coord.handle(Tick(3.0))) == {("a", 1): False}


def test_wait_with_zero_timeout_on_clear_event_is_false(coord: CoordinationState) -> None:
    assert replies(coord.handle(EventWait("a", 1, "e", 1.0, 1.0))) == {("a", 1): False}


def test_waiter_that_leaves_is_forgotten(coord: CoordinationState) -> None:
    coord.handle(EventWait("a", 1, "e", None, 0.0), HolderLeft("a", now=0.0))
    assert replies(coord.handle(EventSet("c", 1, "e"))) == {("c", 1): None}
