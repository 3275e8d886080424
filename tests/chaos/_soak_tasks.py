"""The task bodies of the soak test (``test_soak.py``): small, deterministic functions a
worker process imports by name. Each one's result follows from its arguments alone, so
the soak knows every expected value before it asks."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def inc(x: int) -> int:
    return x + 1


def slow_inc(x: int, delay: float = 0.01) -> int:
    time.sleep(delay)
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def total(*xs: int) -> int:
    return sum(xs)


def fail_on(x: int, bad: frozenset[int]) -> int:
    if x in bad:
        raise ValueError(f"soak: bad input {x}")
    return x * 2


def flaky(path: str, failures: int, value: int) -> int:
    """Raise ``OSError`` the first ``failures`` times it is run (counted in files under
    ``path``, which outlive worker processes), then return ``value``."""
    os.makedirs(path, exist_ok=True)
    tries = len(os.listdir(path))
    if tries < failures:
        Path(path, str(tries)).touch()
        raise OSError(f"soak: flaky attempt {tries}")
    return value


def big(mb: int, fill: int) -> bytes:
    """A large result, to kill its holder while it is moved."""
    return bytes([fill % 256]) * (mb << 20)


def measure(data: bytes) -> tuple[int, int]:
    return len(data), data[-1]


def fan_out(n: int) -> int:
    """A task that launches tasks with ``worker_client``."""
    from shoal import worker_client

    with worker_client() as client:
        return sum(client.gather(client.map(inc, range(n), pure=False)))


def seceded_fan_out(n: int) -> int:
    """A task that launches tasks with ``get_client`` + ``secede`` / ``rejoin``."""
    from shoal import get_client, rejoin, secede

    client = get_client()
    futures = client.map(slow_inc, range(n), pure=False)
    secede()
    out = sum(client.gather(futures))
    rejoin()
    return out


# --- coordination primitives, actors, datasets (``_soak_coord.py``) ---------------------------

WAIT = 120.0  # a task's own waits: past the soak's deadline, so the soak reports a hang first


@contextlib.contextmanager
def _seceded() -> Iterator[None]:
    """Wait for other tasks outside the worker's thread count (``secede``/``rejoin``), as
    dask advises: blocked task threads would otherwise starve the tasks they wait for when
    kills leave few workers."""
    from shoal import rejoin, secede

    secede()
    try:
        yield
    finally:
        rejoin()


def _live_marks(directory: str) -> int:
    """Marks of processes still alive: a killed holder's mark does not count."""
    live = 0
    for mark in os.listdir(directory):
        try:
            os.kill(int(mark.split("-")[0]), 0)
        except ProcessLookupError:
            continue
        live += 1
    return live


def guarded(kind: str, names: list[str], root: str, token: str, leases: int,
            hold: float, patience: float = 0.0) -> bool:
    """Enter a section guarded by a ``Lock``, ``Semaphore`` or ``MultiLock`` (through the
    worker's client) and say whether no more than ``leases`` were inside at once. With
    ``patience``, acquire in tries of that timeout (each one given up is withdrawn)."""
    guard = _guard(kind, names, leases)
    if patience:
        deadline = time.monotonic() + WAIT
        while not guard.acquire(timeout=patience):
            if time.monotonic() > deadline:
                raise TimeoutError(f"soak: {kind} {names} not acquired in {WAIT} s")
    else:
        guard.acquire()
    try:
        marks = []
        for name in names:
            directory = os.path.join(root, name)
            os.makedirs(directory, exist_ok=True)
            mark = os.path.join(directory, f"{os.getpid()}-{threading.get_ident()}-{token}")
            Path(mark).touch()
            marks.append(mark)
        time.sleep(hold)
        ok = all(_live_marks(os.path.join(root, name)) <= leases for name in names)
        for mark in marks:
            os.remove(mark)
    finally:
        guard.release()
    return ok


def _guard(kind: str, names: list[str], leases: int = 1) -> Any:
    from shoal import Lock, MultiLock, Semaphore

    if kind == "lock":
        return Lock(names[0])
    if kind == "semaphore":
        return Semaphore(max_leases=leases, name=names[0])
    return MultiLock(names)


