"""A pending future's waiters: every waiting thread wakes when its key settles, a wait
with a deadline returns False while still pending, and a second settle is harmless."""

from __future__ import annotations

import threading

from shoal.client._future import FutureState

DEADLINE = 10.0


def test_every_waiting_thread_wakes_when_the_key_settles() -> None:
    st = FutureState()
    woke: list[bool] = []
    lock = threading.Lock()
    ready = threading.Barrier(6)

    def wait() -> None:
        ready.wait(DEADLINE)
        result = st.wait(DEADLINE)
        with lock:
            woke.append(result)

    threads = [threading.Thread(target=wait) for _ in range(5)]
    for t in threads:
        t.start()
    ready.wait(DEADLINE)
    st.settle("finished")
    for t in threads:
        t.join(DEADLINE)
        assert not t.is_alive()
    assert woke == [True] * 5
    st.settle("lost")  # a later status change finds no latch to release: no error
    assert st.wait(0) is True


def test_wait_with_a_deadline_returns_false_while_pending() -> None:
    st = FutureState()
    assert st.wait(0) is False
    assert st.wait(0.01) is False
    assert st.wait(-1) is False  # a past deadline is no wait at all, as Event.wait
    st.settle("error")
    assert st.wait(0) is True


def test_a_reset_future_waits_again_until_settled_again() -> None:
    st = FutureState()
    st.settle("error")
    st.reset()
    assert st.wait(0) is False
    st.settle("finished")
    assert st.wait(0) is True
