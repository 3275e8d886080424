"""A client in the scheduler's own process applies Queue, Event and Variable.get requests
from its calling thread (shoal/client/_direct.py), with the semantics of its connection:
order with what it sent on the connection, waits answered later, timeouts, a client that
leaves, and many threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shoal import Client, Event, Lock, Queue, Variable, _loop
from shoal.client import _direct
from shoal.scheduler.coordination._shell import CoordinationShell

from ._helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def direct_calls(monkeypatch) -> Iterator[list[str]]:
    """The tags of the requests applied directly, in order."""
    seen: list[str] = []
    real = CoordinationShell.receive_direct

    def spy(self: CoordinationShell, holder: str, conn: Any, msg: Any, call_soon: Any) -> Any:
        out = real(self, holder, conn, msg, call_soon)
        if out is not None:
            seen.append(msg.tag)
        return out

    monkeypatch.setattr(CoordinationShell, "receive_direct", spy)
    yield seen


def put_later(name: str, value: Any, event: str) -> bool:
    """A task: wait for the event, then put ``value``."""
    Event(event).wait(timeout=60)
    Queue(name).put(value)
    return True


def inc(x: int) -> int:
    return x + 1


def test_put_and_get_from_the_client_skip_the_loop(make_client, direct_calls) -> None:
    c = make_client(n_workers=1)
    q = Queue("direct", client=c)
    for i in range(5):
        q.put(i)
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert q.qsize() == 0
    assert direct_calls.count("coord-queue-put") == 5
    assert direct_calls.count("coord-queue-get") == 5


def test_future_put_between_data_puts_keeps_its_place(make_client, direct_calls) -> None:
    """A put of a future travels on the connection, behind its submission (and is
    answered); the direct data puts around it keep their order with it."""
    c = make_client(n_workers=1)
    q = Queue("order", client=c)
    q.put(0)
    fut = c.submit(inc, 1)
    q.put(fut)
    q.put(2)
    got = [q.get() for _ in range(3)]
    assert got[0] == 0 and got[2] == 2
    assert got[1].key == fut.key and got[1].result(timeout=60) == 2
    assert direct_calls.count("coord-queue-put") == 2  # the data puts


def test_after_an_unanswered_message_requests_take_the_connection_until_an_answer(
        make_client, direct_calls) -> None:
    """A Lock release gets no answer: the scheduler may not have applied it yet, so a
    request after it must not overtake it; the first answer on the connection confirms
    it, and the direct path is back."""
    c = make_client(n_workers=1)
    q = Queue("after-release", client=c)
    lock = Lock("after-release", client=c)
    q.put(0)
    assert lock.acquire()
    lock.release()  # on the connection, no answer
    direct_calls.clear()
    q.put(1)  # behind the release
    assert q.get() == 0  # behind both; its answer confirms them
    assert direct_calls == []
    assert not lock.locked()  # the release was applied before the answers above
    q.put(2)
    assert q.get() == 1 and q.get() == 2
    assert direct_calls == ["coord-queue-put", "coord-queue-get", "coord-queue-get"]


def test_a_direct_get_waits_for_a_put_from_a_task(make_client, direct_calls) -> None:
    c = make_client(n_workers=1)
    q = Queue("wait", client=c)
    q.qsize()  # created
    go = Event("go", client=c)
    task = c.submit(put_later, "wait", "from a task", "go")
    out: dict[str, Any] = {}
    getter = threading.Thread(target=lambda: out.setdefault("v", q.get(timeout=60)))
    getter.start()
    wait_for(lambda: "coord-queue-get" in direct_calls, timeout=60)  # waiting now
    go.set()
    getter.join(60)
    assert out == {"v": "from a task"}
    assert task.result(timeout=60) is True


def test_a_direct_get_times_out_and_leaves_the_next_item(make_client, direct_calls) -> None:
    c = make_client(n_workers=1)
    q = Queue("timeout", client=c)
    with pytest.raises(TimeoutError):
        q.get(timeout=0.2)
    q.put("next")
    assert q.get(timeout=5) == "next"
    assert direct_calls.count("coord-queue-get") == 2


def test_a_client_that_leaves_while_waiting_takes_no_item(make_client, direct_calls) -> None:
    c = make_client(n_workers=1)
    other = Client(c.cluster)
    try:
        q_other = Queue("left", client=other)
        out: dict[str, Any] = {}

        def get() -> None:
            try:
                out["v"] = q_other.get()
            except BaseException as exc:  # handed to the test
                out["error"] = exc

        getter = threading.Thread(target=get)
        getter.start()
        wait_for(lambda: "coord-queue-get" in direct_calls, timeout=60)
    finally:
        other.close()
    getter.join(60)
    assert isinstance(out.get("error"), ConnectionError)
    q = Queue("left", client=c)
    q.put("kept")
    assert q.qsize() == 1 and q.get(timeout=5) == "kept"
    with pytest.raises(RuntimeError, match="closed"):
        q_other.put("lost")
    assert q.qsize() == 0


def test_a_holder_the_scheduler_forgot_gets_nothing_applied(make_client) -> None:
    """The check under the machine's lock: a connection the scheduler no longer knows (its
    client left, or is leaving) has nothing applied, so no waiter outlives its holder."""
    c = make_client(n_workers=1)
    shell = c.cluster.scheduler.coordination
    server_end = c._conn.other
    assert shell.receive_direct("gone", server_end, _put("forgot"), _loop.call_soon) is None
    assert shell.receive_direct(c.id, server_end, _put("forgot"), _loop.call_soon) == []
    assert Queue("forgot", client=c).qsize() == 1


def test_threads_and_tasks_share_a_queue_without_losing_or_doubling_items(
        make_client, direct_calls) -> None:
    c = make_client(n_workers=2)
    q = Queue("shared", client=c)
    n = 300
    got: list[Any] = []
    lock = threading.Lock()

    def producer(base: int) -> None:
        for i in range(n):
            q.put(base + i)

    def consumer() -> None:
        for _ in range(n):
            v = q.get(timeout=60)
            with lock:
                got.append(v)

    tasks = c.map(put_many, ["shared"] * 2, [10_000, 20_000], [n, n], pure=False)
    threads = [threading.Thread(target=producer, args=(b,)) for b in (0, 1000)]
    threads += [threading.Thread(target=consumer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert c.gather(tasks) == [n, n]
    assert sorted(got) == sorted([*range(n), *range(1000, 1000 + n),
                                  *range(10_000, 10_000 + n), *range(20_000, 20_000 + n)])
    for base in (0, 1000, 10_000, 20_000):  # every producer's items, each once
        mine = [v for v in got if base <= v < base + n]
        assert len(mine) == n
    assert direct_calls.count("coord-queue-get") == 4 * n


def put_many(name: str, base: int, n: int) -> int:
    q = Queue(name)
    for i in range(n):
        q.put(base + i)
    return n


def test_event_and_variable_from_the_client_go_direct(make_client, direct_calls) -> None:
    c = make_client(n_workers=1)
    e = Event("ev", client=c)
    assert not e.is_set()
    e.set()
    assert e.wait(timeout=5) and e.is_set()
    v = Variable("var", client=c)
    v.set(7)  # on the connection (a set is not direct)
    assert v.get(timeout=5) == 7
    assert {"coord-event-set", "coord-event-wait", "coord-event-is-set",
            "coord-variable-get"} <= set(direct_calls)


def test_direct_path_needs_an_in_process_scheduler() -> None:
    class Remote:  # a client whose connection is a socket
        _conn = object()
        id = "remote"

    assert _direct.apply(Remote(), _put("q")) is None  # type: ignore[arg-type]


def _put(name: str) -> Any:
    from shoal.protocol._coord_messages import CoordQueuePut
    from shoal.protocol._serialize import dumps

    return CoordQueuePut(0, name, ("data", dumps(1)), None)
