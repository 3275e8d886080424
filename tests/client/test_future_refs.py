"""How the client counts the Futures holding each key (no processes: the client's outbox
half driven directly, with its loop wake-ups stubbed)."""

from __future__ import annotations

import collections
import gc
import threading
import tracemalloc
from typing import Any

from shoal.client._future import Future
from shoal.client._outbox import Outbox
from shoal.protocol._messages import ReleaseKeys, UpdateGraph


class _Client(Outbox):
    """The state ``Outbox`` works on, without a connection or a loop."""

    def __init__(self) -> None:
        self.status = "running"
        self._lock = threading.Lock()
        self._states = {}
        self._outbox = collections.deque()
        self._dead = collections.deque()
        self._drain_scheduled = False
        self.sent: list[Any] = []
        self._conn = self  # type: ignore[assignment]  # hold / send_many / flush below
        self._release_timer = None
        self.arms = 0

    def _schedule_drain(self) -> None:
        self._drain_scheduled = True

    def _arm_release(self) -> None:
        self.arms += 1  # left unarmed: every drain here is as the timer's

    def _arm(self) -> None:
        """As after a release: the delay runs (no loop here to fire it)."""
        self._release_timer = object()  # type: ignore[assignment]

    def hold(self) -> None:
        pass

    def send_many(self, msgs: list[Any]) -> None:
        self.sent.extend(msgs)

    def flush(self) -> None:
        pass


def test_futures_of_a_key_share_one_state_that_counts_them() -> None:
    client = _Client()
    a = Future("x", client)  # type: ignore[arg-type]
    b = Future("x", client)  # type: ignore[arg-type]
    assert a._state is b._state
    assert a._state.refs == 2
    assert client._held("x") and not client._held("y")
    assert client._held_keys() == ["x"]


def test_the_key_is_released_when_its_last_future_dies() -> None:
    client = _Client()
    a = Future("x", client)  # type: ignore[arg-type]
    b = Future("x", client)  # type: ignore[arg-type]
    del a
    client._drain()
    assert client._held("x") and not client.sent  # b still holds it
    del b
    client._drain()
    assert "x" not in client._states
    assert [m.keys for m in client.sent if type(m) is ReleaseKeys] == [["x"]]


def test_deaths_wait_for_the_release_timer_not_the_next_submission() -> None:
    # While the release delay runs, the drain that sends a submission leaves the deaths
    # recorded meanwhile alone (the task goes out without waiting for a release to be
    # handled first); the timer's drain releases them all in one message.
    client = _Client()
    client._arm()
    a = Future("x", client)  # type: ignore[arg-type]
    b = Future("y", client)  # type: ignore[arg-type]
    del a, b
    client._outbox.append(UpdateGraph([], ["z"], {}))
    client._drain()
    assert [type(m) for m in client.sent] == [UpdateGraph]
    assert not client._drain_scheduled  # no drain spinning on deaths it may not count
    client._release_due()
    assert client._drain_scheduled
    client._drain()
    assert [m.keys for m in client.sent if type(m) is ReleaseKeys] == [["x", "y"]]
    assert client.arms == 1  # and the next deaths wait for the delay again
    assert not client._states


def test_a_dead_future_of_a_cancelled_key_releases_nothing() -> None:
    client = _Client()
    old = Future("x", client)  # type: ignore[arg-type]
    client._forget_state("x", old._state)  # cancelled
    new = Future("x", client)  # type: ignore[arg-type]  # submitted again
    assert new._state is not old._state and new._state.refs == 1
    del old
    client._drain()
    assert client._held("x") and not client.sent


def test_a_held_future_costs_the_client_under_200_bytes() -> None:
    # A Future, its FutureState (with its count) and one table entry: no second key -> count
    # table (a million held futures paid ~40 B each for one).
    client = _Client()
    keys = [f"k-{i}" for i in range(20_000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held: list[Any] = [Future(k, client) for k in keys]  # type: ignore[arg-type]
        per_future = (tracemalloc.get_traced_memory()[0] - before - 8 * len(held)) / len(held)
    finally:
        tracemalloc.stop()
    assert per_future < 200, f"{per_future:.0f} B per held future"
