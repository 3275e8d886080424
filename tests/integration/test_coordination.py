"""Issue 10: Lock, MultiLock, Semaphore, Queue, Variable and Event, from the client and
from tasks, as dask.distributed users write them.

Tasks use the primitives through ``get_client()``, the worker's own client: on worker
processes (``make_client``) and on the in-process ``local`` cluster, whose tasks can share a
counter with the test to see how many are inside a section at once. Code in the test itself
finds ``local`` as the newest client (the others are closed by then), as a user's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import pytest

from shoal import Client, Event, Lock, MultiLock, Queue, Semaphore, Variable

from ._helpers import scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local() -> Iterator[Client]:
    """An in-process cluster with 4 task threads: tasks reach the primitives via get_client()."""
    with Client(processes=False, n_workers=1, threads_per_worker=4, dashboard_address=None) as c:
        yield c


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn(*args)`` in a thread; its result or exception lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # handed to the test, which asserts on it
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# --- tasks (module level, so that they pickle by reference) ---------------------------------

_overlap = {"active": 0, "peak": 0}
_overlap_lock = threading.Lock()


def _enter() -> None:
    with _overlap_lock:
        _overlap["active"] += 1
        _overlap["peak"] = max(_overlap["peak"], _overlap["active"])


def _leave() -> None:
    with _overlap_lock:
        _overlap["active"] -= 1


def locked_section(x: int, name: str) -> int:
    with Lock(name):
        _enter()
        time.sleep(0.01)
        _leave()
    return x


def rate_limited(x: int, name: str) -> int:
    with Semaphore(max_leases=2, name=name):
        _enter()
        time.sleep(0.02)
        _leave()
    return x


def produce(name: str, n: int) -> int:
    q = Queue(name)
    for i in range(n):
        q.put(i)
    return n


def consume(name: str, n: int) -> list[int]:
    q = Queue(name)
    return [q.get(timeout=120) for _ in range(n)]  # the producer may start late (a loaded CI)


def set_event(name: str) -> bool:
    Event(name).set()
    return True


def wait_event(name: str) -> bool:
    return Event(name).wait(timeout=30)


def read_variable_future(name: str) -> Any:
    """A task reading a Variable that holds a future: a valid future of the task's client."""
    return Variable(name).get(timeout=30).result(timeout=30)


def inc(x: int) -> int:
    return x + 1


def both_locks(x: int) -> int:
    with MultiLock(["ml-a", "ml-b"]):
        _enter()
        time.sleep(0.01)
        _leave()
    return x


def section_times(x: int, kind: str, name: str) -> tuple[float, float]:
    """In a worker process: the wall-clock interval spent inside ``kind``'s section."""
    guard = Lock(name) if kind == "lock" else Semaphore(max_leases=2, name=name)
    with guard:
        start = time.time()
        time.sleep(0.02)
        return start, time.time()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    inside = peak = 0
    for _, step in edges:
        inside += step
        peak = max(peak, inside)
    return peak


# --- Lock ---------------------------------------------------------------------------------


def test_lock_excludes_a_second_holder_until_released(local: Client) -> None:
    lock = Lock("db")
    with lock:
        assert lock.locked()
        assert Lock("db").acquire(timeout=0.05) is False
        assert Lock("db").acquire(blocking=False) is False
    assert not lock.locked()
    other = Lock("db")
    assert other.acquire(timeout=5) is True
    other.release()


def test_blocked_acquire_returns_when_the_holder_releases(local: Client) -> None:
    first, second = Lock("handoff"), Lock("handoff")
    first.acquire()
    t, out = in_thread(second.acquire)
    t.join(0.1)
    assert t.is_alive()  # still waiting
    first.release()
    t.join(10)
    assert out == {"value": True}
    assert Lock("handoff").locked()
    second.release()


def test_lock_in_tasks_never_lets_two_in(local: Client) -> None:
    _overlap["peak"] = 0
    assert local.gather(local.map(locked_section, range(12), name="tasks-db")) == list(range(12))
    assert _overlap["peak"] == 1