def hold_lease(kind: str, name: str, event: str, marker: str, value: int) -> int:
    """First run: take the lease, write this process's pid to ``marker`` and hold the lease
    until ``event`` is set (the soak kills this process meanwhile). A later run (the task
    run again after the kill) waits for the event without holding, then takes the lease
    once (it was returned)."""
    from shoal import Event

    guard = _guard(kind, [name])
    if not os.path.exists(marker):
        guard.acquire()
        try:
            Path(marker + ".tmp").write_text(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
            if not Event(event).wait(WAIT):
                raise TimeoutError(f"soak: event {event} not set")
        finally:
            guard.release()
        return value
    if not Event(event).wait(WAIT):
        raise TimeoutError(f"soak: event {event} not set")
    if not guard.acquire(timeout=WAIT):
        raise TimeoutError(f"soak: {kind} {name} not returned by its killed holder")
    guard.release()
    return value


def queue_put(name: str, item: Any) -> None:
    from shoal import Queue

    q = Queue(name)
    try:
        q.put(item)
    finally:
        q.close()  # the client's Queue keeps it


def queue_get(name: str, n: int) -> list[Any]:
    from shoal import Queue

    q = Queue(name)
    try:
        with _seceded():
            return [q.get(timeout=WAIT) for _ in range(n)]
    finally:
        q.close()


def queue_sum_futures(name: str, n: int) -> int:
    """Take ``n`` futures from the queue in one batch and add up their results."""
    from shoal import Queue

    q = Queue(name)
    try:
        with _seceded():
            return sum(f.result(timeout=WAIT) for f in q.get(batch=n))
    finally:
        q.close()


def event_wait(name: str) -> bool:
    from shoal import Event

    with _seceded():
        return Event(name).wait(WAIT)


def event_set(name: str) -> None:
    from shoal import Event

    Event(name).set()


def variable_read(name: str) -> Any:
    """The value of a ``Variable``; of the future it holds, the result."""
    from shoal import Future, Variable

    with _seceded():
        value = Variable(name).get(timeout=WAIT)
        return value.result(timeout=WAIT) if isinstance(value, Future) else value


def variable_set_future(name: str, x: int) -> None:
    """Set a Variable to a future submitted from this task (then dropped by it)."""
    from shoal import Variable, get_client

    Variable(name).set(get_client().submit(slow_inc, x, 0.02, pure=False))


def dataset_read(name: str) -> Any:
    from shoal import Future, get_client

    with _seceded():
        value = get_client().get_dataset(name)
        return value.result(timeout=WAIT) if isinstance(value, Future) else value


def write_value(path: str, value: int) -> None:
    """Write ``value`` to ``path`` whole (a reader never sees half of it)."""
    Path(path + f".{os.getpid()}.tmp").write_text(str(value))
    os.replace(path + f".{os.getpid()}.tmp", path)


def client_chain(xs: list[int]) -> int:
    """``worker_client``: a map and a reduction over it submitted from a task."""
    from shoal import worker_client

    with worker_client() as client:
        a = client.map(inc, xs, pure=False)
        return client.submit(total, *a, pure=False).result(timeout=WAIT)


class Counter:
    """An actor: its state lives on one worker."""

    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


def actor_bump(counter: Any, k: int) -> list[int]:
    """Call an actor ``k`` times from a task: what each call saw."""
    return [counter.increment().result(timeout=WAIT) for _ in range(k)]


def flaky_then_slow(path: str, failures: int, value: int, started: str) -> int:
    """As ``flaky``; the first run that does not fail writes its pid to ``started`` and
    lingers, for the soak to kill its worker; a later run returns at once."""
    os.makedirs(path, exist_ok=True)
    tries = len(os.listdir(path))
    if tries < failures:
        Path(path, str(tries)).touch()
        raise OSError(f"soak: flaky attempt {tries}")
    if not os.path.exists(started):
        Path(started + ".tmp").write_text(str(os.getpid()))
        os.replace(started + ".tmp", started)
        time.sleep(1.0)
    return value
