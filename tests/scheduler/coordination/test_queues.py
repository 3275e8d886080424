"""Queue state: order, maxsize, batches, deadlines, futures kept alive while queued."""

from __future__ import annotations

from shoal.scheduler.coordination import CoordinationState
from shoal.scheduler.coordination._events import (
    HolderLeft,
    KeysReceived,
    QueueCreate,
    QueueGet,
    QueuePut,
    QueueRelease,
    QueueSize,
    Tick,
)

from ._helpers import failures, holds, replies, wakes


def put(holder: str, rid: int, value: object, *, deadline: float | None = None,
        now: float = 0.0, name: str = "q") -> QueuePut:
    return QueuePut(holder, rid, name, ("data", value), deadline, now)


def put_future(holder: str, rid: int, key: str, name: str = "q") -> QueuePut:
    return QueuePut(holder, rid, name, ("future", key), None, 0.0)


def get(holder: str, rid: int, *, batch: int = 0, deadline: float | None = None,
        now: float = 0.0, name: str = "q") -> QueueGet:
    return QueueGet(holder, rid, name, batch, deadline, now)


def size(coord: CoordinationState, name: str = "q") -> int:
    return replies(coord.handle(QueueSize("z", 0, name)))[("z", 0)]


def test_items_come_out_in_order(coord: CoordinationState) -> None:
    coord.handle(put("a", 1, 1), put("a", 2, 2))
    assert size(coord) == 2
    assert replies(coord.handle(get("b", 1))) == {("b", 1): ("data", 1)}
    assert replies(coord.handle(get("b", 2))) == {("b", 2): ("data", 2)}
    assert size(coord) == 0


def test_getter_waits_for_the_next_put(coord: CoordinationState) -> None:
    assert replies(coord.handle(get("b", 1))) == {}
    out = coord.handle(put("a", 1, "x"))
    assert replies(out) == {("a", 1): None, ("b", 1): ("data", "x")}


def test_get_past_its_deadline_is_a_timeout(coord: CoordinationState) -> None:
    out = coord.handle(get("b", 1, deadline=5.0, now=1.0))
    assert wakes(out) == [5.0]
    assert failures(coord.handle(Tick(5.0))) == {("b", 1): "TimeoutError"}
    # the item put afterwards stays for the next getter
    coord.handle(put("a", 1, "x"))
    assert size(coord) == 1


def test_get_with_zero_timeout_on_empty_queue_fails_at_once(coord: CoordinationState) -> None:
    assert failures(coord.handle(get("b", 1, deadline=1.0, now=1.0))) == {("b", 1): "TimeoutError"}


def test_batch_true_takes_everything_without_waiting(coord: CoordinationState) -> None:
    assert replies(coord.handle(get("b", 1, batch=-1))) == {("b", 1): []}
    coord.handle(put("a", 1, 1), put("a", 2, 2), put("a", 3, 3))
    assert replies(coord.handle(get("b", 2, batch=-1))) == {
        ("b", 2): [("data", 1), ("data", 2), ("data", 3)]}


def test_batch_n_waits_for_n_items(coord: CoordinationState) -> None:
    coord.handle(put("a", 1, 1))
    assert replies(coord.handle(get("b", 1, batch=3))) == {}
    coord.handle(put("a", 2, 2))
    out = coord.handle(put("a", 3, 3))
    assert replies(out)[("b", 1)] == [("data", 1), ("data", 2), ("data", 3)]


def test_half_a_batch_goes_back_when_its_getter_leaves(coord: CoordinationState) -> None:
    coord.handle(put("a", 1, 1), get("b", 1, batch=3), put("a", 2, 2))
    coord.handle(HolderLeft("b", now=1.0))
    assert replies(coord.handle(get("c", 1, batch=-1))) == {("c", 1): [("data", 1), ("data", 2)]}