def test_lock_in_tasks_on_worker_processes_never_lets_two_in(make_client) -> None:
    c = make_client(n_workers=2, threads_per_worker=2)
    intervals = c.gather(c.map(section_times, range(12), kind="lock", name="procs-db"))
    assert most_at_once(intervals) == 1


def test_lock_misuse_raises_as_in_dask(local: Client) -> None:
    lock = Lock("misuse")
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(RuntimeError, match="Released too often"):
        lock.release()


def test_lock_pickles_by_name(local: Client) -> None:
    import pickle

    lock = pickle.loads(pickle.dumps(Lock("pickled")))
    assert lock.name == "pickled"


# --- MultiLock ----------------------------------------------------------------------------


def test_multilock_takes_all_or_nothing(local: Client) -> None:
    held = MultiLock(["x"])
    assert held.acquire()
    both = MultiLock(["x", "y"])
    assert both.acquire(timeout=0.05) is False
    assert not both.locked()
    only_y = MultiLock(["y"])  # y was not kept by the failed attempt
    assert only_y.acquire(timeout=5)
    only_y.release()
    held.release()
    with both:
        assert both.locked()
    with pytest.raises(ValueError, match="not yet acquired"):
        both.release()


def test_multilock_in_tasks_never_lets_two_in(local: Client) -> None:
    _overlap["peak"] = 0
    assert local.gather(local.map(both_locks, range(10))) == list(range(10))
    assert _overlap["peak"] == 1


# --- Semaphore ----------------------------------------------------------------------------


def test_semaphore_limits_how_many_tasks_run_the_section(local: Client) -> None:
    _overlap["peak"] = 0
    assert local.gather(local.map(rate_limited, range(12), name="api")) == list(range(12))
    assert _overlap["peak"] == 2
    assert Semaphore(max_leases=2, name="api").get_value() == 0


def test_semaphore_limits_tasks_on_worker_processes(make_client) -> None:
    c = make_client(n_workers=2, threads_per_worker=2)
    intervals = c.gather(c.map(section_times, range(16), kind="semaphore", name="procs-api"))
    assert most_at_once(intervals) == 2


def test_semaphore_with_another_max_leases_is_a_value_error(local: Client) -> None:
    first = Semaphore(max_leases=2, name="inconsistent")
    assert first.acquire()
    with pytest.raises(ValueError, match="max leases"):
        Semaphore(max_leases=3, name="inconsistent").acquire()
    first.release()


# Short for a quick test, yet long enough that a loaded machine (a loop late by most of a
# second) still refreshes in time: holders refresh every lease-timeout / 5.
_LEASE_TIMEOUT = 2.0
_SHORT_LEASES = {"distributed.scheduler.locks.lease-timeout": f"{_LEASE_TIMEOUT}s",
                 "distributed.scheduler.locks.lease-validation-interval": "50ms"}


def test_lease_of_a_holder_that_stops_refreshing_expires(make_client) -> None:
    with dask.config.set(_SHORT_LEASES):
        c = make_client(n_workers=1)
        stuck = Semaphore(name="expiring", client=c)
        stuck.refresh_leases = False  # as a holder whose process hangs
        assert stuck.acquire()
        assert Semaphore(name="expiring", client=c).acquire(timeout=60)


def test_refreshed_lease_outlives_the_lease_timeout(make_client) -> None:
    with dask.config.set(_SHORT_LEASES):
        c = make_client(n_workers=1)
        holder = Semaphore(name="refreshed", client=c)
        assert holder.acquire()
        # Refused for longer than a lease lives unrefreshed: the holder's refreshes kept it.
        assert Semaphore(name="refreshed", client=c).acquire(
            timeout=1.5 * _LEASE_TIMEOUT) is False
        assert holder.get_value() == 1
        holder.release()


