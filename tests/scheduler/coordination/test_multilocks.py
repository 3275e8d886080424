"""MultiLock state: all-or-nothing, first come first served, no deadlock, deadlines and
holders that go away."""

from __future__ import annotations

import random

from shoal.scheduler.coordination import CoordinationState
from shoal.scheduler.coordination._events import (
    Fail,
    HolderLeft,
    MultiLockAcquire,
    MultiLockRelease,
    Reply,
    Tick,
)

from ._helpers import failures, replies, wakes


def acquire(holder: str, rid: int, names: list[str], *, lock_id: str | None = None,
            num_locks: int | None = None, deadline: float | None = None,
            now: float = 0.0) -> MultiLockAcquire:
    return MultiLockAcquire(holder, rid, names, lock_id or f"{holder}{rid}",
                            num_locks or len(names), deadline, now)


def test_free_locks_are_taken_together(coord: CoordinationState) -> None:
    assert replies(coord.handle(acquire("a", 1, ["x", "y"]))) == {("a", 1): True}
    assert coord.multilocks.locked_by("a1")


def test_overlapping_request_waits_for_all_its_locks(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x"]))
    assert replies(coord.handle(acquire("b", 1, ["x", "y"]))) == {}
    # b stands first in line for y, so c (who wants only y) waits behind b
    assert replies(coord.handle(acquire("c", 1, ["y"]))) == {}
    out = coord.handle(MultiLockRelease("a", "a1"))
    assert replies(out) == {("b", 1): True}
    out = coord.handle(MultiLockRelease("b", "b1"))
    assert replies(out) == {("c", 1): True}


def test_opposite_orders_do_not_deadlock(coord: CoordinationState) -> None:
    out = coord.handle(acquire("a", 1, ["x", "y"]), acquire("b", 1, ["y", "x"]))
    assert replies(out) == {("a", 1): True}
    assert replies(coord.handle(MultiLockRelease("a", "a1"))) == {("b", 1): True}


def test_num_locks_takes_the_free_ones(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x"]))
    out = coord.handle(acquire("b", 1, ["x", "y", "z"], num_locks=2))
    assert replies(out) == {("b", 1): True}
    # b does not stand in x's line: releasing a frees x for nobody in particular
    coord.handle(MultiLockRelease("a", "a1"))
    assert replies(coord.handle(acquire("c", 1, ["x"]))) == {("c", 1): True}


def test_deadline_ends_the_wait_and_leaves_every_line(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x"]))
    out = coord.handle(acquire("b", 1, ["x", "y"], deadline=2.0))
    assert wakes(out) == [2.0]
    assert replies(coord.handle(Tick(2.0))) == {("b", 1): False}
    # y is free again
    assert replies(coord.handle(acquire("c", 1, ["y"]))) == {("c", 1): True}


def test_non_blocking_acquire_of_a_held_lock_is_false(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x"]))
    assert replies(coord.handle(acquire("b", 1, ["x", "y"], deadline=0.0))) == {("b", 1): False}
    assert replies(coord.handle(acquire("c", 1, ["y"]))) == {("c", 1): True}


def test_holder_that_leaves_releases_its_locks(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x", "y"]), acquire("b", 1, ["y"]))
    assert replies(coord.handle(HolderLeft("a", now=1.0))) == {("b", 1): True}


def test_waiter_that_leaves_gives_up_its_places(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x"]), acquire("b", 1, ["x", "y"]), acquire("c", 1, ["y"]))
    assert replies(coord.handle(HolderLeft("b", now=1.0))) == {("c", 1): True}


def test_acquiring_the_same_multilock_twice_is_an_error(coord: CoordinationState) -> None:
    coord.handle(acquire("a", 1, ["x"], lock_id="L"))
    assert failures(coord.handle(acquire("a", 2, ["x"], lock_id="L"))) == {("a", 2): "RuntimeError"}


def test_num_locks_out_of_range_is_a_value_error(coord: CoordinationState) -> None:
    assert failures(coord.handle(acquire("a", 1, ["x"], num_locks=2))) == {("a", 1): "ValueError"}


def test_random_requests_never_share_a_lock_and_all_finish(coord: CoordinationState) -> None:
    """Many holders take random subsets and release in random order: nobody holds a lock
    another holds, and every request is eventually granted (no deadlock, no starvation)."""
    rng = random.Random(1234)
    names = list("abcde")
    waiting: set[str] = set()
    granted: dict[str, set[str]] = {}
    lock_names: dict[str, set[str]] = {}
    n = 0

    def apply(cmds: list[object]) -> None:
        for c in cmds:
            assert not isinstance(c, Fail), c
            if isinstance(c, Reply) and c.value is True:
                lid = f"h{c.rid}"
                waiting.discard(lid)
                held = {x for s in granted.values() for x in s}
                assert not (lock_names[lid] & held), (lid, lock_names[lid], granted)
                granted[lid] = lock_names[lid]

    for _ in range(400):
        if granted and (rng.random() < 0.5 or n >= 120):
            lid = rng.choice(sorted(granted))
            del granted[lid]
            apply(coord.handle(MultiLockRelease("h", lid)))
        elif n < 120:
            n += 1
            want = rng.sample(names, rng.randint(1, 3))
            lock_names[f"h{n}"] = set(want)
            waiting.add(f"h{n}")
            apply(coord.handle(MultiLockAcquire("h", n, want, f"h{n}", len(want), None, 0.0)))
        coord.validate()
    while granted:
        lid = sorted(granted)[0]
        del granted[lid]
        apply(coord.handle(MultiLockRelease("h", lid)))
    assert not waiting
