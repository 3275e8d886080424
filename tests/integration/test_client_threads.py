"""One synchronous Client shared by many threads of the user's program, as real programs do
(a ThreadPoolExecutor of 8-16 threads): every operation mixed at once gives the right results,
an as_completed iterated in one thread takes futures added from another, futures made in one
thread die in another, clients are opened and closed in worker threads of the program, and
closing the client ends every thread blocked on it with an error instead of a hang.

Races are exercised by many quick iterations with seeded choices, not by timing."""

from __future__ import annotations

import queue
import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import dask
import pytest

from shoal import Client, Lock, Queue, Variable, as_completed, fire_and_forget, get_client, wait
from shoal.client._future import FutureCancelledError

from ._helpers import gated, wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def slowinc(x, delay=0.01):
    import time

    time.sleep(delay)
    return x + 1


def _mixed_operations(client: Client, worker: int) -> int:
    rng = random.Random(worker)
    for step in range(20):
        op = rng.randrange(12)
        n = worker * 1000 + step
        if op == 0:
            assert client.submit(inc, n).result(timeout=60) == n + 1
        elif op == 1:
            assert client.gather(client.map(inc, range(n, n + 20))) == list(range(n + 1, n + 21))
        elif op == 2:
            assert dask.delayed(add)(dask.delayed(inc)(n), step).compute() == n + 1 + step
        elif op == 3:
            assert dask.delayed(add)(n, step).persist().compute() == n + step
        elif op == 4:
            futures = client.map(inc, range(50), pure=False)
            client.cancel(futures[:10])
            wait(futures[10:], timeout=60)
            assert [f.result() for f in futures[10:]] == list(range(11, 51))
        elif op == 5:
            futures = client.map(inc, range(n, n + 10))
            completed = as_completed(futures[:5])
            seen = []
            for i, f in enumerate(completed):
                if i == 0:
                    completed.update(futures[5:])
                seen.append(f.result())
            assert sorted(seen) == list(range(n + 1, n + 11))
        elif op == 6:  # (raw graph keys name data, as in dask: unique per call)
            a, b = f"a-{worker}-{step}", f"b-{worker}-{step}"
            assert client.get({a: (inc, n), b: (add, a, step)}, b) == n + 1 + step
        elif op == 7:
            [scattered] = client.scatter([n])
            assert client.submit(inc, scattered).result(timeout=60) == n + 1
        elif op == 8:
            fire_and_forget(client.submit(inc, n, pure=False))
        elif op == 9:
            with Lock("shared-lock"):
                counter = Variable("shared-counter")
                counter.set(counter.get(timeout=10) + 1)
        elif op == 10:
            q = Queue(f"queue-{worker}")
            q.put(n)
            assert q.get(timeout=10) == n
        elif op == 11:
            assert get_client().submit(inc, n).result(timeout=60) == n + 1
    return worker


def test_many_threads_mixing_every_operation_on_one_client_get_the_right_results(client):
    Variable("shared-counter").set(0)
    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(lambda w: _mixed_operations(client, w), range(36))) == list(range(36))
    locked = sum(1 for w in range(36) for op in _ops(w) if op == 9)
    assert Variable("shared-counter").get(timeout=10) == locked  # no lost update under Lock
    assert client.submit(inc, 1).result(timeout=60) == 2


def _ops(worker: int) -> list[int]:
    rng = random.Random(worker)
    return [rng.randrange(12) for _ in range(20)]


def test_as_completed_takes_futures_added_from_another_thread_while_iterated(client, tmp_path):
    for i in range(20):
        gate = tmp_path / f"gate-{i}"  # the first futures finish only once all are added
        first = [client.submit(gated, str(gate), k, pure=False) for k in range(2)]
        rest = client.map(inc, range(2, 10), pure=False)
        completed = as_completed(first)

        def add_all(completed=completed, rest=rest, gate=gate):
            for f in rest:
                completed.add(f)
            gate.touch()

        adder = threading.Thread(target=add_all)
        adder.start()
        seen = [f.result() for f in completed]
        adder.join(30)
        assert sorted(seen) == [0, 1, *range(3, 11)]


