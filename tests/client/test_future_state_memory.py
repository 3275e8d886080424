"""What the client keeps per held future: the waiters' latch and callbacks share one slot,
made on the first wait or callback and dropped when the key settles (issue 14)."""

from __future__ import annotations

import sys
import threading

from _waiting import wait_for

from shoal.client._future import FutureState


def test_a_held_future_state_that_nobody_waits_on_keeps_no_waiters() -> None:
    st = FutureState()
    assert st._waiters is None and st.callbacks is None and st._event is None
    assert sys.getsizeof(st) <= 88  # seven slots (eight, 96 bytes, with latch and callbacks)
    st.settle("finished")
    assert st._waiters is None


def test_a_thread_waiting_and_a_callback_both_wake_on_settle_and_leave_nothing() -> None:
    st = FutureState()
    called: list[str] = []
    assert st.add_callback_if_pending(lambda: called.append("cb"))
    woke = threading.Event()
    waiter = threading.Thread(target=lambda: st.wait(30) and woke.set())
    waiter.start()
    try:
        wait_for(lambda: st._event is not None)  # the waiter made the latch
        assert st.callbacks is not None and len(st.callbacks) == 1
        st.settle("finished")
        assert woke.wait(30)
    finally:
        waiter.join(30)
    assert called == ["cb"] and st._waiters is None
    assert not st.add_callback_if_pending(lambda: called.append("late"))  # settled already


def test_settling_a_batch_wakes_every_waiter_once() -> None:
    states = [FutureState() for _ in range(3)]
    called: list[int] = []
    for i, st in enumerate(states):
        st.add_callback_if_pending(lambda i=i: called.append(i))  # type: ignore[misc]
    FutureState.settle_all(states, "finished")
    assert sorted(called) == [0, 1, 2]
    assert all(st._waiters is None and st.status == "finished" for st in states)