_HOLDER = """
import sys, time
from shoal import Client, Semaphore
c = Client(sys.argv[1], set_as_default=False)
s = Semaphore(max_leases=2, name="svc")
assert s.acquire() and s.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_leases_of_a_process_that_dies_are_returned(make_client) -> None:
    c = make_client(n_workers=1)
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, c.scheduler_address],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        sem = Semaphore(max_leases=2, name="svc", client=c)
        assert sem.get_value() == 2
        assert sem.acquire(timeout=0.05) is False
        proc.kill()
        # well within the 30 s lease-timeout: the closed connection returned them
        assert sem.acquire(timeout=60)
        assert sem.get_value() == 1
    finally:
        proc.kill()
        proc.wait(30)


def take_lease_and_die(marker: str) -> str:
    """Hold both leases of "svc-worker" (through the worker's client), then die the first
    time: the scheduler runs the task again on a new worker, which returns."""
    if os.path.exists(marker):
        return "second run"
    sem = Semaphore(max_leases=2, name="svc-worker")
    assert sem.acquire() and sem.acquire()
    open(marker, "w").close()
    os._exit(1)


def test_leases_held_in_a_worker_that_dies_are_returned(make_client, tmp_path) -> None:
    c = make_client(n_workers=1)
    fut = c.submit(take_lease_and_die, str(tmp_path / "died"), pure=False)
    assert fut.result(timeout=60) == "second run"
    sem = Semaphore(max_leases=2, name="svc-worker", client=c)
    wait_for(lambda: sem.get_value() == 0)  # well within the 30 s lease-timeout
    assert sem.acquire(timeout=60) and sem.acquire(timeout=60)


# --- Queue --------------------------------------------------------------------------------


def test_queue_put_get_qsize_in_order(local: Client) -> None:
    q = Queue("jobs")
    for x in [1, "two", {"three": 3}]:
        q.put(x)
    assert q.qsize() == 3
    assert q.get() == 1
    assert q.get(timeout=5) == "two"
    assert q.get() == {"three": 3}
    assert q.qsize() == 0


def test_queue_get_times_out_on_an_empty_queue(local: Client) -> None:
    with pytest.raises(TimeoutError):
        Queue("empty").get(timeout=0.05)


def test_queue_batches(local: Client) -> None:
    q = Queue("batches")
    assert q.get(batch=True) == []
    for i in range(5):
        q.put(i)
    assert q.get(batch=3) == [0, 1, 2]
    assert q.get(batch=True) == [3, 4]
    with pytest.raises(NotImplementedError):
        q.get(batch=2, timeout=1)


def test_queue_batch_of_n_waits_for_n(local: Client) -> None:
    q = Queue("batch-wait")
    t, out = in_thread(q.get, None, 2)
    q.put("a")
    t.join(0.05)
    assert t.is_alive()
    q.put("b")
    t.join(10)
    assert out == {"value": ["a", "b"]}


def test_full_queue_blocks_put_until_a_get(local: Client) -> None:
    q = Queue("bounded", maxsize=1)
    q.put(1)
    with pytest.raises(TimeoutError):
        q.put(2, timeout=0.05)
    t, out = in_thread(q.put, 3)
    t.join(0.05)
    assert t.is_alive()
    assert q.get() == 1
    t.join(10)
    assert out == {"value": None}
    assert q.get() == 3


def test_queue_between_tasks(local: Client) -> None:
    consumer = local.submit(consume, "pipe", 5)
    producer = local.submit(produce, "pipe", 5)
    assert consumer.result(timeout=30) == [0, 1, 2, 3, 4]
    assert producer.result(timeout=30) == 5


def test_queue_between_tasks_on_worker_processes(make_client) -> None:
    client = make_client(n_workers=2)
    consumer = client.submit(consume, "procs-pipe", 4, pure=False)
    producer = client.submit(produce, "procs-pipe", 4, pure=False)
    assert consumer.result(timeout=120) == [0, 1, 2, 3]
    assert producer.result(timeout=120) == 4


def test_queued_future_keeps_its_key_and_comes_back_valid(local: Client) -> None:
    q = Queue("futures")
    fut = local.submit(inc, 41, key="queued-inc")
    q.put(fut)
    del fut
    wait_for(lambda: "queued-inc" in scheduler_tasks(local)
             and scheduler_tasks(local)["queued-inc"].state == "memory")
    got = q.get(timeout=5)
    assert got.result(timeout=10) == 42
    del got
    wait_for(lambda: "queued-inc" not in scheduler_tasks(local))


def test_queue_from_another_client_gets_a_future_of_its_own(make_client) -> None:
    c = make_client(n_workers=1)
    Queue("shared", client=c).put(c.submit(inc, 1, key="shared-inc"))
    with Client(c.scheduler_address, set_as_default=False) as other:
        fut = Queue("shared", client=other).get(timeout=60)
        assert fut.client is other
        assert fut.result(timeout=60) == 2


# --- Variable -----------------------------------------------------------------------------


def test_variable_set_get_delete(local: Client) -> None:
    v = Variable("x")
    v.set(123)
    assert v.get() == 123
    v.set([1, 2])
    assert Variable("x").get(timeout=1) == [1, 2]
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.05)


def test_variable_get_waits_for_a_first_value(local: Client) -> None:
    v = Variable("later")
    t, out = in_thread(v.get, 10)
    t.join(0.05)
    assert t.is_alive()
    v.set("now")
    t.join(10)
    assert out == {"value": "now"}


def test_variable_holding_a_future_keeps_its_key_until_deleted(local: Client) -> None:
    v = Variable("stop")
    fut = local.submit(inc, 1, key="variable-inc")
    v.set(fut)
    assert fut.result(timeout=10) == 2
    del fut
    assert local.submit(read_variable_future, "stop").result(timeout=10) == 2
    assert "variable-inc" in scheduler_tasks(local)
    got = v.get()
    assert got.result(timeout=10) == 2
    v.delete()
    assert got.result(timeout=10) == 2  # the getter holds its own reference
    del got
    wait_for(lambda: "variable-inc" not in scheduler_tasks(local))


def test_task_on_a_worker_process_reads_a_future_from_a_variable(make_client) -> None:
    client = make_client(n_workers=2)
    v = Variable("procs-model", client=client)
    v.set(client.submit(inc, 5, key="procs-variable-inc"))
    assert client.submit(read_variable_future, "procs-model", pure=False).result(timeout=120) == 6
    v.delete()


def test_unpicklable_value_is_a_type_error_at_set(local: Client) -> None:
    with pytest.raises(TypeError, match="serialize"):
        Variable("bad").set(threading.Lock())


def test_variable_shared_between_clients(make_client) -> None:
    c = make_client(n_workers=1)
    Variable("model", client=c).set(c.submit(inc, 9, key="model-inc"))
    with Client(c.scheduler_address, set_as_default=False) as other:
        fut = Variable("model", client=other).get(timeout=60)
        assert fut.client is other
        assert fut.result(timeout=60) == 10


def test_future_in_a_variable_outlives_the_client_that_set_it(make_client) -> None:
    c = make_client(n_workers=1)
    with Client(c.scheduler_address, set_as_default=False) as setter:
        Variable("handoff", client=setter).set(setter.submit(inc, 99, key="handoff-inc"))
        Queue("handoff", client=setter).put(setter.submit(inc, 199, key="queued-handoff-inc"))
    assert Variable("handoff", client=c).get(timeout=60).result(timeout=60) == 100
    assert Queue("handoff", client=c).get(timeout=60).result(timeout=60) == 200


# --- Event --------------------------------------------------------------------------------


def test_event_between_tasks_on_worker_processes(make_client) -> None:
    client = make_client(n_workers=2)
    waiter = client.submit(wait_event, "procs-go", pure=False)
    assert client.submit(set_event, "procs-go", pure=False).result(timeout=120)
    assert waiter.result(timeout=120) is True


def test_event_set_wait_clear_is_set(local: Client) -> None:
    e = Event("ready")
    assert not e.is_set()
    assert e.wait(timeout=0.05) is False
    e.set()
    assert e.is_set()
    assert e.wait(timeout=10) is True
    e.clear()
    assert not Event("ready").is_set()


def test_event_set_by_a_task_wakes_a_waiter(local: Client) -> None:
    waiter = local.submit(wait_event, "go")
    t, out = in_thread(Event("go").wait)
    t.join(0.05)
    assert t.is_alive() and not waiter.done()
    assert local.submit(set_event, "go").result(timeout=10)
    t.join(10)
    assert out == {"value": True}
    assert waiter.result(timeout=10) is True


# --- no client, closed client -------------------------------------------------------------

_NO_CLIENT = """
from shoal import Lock, Queue, Variable, Event, Semaphore, MultiLock
for make, use in [(lambda: Lock("x"), lambda p: p.acquire()),
                  (lambda: Semaphore(name="x"), lambda p: p.acquire()),
                  (lambda: MultiLock(["x"]), lambda p: p.acquire()),
                  (lambda: Queue("x"), lambda p: p.get()),
                  (lambda: Variable("x"), lambda p: p.get()),
                  (lambda: Event("x"), lambda p: p.wait())]:
    try:
        use(make())
    except ValueError as exc:
        assert "Client" in str(exc), exc
        print("ok")
"""


def test_primitive_without_a_client_raises_value_error_naming_the_fix() -> None:
    out = subprocess.run([sys.executable, "-c", _NO_CLIENT], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["ok"] * 6, out.stderr


def test_closing_the_client_ends_a_blocked_get(make_client) -> None:
    c = make_client(n_workers=1)
    t, out = in_thread(Queue("never", client=c).get)
    t.join(0.05)
    assert t.is_alive()
    c.close()
    t.join(10)
    assert isinstance(out.get("error"), ConnectionError)


def test_closed_semaphore_starts_afresh(local: Client) -> None:
    sem = Semaphore(max_leases=2, name="closing")
    assert sem.acquire()
    sem.close()
    with pytest.raises(RuntimeError, match="Released too often"):
        sem.release()  # its lease went with the semaphore
    other = Semaphore(max_leases=3, name="closing")  # a new semaphore: any max_leases
    assert other.acquire(timeout=5)
    assert other.get_value() == 1
    other.release()


@pytest.mark.parametrize(("wait", "call"), [
    (lambda t: Lock("bad-timeout").acquire(timeout=t), "Lock.acquire"),
    (lambda t: Semaphore(name="bad-timeout-s").acquire(timeout=t), "Semaphore.acquire"),
    (lambda t: MultiLock(["bad-timeout-m"]).acquire(timeout=t), "MultiLock.acquire"),
    (lambda t: Queue("bad-timeout-q").get(timeout=t), "Queue.get"),
    (lambda t: Queue("bad-timeout-q").put(1, timeout=t), "Queue.put"),
    (lambda t: Variable("bad-timeout-v").get(timeout=t), "Variable.get"),
    (lambda t: Event("bad-timeout-e").wait(timeout=t), "Event.wait"),
])
def test_bad_wait_timeout_is_a_value_error_naming_the_call(local: Client, wait: Any,
                                                           call: str) -> None:
    # dask's own parser fails on -3 with "could not convert string to float: '1-3'".
    with pytest.raises(ValueError, match=rf"{call}: timeout must be 0 or more seconds.*-3"):
        wait(-3)
    with pytest.raises(ValueError, match=rf"{call}: timeout 'soon' is not a duration"):
        wait("soon")
    with pytest.raises(TypeError, match=rf"{call}: timeout must be a number"):
        wait([1])


def test_wait_timeout_reads_durations_as_dask_does() -> None:
    import datetime

    from shoal.client._timeouts import wait_timeout

    assert wait_timeout(None, "x") is None
    assert wait_timeout(0, "x") == 0.0
    assert wait_timeout("200ms", "x") == pytest.approx(0.2)
    assert wait_timeout(datetime.timedelta(seconds=2), "x") == 2.0
    assert wait_timeout(1.5, "x") == 1.5
