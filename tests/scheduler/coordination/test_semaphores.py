"""Semaphore and Lock state: leases, waiters in order, deadlines, lease timeouts, holders
that go away."""

from __future__ import annotations

from shoal.scheduler.coordination import CoordinationState
from shoal.scheduler.coordination._events import (
    HolderLeft,
    SemaphoreAcquire,
    SemaphoreClose,
    SemaphoreRefresh,
    SemaphoreRelease,
    SemaphoreValue,
    Tick,
    Warn,
)

from ._helpers import failures, replies, wakes


def acquire(holder: str, rid: int, lease: str, *, name: str = "s", max_leases: int = 1,
            deadline: float | None = None, now: float = 0.0,
            lease_timeout: float | None = None) -> SemaphoreAcquire:
    return SemaphoreAcquire(holder, rid, name, max_leases, lease, lease_timeout, deadline, now)


def value(coord: CoordinationState, name: str = "s") -> int:
    return replies(coord.handle(SemaphoreValue("q", 0, name)))[("q", 0)]


def test_free_lease_is_granted_at_once(coord: CoordinationState) -> None:
    assert replies(coord.handle(acquire("a", 1, "l1"))) == {("a", 1): True}
    assert value(coord) == 1


def test_second_acquire_waits_until_release(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"))
    assert replies(coord.handle(acquire("b", 1, "l2"))) == {}
    assert replies(coord.handle(SemaphoreRelease("a", "s", "l1", now=1.0))) == {("b", 1): True}
    assert value(coord) == 1


def test_waiters_are_served_in_arrival_order(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"))
    coord.handle(acquire("b", 1, "l2"), acquire("c", 1, "l3"))
    out = coord.handle(SemaphoreRelease("a", "s", "l1", now=1.0))
    assert replies(out) == {("b", 1): True}
    out = coord.handle(SemaphoreRelease("b", "s", "l2", now=2.0))
    assert replies(out) == {("c", 1): True}


def test_max_leases_admits_that_many(coord: CoordinationState) -> None:
    out = coord.handle(*(acquire(h, 1, f"l{h}", max_leases=2) for h in "abc"))
    assert replies(out) == {("a", 1): True, ("b", 1): True}
    assert value(coord) == 2


def test_zero_timeout_answers_false_without_waiting(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"))
    out = coord.handle(acquire("b", 1, "l2", deadline=5.0, now=5.0))
    assert replies(out) == {("b", 1): False}
    assert not coord.semaphores.semaphores["s"].waiters


def test_waiter_past_its_deadline_gets_false(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"))
    out = coord.handle(acquire("b", 1, "l2", deadline=3.0, now=1.0))
    assert wakes(out) == [3.0]
    assert replies(coord.handle(Tick(2.9))) == {}
    assert replies(coord.handle(Tick(3.0))) == {("b", 1): False}
    # the lease stays with a; a later release does not hand it to the gone waiter
    assert replies(coord.handle(SemaphoreRelease("a", "s", "l1", now=4.0))) == {}
    assert value(coord) == 0


def test_holder_that_leaves_returns_its_leases_to_waiters(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", max_leases=2), acquire("a", 2, "l2", max_leases=2))
    coord.handle(acquire("b", 1, "l3", max_leases=2))
    out = coord.handle(HolderLeft("a", now=1.0))
    assert replies(out) == {("b", 1): True}
    assert value(coord) == 1


def test_waiter_that_leaves_is_forgotten(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"), acquire("b", 1, "l2"), acquire("c", 1, "l3"))
    coord.handle(HolderLeft("b", now=1.0))
    out = coord.handle(SemaphoreRelease("a", "s", "l1", now=2.0))
    assert replies(out) == {("c", 1): True}


def test_lease_not_refreshed_within_timeout_expires(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", lease_timeout=30.0, now=0.0))
    coord.handle(acquire("b", 1, "l2", lease_timeout=30.0, now=1.0))
    assert replies(coord.handle(Tick(30.0))) == {}
    out = coord.handle(Tick(30.5))
    assert replies(out) == {("b", 1): True}
    assert any(isinstance(c, Warn) and "timed out" in c.message for c in out)


def test_refreshed_lease_does_not_expire(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", lease_timeout=30.0, now=0.0))
    coord.handle(SemaphoreRefresh("a", "s", ["l1"], now=20.0))
    coord.handle(Tick(45.0))
    assert value(coord) == 1


def test_refreshing_an_expired_lease_warns(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", lease_timeout=1.0, now=0.0), Tick(5.0))
    out = coord.handle(SemaphoreRefresh("a", "s", ["l1"], now=6.0))
    assert any(isinstance(c, Warn) and "overbooked" in c.message for c in out)


def test_without_lease_timeout_leases_never_expire(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", lease_timeout=None), Tick(1e9))
    assert value(coord) == 1


def test_inconsistent_max_leases_is_a_value_error(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", max_leases=2))
    assert failures(coord.handle(acquire("b", 1, "l2", max_leases=3))) == {("b", 1): "ValueError"}


def test_same_lease_acquired_twice_is_idempotent(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"))
    assert replies(coord.handle(acquire("a", 2, "l1"))) == {("a", 2): True}
    assert value(coord) == 1


def test_releasing_an_unknown_lease_warns_and_changes_nothing(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"))
    out = coord.handle(SemaphoreRelease("b", "s", "nope", now=1.0))
    assert any(isinstance(c, Warn) for c in out)
    assert value(coord) == 1


def test_unknown_semaphore_has_value_zero(coord: CoordinationState) -> None:
    assert value(coord, "never") == 0


def test_close_fails_the_waiters_and_forgets_the_semaphore(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1"), acquire("b", 1, "l2"))
    out = coord.handle(SemaphoreClose("a", 2, "s"))
    assert failures(out) == {("b", 1): "RuntimeError"}
    assert replies(out) == {("a", 2): None}
    assert value(coord) == 0


def test_semaphore_nobody_holds_or_waits_for_is_forgotten(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, "l1", name="x"), acquire("b", 1, "l2", name="x"))
    coord.handle(SemaphoreRelease("a", "x", "l1", now=1.0))
    assert "x" in coord.semaphores.semaphores  # b holds it now
    coord.handle(SemaphoreRelease("b", "x", "l2", now=2.0))
    coord.handle(acquire("c", 1, "l3", name="y"), HolderLeft("c", now=3.0))
    coord.handle(acquire("d", 1, "l4", name="z", lease_timeout=1.0, now=4.0), Tick(6.0))
    assert coord.semaphores.semaphores == {}
    assert value(coord, "x") == 0
    assert replies(coord.handle(acquire("e", 1, "l5", name="x", max_leases=3))) == {("e", 1): True}
