"""A pending future's waiters: every waiting thread wakes when its key settles, a wait
with a deadline returns False while still pending, and a second settle is harmless."""

from __future__ import annotations

import threading
from typing import Any

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


class _Latch:
    """A future's latch seen through one waiter: ``acquire`` records that the waiter waits,
    and, for the interrupted one, raises ``KeyboardInterrupt`` once the lock is taken (what
    a Ctrl-C due at the end of that call does: CPython checks for signals there)."""

    def __init__(self, real: Any, interrupt: bool, after: threading.Event | None = None) -> None:
        self.real, self.interrupt, self.after = real, interrupt, after
        self.waiting = threading.Event()
        self.took = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.waiting.set()
        if self.after is not None:
            self.after.wait(DEADLINE)  # take it only after the interrupted waiter did
        got = self.real.acquire(blocking, timeout)
        self.took.set()
        if self.interrupt:
            raise KeyboardInterrupt
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_waiter_interrupted_as_it_takes_the_latch_leaves_the_others_waking() -> None:
    # A Ctrl-C in the main thread right as its result() took the latch, before it handed it
    # on, left every other thread waiting on that key waiting for good.
    st = FutureState()
    st.wait(0)  # makes the waiters' latch (held until the key settles)
    waiters = st._waiters
    assert waiters is not None and waiters.latch is not None
    real = waiters.latch
    interrupted = _Latch(real, interrupt=True)
    waiters.latch = interrupted  # type: ignore[assignment]
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            st.wait(None)
        except KeyboardInterrupt:
            outcome["first"] = "interrupted"

    def second() -> None:
        outcome["second"] = st.wait(None)  # untimed, as result() without a timeout

    a = threading.Thread(target=first, daemon=True)
    a.start()
    assert interrupted.waiting.wait(DEADLINE)
    other = _Latch(real, interrupt=False, after=interrupted.took)
    waiters.latch = other  # type: ignore[assignment]
    b = threading.Thread(target=second, daemon=True)
    b.start()
    assert other.waiting.wait(DEADLINE)
    st.settle("finished")
    a.join(DEADLINE)
    b.join(DEADLINE)
    assert outcome == {"first": "interrupted", "second": True}
    assert not real.locked()  # free: a later waiter on a reset key is not stuck either


def _futures(n: int) -> list[Any]:
    from shoal.client._future import Future

    futures = []
    for i in range(n):
        f = Future.__new__(Future)
        f.key, f._state = i, FutureState()
        futures.append(f)
    return futures


def test_settled_or_failed_ends_at_a_later_keys_failure_while_an_earlier_one_waits() -> None:
    from shoal.client._future import settled_or_failed

    futures = _futures(3)
    futures[1]._state.settle("finished")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(settled_or_failed(futures)))
    waiter.start()
    futures[2]._state.settle("error")  # futures[0] stays pending
    waiter.join(DEADLINE)
    assert not waiter.is_alive() and got == [futures[2]]
    futures[0]._state.settle("finished")
    assert settled_or_failed(futures[:2]) is None
    assert settled_or_failed([futures[0], futures[2]]) is futures[2]


def test_settled_or_failed_waits_on_the_last_pending_key_only() -> None:
    # A map's keys settle about in order: the gathering thread waits for the last one
    # (one wake-up when all are in), not for each in turn (one per batch of results).
    from _waiting import wait_for

    from shoal.client._future import settled_or_failed

    futures = _futures(4)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(settled_or_failed(futures)),
                              daemon=True)
    waiter.start()
    wait_for(lambda: futures[3]._state.callbacks is not None)
    assert [f._state.callbacks for f in futures[:3]] == [None, None, None]
    for f in futures[:3]:
        f._state.settle("finished")
    assert waiter.is_alive()
    futures[3]._state.settle("finished")
    waiter.join(DEADLINE)
    assert not waiter.is_alive() and got == [None]


def test_settled_or_failed_returns_the_first_failure_in_order() -> None:
    from _waiting import wait_for

    from shoal.client._future import settled_or_failed

    futures = _futures(4)
    futures[3]._state.settle("finished")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(settled_or_failed(futures)),
                              daemon=True)
    waiter.start()
    wait_for(lambda: futures[2]._state.callbacks is not None)  # waits on the last pending
    FutureState.settle_all([futures[2]._state, futures[1]._state], "error")  # [0] pending
    waiter.join(DEADLINE)
    assert not waiter.is_alive() and got == [futures[1]]
