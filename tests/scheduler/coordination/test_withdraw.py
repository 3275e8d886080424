"""A caller that stops waiting (an awaiting coroutine cancelled): ``Withdraw`` takes its
request out of whatever it waits in, and ``QueueReturn`` puts back at the front what a
queue gave to a getter that had already gone."""

from __future__ import annotations

from shoal.scheduler.coordination import CoordinationState
from shoal.scheduler.coordination._events import (
    EventSet,
    EventWait,
    KeysReceived,
    MultiLockAcquire,
    MultiLockRelease,
    QueueGet,
    QueuePut,
    QueueReturn,
    QueueSize,
    SemaphoreAcquire,
    SemaphoreRelease,
    VariableGet,
    VariableSet,
    Withdraw,
)

from ._helpers import failures, holds, replies


def get(holder: str, rid: int, batch: int = 0) -> QueueGet:
    return QueueGet(holder, rid, "q", batch, None, 0.0)


def put(holder: str, rid: int, value: object, deadline: float | None = None) -> QueuePut:
    return QueuePut(holder, rid, "q", ("data", value), deadline, 0.0)


def size(coord: CoordinationState) -> int:
    return replies(coord.handle(QueueSize("z", 0, "q")))[("z", 0)]


def test_a_withdrawn_getter_is_answered_cancelled_and_the_next_put_goes_to_the_next(
        coord: CoordinationState) -> None:
    coord.handle(get("a", 1), get("b", 1))
    assert failures(coord.handle(Withdraw("a", 1))) == {("a", 1): "CancelledError"}
    assert replies(coord.handle(put("c", 1, "x"))) == {("c", 1): None, ("b", 1): ("data", "x")}


def test_a_withdrawn_batch_getter_puts_back_what_it_had_in_order(coord: CoordinationState) -> None:
    coord.handle(get("a", 1, batch=3), put("c", 1, 1), put("c", 2, 2))
    coord.handle(Withdraw("a", 1))
    assert size(coord) == 2
    assert replies(coord.handle(get("b", 1, batch=2))) == {("b", 1): [("data", 1), ("data", 2)]}


def test_withdrawing_a_request_already_answered_changes_nothing(coord: CoordinationState) -> None:
    coord.handle(put("c", 1, "x"), get("a", 1))
    assert coord.handle(Withdraw("a", 1)) == []
    assert coord.handle(Withdraw("a", 99)) == []
    assert size(coord) == 0


def test_a_withdrawn_putter_of_a_full_queue_leaves_its_item_out(coord: CoordinationState) -> None:
    from shoal.scheduler.coordination._events import QueueCreate

    coord.handle(QueueCreate("c", 1, "q", 1), put("c", 2, "in"), put("c", 3, "waits"))
    assert failures(coord.handle(Withdraw("c", 3))) == {("c", 3): "CancelledError"}
    assert replies(coord.handle(get("a", 1))) == {("a", 1): ("data", "in")}
    assert size(coord) == 0


def test_items_returned_go_back_to_the_front_and_to_a_waiting_getter(
        coord: CoordinationState) -> None:
    coord.handle(put("c", 1, 1), put("c", 2, 2), get("a", 1))
    coord.handle(QueueReturn("a", "q", [("data", 1)]))
    assert replies(coord.handle(get("b", 1))) == {("b", 1): ("data", 1)}
    coord.handle(get("b", 2))  # takes 2
    coord.handle(get("b", 3))  # waits
    assert replies(coord.handle(QueueReturn("a", "q", [("data", 1)]))) == {("b", 3): ("data", 1)}


def test_a_returned_future_is_held_by_the_queue_again(coord: CoordinationState) -> None:
    coord.handle(QueuePut("c", 1, "q", ("future", "k"), None, 0.0))
    coord.handle(get("a", 1))
    coord.handle(KeysReceived("a", 1))  # the getter made its Future: it holds the key now
    out = coord.handle(QueueReturn("a", "q", [("future", "k")]))
    assert holds(out) == [("hold", "queue:q", ["k"])]
    assert replies(coord.handle(get("b", 1))) == {("b", 1): ("future", "k")}


def test_items_returned_to_a_queue_that_is_gone_are_dropped(coord: CoordinationState) -> None:
    assert coord.handle(QueueReturn("a", "gone", [("data", 1), ("future", "k")])) == []
    assert "gone" not in coord.queues.queues


def test_a_withdrawn_lock_waiter_never_gets_the_lease(coord: CoordinationState) -> None:
    def acquire(holder: str, rid: int, lease: str) -> SemaphoreAcquire:
        return SemaphoreAcquire(holder, rid, "s", 1, lease, None, None, 0.0)

    coord.handle(acquire("a", 1, "l1"), acquire("b", 1, "l2"), acquire("c", 1, "l3"))
    assert failures(coord.handle(Withdraw("b", 1))) == {("b", 1): "CancelledError"}
    assert replies(coord.handle(SemaphoreRelease("a", "s", "l1", 1.0))) == {("c", 1): True}


def test_a_withdrawn_multilock_request_leaves_its_lines(coord: CoordinationState) -> None:
    coord.handle(MultiLockAcquire("a", 1, ["x"], "A", 1, None, 0.0),
                 MultiLockAcquire("b", 1, ["x", "y"], "B", 2, None, 0.0),
                 MultiLockAcquire("c", 1, ["y"], "C", 1, None, 0.0))
    assert failures(coord.handle(Withdraw("b", 1))) == {("b", 1): "CancelledError"}
    assert "B" not in coord.multilocks.requests
    assert replies(coord.handle(MultiLockRelease("a", "A"))) == {}
    assert coord.multilocks.locked_by("C")


def test_withdrawn_event_and_variable_waiters_are_gone(coord: CoordinationState) -> None:
    coord.handle(EventWait("a", 1, "e", None, 0.0), VariableGet("a", 2, "v", None, 0.0))
    assert failures(coord.handle(Withdraw("a", 1), Withdraw("a", 2))) == {
        ("a", 1): "CancelledError", ("a", 2): "CancelledError"}
    assert replies(coord.handle(EventSet("b", 1, "e"))) == {("b", 1): None}
    assert replies(coord.handle(VariableSet("b", 2, "v", ("data", 1)))) == {("b", 2): None}


def test_withdrawing_a_granted_multilock_request_releases_its_locks(
        coord: CoordinationState) -> None:
    """Granted just before the withdrawal came: the caller never took the grant, and the
    same MultiLock (same lock id) may ask again right after; no release of the client's
    can tell that grant from the next one, so the withdrawal gives it back."""
    coord.handle(MultiLockAcquire("a", 1, ["x", "y"], "A", 2, None, 0.0),
                 MultiLockAcquire("b", 1, ["x"], "B", 1, None, 0.0))
    out = coord.handle(Withdraw("a", 1))
    assert failures(out) == {}  # answered already: no second answer
    assert replies(out) == {("b", 1): True}
    assert "A" not in coord.multilocks.requests
    assert replies(coord.handle(MultiLockAcquire("a", 2, ["y"], "A", 1, None, 0.0))) == {
        ("a", 2): True}
    assert coord.handle(Withdraw("a", 1)) == []  # an older request: not this grant
    assert coord.multilocks.locked_by("A")
