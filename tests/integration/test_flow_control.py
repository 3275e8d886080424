"""Back-pressure across processes: big replies travel in bounded pieces, and gathering
many large results does not hold extra copies of them."""

from __future__ import annotations

import threading

import dask
import numpy as np
import psutil
import pytest

from shoal import wait
from shoal.protocol import _pieces

pytestmark = pytest.mark.integration

MB = 2**20


def big(i):
    return np.full(10 * MB // 8, i, dtype="float64")


def total(*arrays):
    return float(sum(a[0] for a in arrays)), sum(a.nbytes for a in arrays)


class _Peak:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.stop.wait(0.005)

    def __enter__(self) -> _Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_gather_of_50_results_of_10_mb_holds_no_extra_copies(client):
    futures = client.map(big, range(50), pure=False)
    wait(futures)
    before = psutil.Process().memory_info().rss
    with _Peak() as peak:
        values = client.gather(futures)
    results = 50 * 10 * MB
    assert [float(v[0]) for v in values] == [float(i) for i in range(50)]
    growth = peak.peak - before
    # The results themselves must arrive; beyond them, far less than another copy.
    assert growth < results * 1.5, f"peak grew {growth / MB:.0f} MB for {results / MB:.0f} MB"
    del values
    for f in futures:
        f.release()


def test_many_large_inputs_travel_between_workers_in_bounded_messages(make_client, monkeypatch):
    from shoal.worker._server import Worker

    pieces = []
    add = _pieces.DataPieces.add

    def counting(self, msg):
        pieces.append(msg.more)
        return add(self, msg)

    asked = []
    get_data = Worker._get_data

    async def counted(self, peer, keys):
        asked.append(len(keys))
        return await get_data(self, peer, keys)

    monkeypatch.setattr(_pieces.DataPieces, "add", counting)
    monkeypatch.setattr(Worker, "_get_data", counted)
    with dask.config.set({"distributed.worker.transfer.message-bytes-limit": "15MB"}):
        c = make_client(n_workers=2, processes=False)
    a, b = sorted(c.scheduler_info()["workers"])
    parts = c.map(big, range(8), workers=[a], pure=False)
    out = c.submit(total, *parts, workers=[b], pure=False)
    assert out.result(timeout=60) == (float(sum(range(8))), 8 * 10 * MB)
    # 80 MB asked for at most 15 MB at a time: one 10 MB value per request.
    assert asked == [1] * 8
    # And straight to the client, in pieces of at most 15 MB (one 10 MB value each).
    assert [float(v[0]) for v in c.gather(parts)] == [float(i) for i in range(8)]
    assert pieces.count(True) >= 3


def test_a_worker_fetches_from_at_most_outgoing_peers_at_once(make_client, monkeypatch):
    from shoal.worker._server import Worker

    running = [0]
    most = [0]
    get_data = Worker._get_data

    async def counted(self, peer, keys):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            return await get_data(self, peer, keys)
        finally:
            running[0] -= 1

    monkeypatch.setattr(Worker, "_get_data", counted)
    with dask.config.set({"distributed.worker.connections.outgoing": 1}):
        c = make_client(n_workers=3, processes=False)
    a, b, target = sorted(c.scheduler_info()["workers"])
    parts = [c.submit(big, i, workers=[w], pure=False) for i, w in enumerate([a, b] * 3)]
    out = c.submit(total, *parts, workers=[target], pure=False)
    assert out.result(timeout=60) == (float(sum(range(6))), 6 * 10 * MB)
    assert most[0] == 1


def first(array):
    return float(array[0])


def test_a_worker_has_one_fetch_in_flight_per_peer_and_batches_the_rest(make_client, monkeypatch):
    """dask's gather rule: one request at a time to each peer, the keys asked for meanwhile
    going together in the next one, each request within transfer.message-bytes-limit. Many
    concurrent requests to one peer had every input of every assigned task arrive at once
    (a shuffle's joins held all their pieces before any ran: benchmarks/RESULTS.md)."""
    from shoal.worker._server import Worker

    running: dict[str, int] = {}
    most: dict[str, int] = {}
    asked: list[int] = []
    get_data = Worker._get_data

    async def counted(self, peer, keys):
        running[peer] = running.get(peer, 0) + 1
        most[peer] = max(most.get(peer, 0), running[peer])
        asked.append(len(keys))
        try:
            return await get_data(self, peer, keys)
        finally:
            running[peer] -= 1

    monkeypatch.setattr(Worker, "_get_data", counted)
    with dask.config.set({"distributed.worker.transfer.message-bytes-limit": "25MB"}):
        c = make_client(n_workers=2, processes=False)
    a, b = sorted(c.scheduler_info()["workers"])
    parts = c.map(big, range(8), workers=[a], pure=False)
    wait(parts)
    firsts = c.map(first, parts, workers=[b], pure=False)
    assert c.gather(firsts) == [float(i) for i in range(8)]
    assert most == {a: 1}
    assert sum(asked) == 8 and max(asked) <= 2  # 10 MB values, 25 MB per request