def test_full_queue_makes_put_wait(coord: CoordinationState) -> None:
    coord.handle(QueueCreate("a", 0, "q", 1), put("a", 1, 1))
    assert replies(coord.handle(put("a", 2, 2))) == {}
    out = coord.handle(get("b", 1))
    assert replies(out) == {("b", 1): ("data", 1), ("a", 2): None}
    assert size(coord) == 1


def test_put_to_a_full_queue_times_out(coord: CoordinationState) -> None:
    coord.handle(QueueCreate("a", 0, "q", 1), put("a", 1, 1))
    coord.handle(put("a", 2, 2, deadline=3.0, now=1.0))
    assert failures(coord.handle(Tick(3.0))) == {("a", 2): "TimeoutError"}
    assert size(coord) == 1


def test_first_create_sets_maxsize(coord: CoordinationState) -> None:
    out = coord.handle(QueueCreate("a", 1, "q", 2), QueueCreate("b", 1, "q", 0))
    assert replies(out) == {("a", 1): 2, ("b", 1): 2}


def test_queued_future_is_held_by_the_queue_until_the_getter_has_it(
        coord: CoordinationState) -> None:
    out = coord.handle(put_future("a", 1, "k"))
    assert holds(out) == [("hold", "queue:q", ["k"])]
    out = coord.handle(get("b", 1))
    assert replies(out) == {("b", 1): ("future", "k")}
    assert holds(out) == []  # b may still send a release of an older future of k
    out = coord.handle(KeysReceived("b", 1))
    # the getter's hold comes before the queue lets go, so the key is never unheld
    assert holds(out) == [("hold", "b", ["k"]), ("drop", "queue:q", ["k"])]


def test_getter_that_leaves_before_receiving_lets_the_key_go(coord: CoordinationState) -> None:
    coord.handle(put_future("a", 1, "k"), get("b", 1))
    assert holds(coord.handle(HolderLeft("b", now=1.0))) == [("drop", "queue:q", ["k"])]


def test_same_future_queued_twice_is_held_until_the_last_is_taken(coord: CoordinationState) -> None:
    out = coord.handle(put_future("a", 1, "k"), put_future("a", 2, "k"))
    assert holds(out) == [("hold", "queue:q", ["k"])]
    assert holds(coord.handle(get("b", 1), KeysReceived("b", 1))) == [("hold", "b", ["k"])]
    assert holds(coord.handle(get("b", 2), KeysReceived("b", 2))) == [
        ("hold", "b", ["k"]), ("drop", "queue:q", ["k"])]


def test_getter_that_leaves_gets_nothing(coord: CoordinationState) -> None:
    coord.handle(get("b", 1), HolderLeft("b", now=0.0))
    out = coord.handle(put("a", 1, 1))
    assert replies(out) == {("a", 1): None}
    assert size(coord) == 1


def test_queue_is_forgotten_when_every_creator_has_released_it(coord: CoordinationState) -> None:
    coord.handle(QueueCreate("a", 1, "q", 0), QueueCreate("b", 1, "q", 0), put("a", 2, 1))
    coord.handle(QueueRelease("a", "q"))
    assert size(coord) == 1  # b still uses it
    coord.handle(QueueRelease("b", "q"))
    assert coord.queues.queues == {}


def test_released_queue_lets_its_futures_go_and_fails_its_waiters(
        coord: CoordinationState) -> None:
    coord.handle(QueueCreate("a", 1, "q", 1), put_future("a", 2, "k"))
    coord.handle(put_future("a", 3, "j"))  # waits: the queue is full
    coord.handle(QueueCreate("b", 1, "e", 0), get("b", 2, name="e"))  # waits: empty
    out = coord.handle(QueueRelease("a", "q"), QueueRelease("b", "e"))
    assert failures(out) == {("a", 3): "RuntimeError", ("b", 2): "RuntimeError"}
    assert sorted(h for h in holds(out)) == [("drop", "queue:q", ["j"]), ("drop", "queue:q", ["k"])]
    assert coord.queues.queues == {}
    coord.validate()


def test_release_of_an_unknown_queue_does_nothing(coord: CoordinationState) -> None:
    assert coord.handle(QueueRelease("a", "nope")) == []
