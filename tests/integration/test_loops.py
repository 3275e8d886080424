"""Issue 9, item 14: big (de)serialization never blocks an event loop. While a worker
pickles a big value for a fetch, or the client unpickles a big fetched result, the same
worker and the (in-process) scheduler keep answering. Each slow step here waits on a gate
file instead of taking time, so the tests depend on order, not on speed."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ._helpers import gated, wait_for


def _started(gate: str) -> None:
    Path(gate + ".started").touch()


def _has_started(gate: str) -> bool:
    return os.path.exists(gate + ".started")

pytestmark = pytest.mark.integration


class SlowToPickle:
    """Big by sizeof; pickling it waits for the gate (a stand-in for 2 GB of objects)."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def __sizeof__(self) -> int:
        return 64 * 2**20

    def __reduce__(self) -> Any:
        _started(self.gate)
        gated(self.gate, None)
        return (str, ("pickled",))


def slow_to_pickle(gate: str) -> SlowToPickle:
    return SlowToPickle(gate)


def _load_slowly(gate: str, padding: bytes) -> str:
    _started(gate)
    gated(gate, None)
    return f"loaded {len(padding)}"


class SlowToLoad:
    """Its pickle is big in-band (padding); unpickling it waits for the gate."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def __sizeof__(self) -> int:
        return 64 * 2**20

    def __reduce__(self) -> Any:
        return (_load_slowly, (self.gate, b"x" * (4 * 2**20)))


def slow_to_load(gate: str) -> SlowToLoad:
    return SlowToLoad(gate)


def inc(x: int) -> int:
    return x + 1


def _fetch_in_thread(fut: Any) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(fut.result(timeout=60)), daemon=True)
    thread.start()
    return thread, got


def test_worker_keeps_running_tasks_while_it_pickles_a_big_value(client, gate) -> None:
    worker = sorted(client.scheduler_info()["workers"])[0]
    big = client.submit(slow_to_pickle, gate.path, workers=[worker], pure=False)
    thread, got = _fetch_in_thread(big)
    wait_for(lambda: _has_started(gate.path), timeout=30)  # the worker is pickling it now
    assert client.submit(inc, 1, workers=[worker], pure=False).result(timeout=10) == 2
    gate.open()
    thread.join(30)
    assert got == ["pickled"]


def test_client_loop_keeps_serving_while_it_loads_a_big_result(client, gate) -> None:
    big = client.submit(slow_to_load, gate.path, pure=False)
    from shoal import wait

    wait([big], timeout=20)
    thread, got = _fetch_in_thread(big)
    wait_for(lambda: _has_started(gate.path), timeout=30)  # the client is loading it now
    assert client.submit(inc, 41, pure=False).result(timeout=10) == 42
    gate.open()
    thread.join(30)
    assert got == [f"loaded {4 * 2**20}"]


def test_task_stream_history_is_fetched_page_by_page(client, monkeypatch) -> None:
    from shoal.client import _cluster_info

    start, _ = client._task_stream_since(-1)
    client.gather(client.map(inc, range(12), pure=False))
    monkeypatch.setattr(_cluster_info, "TASK_STREAM_PAGE", 5)
    cursor, records = client._task_stream_since(start)
    assert cursor >= start + 12
    assert len(records) == cursor - start


def test_worker_keeps_running_tasks_while_it_loads_big_scattered_data(client, gate) -> None:
    worker = sorted(client.scheduler_info()["workers"])[0]
    got: list[Any] = []
    thread = threading.Thread(
        target=lambda: got.append(client.scatter(SlowToLoad(gate.path), workers=[worker],
                                                 hash=False, timeout=60)),
        daemon=True,
    )
    thread.start()
    wait_for(lambda: _has_started(gate.path), timeout=30)  # the worker is loading it now
    assert client.submit(inc, 1, workers=[worker], pure=False).result(timeout=10) == 2
    assert got == []  # item 11: scatter is not done before the worker holds the data
    gate.open()
    thread.join(30)
    assert got and got[0].result(timeout=10) == f"loaded {4 * 2**20}"