def test_futures_made_in_one_thread_and_dropped_in_another_are_released(client):
    def consume(w: int) -> int:
        handoff: queue.Queue = queue.Queue()

        def produce() -> None:
            for i in range(50):
                f = client.submit(inc, w * 100 + i, pure=False)
                made.append(f.key)
                handoff.put(f)
                del f
            handoff.put(None)

        producer = threading.Thread(target=produce)
        producer.start()
        total = 0
        while (f := handoff.get(timeout=60)) is not None:  # ends: the producer's None
            total += f.result(timeout=60)
            del f
        producer.join(30)
        return total

    made: list[str] = []  # keys only: the client is shared with other tests of this process
    with ThreadPoolExecutor(8) as pool:
        totals = list(pool.map(consume, range(8)))
    assert totals == [sum(range(w * 100 + 1, w * 100 + 51)) for w in range(8)]
    assert len(made) == 400
    # (the loop thread counts the deaths: wait for it, with a deadline)
    wait_for(lambda: not set(made) & set(client._held_keys()), timeout=30)


def test_clients_opened_and_closed_in_worker_threads_of_the_program(client):
    address = client.scheduler.address

    def own(i: int) -> int:
        with Client(address) as mine:
            return mine.submit(inc, i).result(timeout=60)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(own, range(16))) == list(range(1, 17))
    assert client.submit(inc, 1).result(timeout=60) == 2


def _waiting_in_shoal(thread: threading.Thread) -> bool:
    """``thread`` is blocked inside a shoal wait (innermost frame in the threading module or
    in shoal's futures, below a shoal call): it has not merely started."""
    frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
    names = []
    while frame is not None:
        names.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    # (``<lambda>``: the wait ``_interrupts.blocking_wait`` calls, a lock's acquire in C)
    return bool(names) and names[0][1] in ("wait", "acquire", "get", "<lambda>") and any(
        "shoal" in filename for filename, _ in names)


def test_close_ends_every_thread_blocked_on_the_client_with_an_error(make_client, gate):
    c = make_client(n_workers=1)
    futures = [c.submit(gated, gate.path, i, pure=False) for i in range(3)]
    outcome: dict[str, object] = {}

    def call(name, fn):
        try:
            outcome[name] = fn()
        except BaseException as exc:
            outcome[name] = exc

    blocked = {
        "result": lambda: futures[0].result(),
        "gather": lambda: c.gather(futures),
        "wait": lambda: wait(futures),
        "as_completed": lambda: [f.status for f in as_completed(futures)],
    }
    threads = [threading.Thread(target=call, args=item) for item in blocked.items()]
    for t in threads:
        t.start()
    wait_for(lambda: all(_waiting_in_shoal(t) for t in threads), timeout=30)
    c.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), outcome
    assert isinstance(outcome["result"], FutureCancelledError), outcome
    assert isinstance(outcome["gather"], FutureCancelledError), outcome
    assert isinstance(outcome["wait"], Exception), outcome
    assert outcome["as_completed"] == ["cancelled"] * 3, outcome


def test_waits_on_a_future_released_meanwhile_end_with_cancelled_as_dask(client, gate):
    # dask cancels a key's state when its last future is released: a gather, wait or
    # as_completed holding the released Future (given it before or after the release)
    # ends. They waited for good: the released key's state was dropped, never settled.
    futures = [client.submit(gated, gate.path, i, pure=False) for i in range(2)]
    outcome: dict[str, object] = {}

    def call(name, fn):
        try:
            outcome[name] = fn()
        except BaseException as exc:
            outcome[name] = exc

    before = threading.Thread(target=call, args=("gather", lambda: client.gather(futures[:1])))
    before.start()
    wait_for(lambda: _waiting_in_shoal(before), timeout=30)
    futures[0].release()
    after = {
        "gather_after": lambda: client.gather(futures[:1]),
        "wait_after": lambda: wait(futures[:1], timeout=30),
        "as_completed_after": lambda: [f.status for f in as_completed(futures[:1])],
    }
    threads = [before] + [threading.Thread(target=call, args=item) for item in after.items()]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(30)
    hung = [t for t in threads if t.is_alive()]
    gate.open()
    assert not hung, outcome
    assert isinstance(outcome["gather"], FutureCancelledError), outcome
    assert isinstance(outcome["gather_after"], FutureCancelledError), outcome
    assert isinstance(outcome["wait_after"], Exception), outcome
    assert outcome["as_completed_after"] == ["cancelled"], outcome
    assert futures[1].result(timeout=30) == 1
