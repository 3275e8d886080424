"""The executor's queue: smallest entry first, each entry taken by exactly one thread."""

from __future__ import annotations

import random
import threading

from shoal.worker._execute import _TaskQueue

DEADLINE = 10.0


def test_entries_come_out_smallest_first_whatever_order_they_went_in() -> None:
    rng = random.Random(14)
    q = _TaskQueue()
    entries = [((1, (rng.randrange(5), rng.random())), seq, f"k{seq}") for seq in range(200)]
    for e in rng.sample(entries, len(entries)):
        q.put(e)
    first = ((float("-inf"),), -1, None)  # the executor's stop/hand-off priority
    q.put(first)
    assert q.get() == first
    assert [q.get() for _ in entries] == sorted(entries)


def test_waiting_threads_each_take_one_entry_and_none_is_lost() -> None:
    q = _TaskQueue()
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            _, seq, _ = q.get()
            with lock:
                got.append(seq)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for seq in range(200):  # the takers are already waiting for most of these
        q.put(((1, 0), seq, None))
    for t in threads:
        t.join(DEADLINE)
        assert not t.is_alive()
    assert sorted(got) == list(range(200))
