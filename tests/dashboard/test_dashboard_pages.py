"""/tasks, /system and /graph over HTTP: the pages, their APIs, the navigation."""

from __future__ import annotations

import asyncio
import json
import time

import dask
from _fake import FakeSource
from test_dashboard_http import Fetch, run

from shoal.dashboard import _views, open_dashboard
from shoal.dashboard._system import QUANTITIES, Reading, SystemHistory, SystemMonitor, sample_of


def test_new_pages_are_served_with_their_scripts_and_in_every_navigation_bar() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        for path, script in (("/tasks", "tasks.js"), ("/system", "system.js"),
                             ("/graph", "graph.js")):
            status, headers, page = await fetch(path)
            assert status == 200, path
            assert "script-src 'self'" in headers["Content-Security-Policy"]
            assert f'<a href="{path[1:]}" class="active">' in page
            assert f'"static/{script}"' in page
            code, _, body = await fetch(f"/static/{script}")
            assert code == 200 and body and "https://" not in body
        for path in ("/status", "/workers", "/profile", "/tasks"):
            _, _, page = await fetch(path)
            for href in ("/tasks", "/system", "/graph"):
                assert f'<a href="{href[1:]}"' in page, (path, href)
        _, _, page = await fetch("/nope")
        assert 'href="graph"' in page and 'href="system"' in page  # 404 lists them

    run(check)


def test_system_api_pages_samples_by_cursor() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        _, headers, body = await fetch("/api/system?since=0")
        assert headers["Content-Type"].startswith("application/json")
        first = json.loads(body)
        assert first["cursor"] >= 1  # sampled when the dashboard opened
        assert set(first["samples"]) == set(QUANTITIES)
        assert first["samples"]["memory"][-1] > 10 * 2**20  # this process's RSS
        assert abs(first["samples"]["time"][-1] - time.time()) < 60
        _, _, body = await fetch(f"/api/system?since={first['cursor']}")
        again = json.loads(body)
        assert again["cursor"] >= first["cursor"]
        assert len(again["samples"]["time"]) == again["cursor"] - first["cursor"]
        status, _, body = await fetch("/api/system?since=-3")
        assert status == 400 and "cursor" in body

    run(check)


def test_dashboard_close_stops_its_system_sampler() -> None:
    async def main() -> None:
        server = await open_dashboard(FakeSource(), "127.0.0.1", 0)
        assert any(_sampler(t) for t in asyncio.all_tasks())
        await server.close()
        assert not any(_sampler(t) and not t.done() for t in asyncio.all_tasks())

    asyncio.run(main())


def _sampler(task: asyncio.Task[object]) -> bool:
    return getattr(task.get_coro(), "__qualname__", "") == "SystemMonitor._run"


def test_system_monitor_follows_dasks_config() -> None:
    with dask.config.set({"distributed.admin.system-monitor.interval": "250ms",
                          "distributed.admin.system-monitor.log-length": 10}):
        monitor = SystemMonitor()
    assert monitor.interval == 0.25 and monitor.history.rows.maxlen == 10


def test_system_monitor_samples_until_closed() -> None:
    async def main() -> None:
        monitor = SystemMonitor(interval=0.01)
        monitor.start()
        try:
            deadline = time.monotonic() + 10
            while monitor.history.total < 5:  # ends: the sampler adds one per 10 ms, or 10 s
                assert time.monotonic() < deadline, "the system monitor took no samples"
                await asyncio.sleep(0.01)
        finally:
            await monitor.close()
        total = monitor.history.total
        await asyncio.sleep(0.05)
        assert monitor.history.total == total  # closed: no more samples
        _, cols = monitor.history.since(0)
        assert all(v >= 0 for v in cols["cpu"]) and min(cols["num_fds"]) > 0

    asyncio.run(main())


def test_system_rates_come_from_counter_differences() -> None:
    a = Reading(100.0, 10.0, cpu_seconds=1.0, rss=1000, net_recv=0, net_sent=0, num_fds=7)
    b = Reading(100.5, 10.5, cpu_seconds=1.25, rss=2000, net_recv=500, net_sent=50, num_fds=8)
    assert sample_of(None, a) == (100.0, 0.0, 1000.0, 0.0, 0.0, 7.0)
    assert sample_of(a, b) == (100.5, 50.0, 2000.0, 1000.0, 100.0, 8.0)
    history = SystemHistory(length=2)
    for r in (a, b, b._replace(clock=11.0, wall=101.0)):
        history.add(r)
    cursor, cols = history.since(0)  # the oldest fell out of the ring
    assert cursor == 3 and cols["time"] == [100.5, 101.0]
    assert history.since(2) == (3, {q: [v] for q, v in zip(QUANTITIES, history.rows[-1],
                                                             strict=True)})


def test_graph_api_sends_structure_once_then_states() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        src.graph = {"load-0": ("memory", []), "load-1": ("processing", []),
                     "sum-0": ("waiting", ["load-0", "load-1"])}
        _, headers, body = await fetch("/api/graph")
        assert headers["Content-Type"].startswith("application/json")
        doc = json.loads(body)
        assert doc["nodes"] == ["load-0", "load-1", "sum-0"]
        assert [doc["states"][c] for c in doc["state"]] == ["memory", "processing", "waiting"]
        assert doc["edges"] == [0, 2, 1, 2] and doc["limit"] == 5000
        src.graph["load-1"] = ("memory", [])
        _, _, body = await fetch(f"/api/graph?known={doc['layout']}")
        again = json.loads(body)
        assert "nodes" not in again and again["layout"] == doc["layout"]
        assert [again["states"][c] for c in again["state"]] == ["memory", "memory", "waiting"]

    run(check)


def test_graph_limit_is_dasks_graph_max_items() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        src.graph = {f"inc-{i}": ("queued", []) for i in range(20)}
        with dask.config.set({"distributed.dashboard.graph-max-items": 10}):
            _, _, body = await fetch("/api/graph")
            _, _, page = await fetch("/graph")
        doc = json.loads(body)
        assert doc["too_many"] is True and doc["tasks"] == 20 and doc["limit"] == 10
        assert doc["by_state"]["queued"] == 20 and "nodes" not in doc
        assert 'data-limit="10"' in page
        with dask.config.set({"distributed.dashboard.graph-max-items": "lots"}):
            status, _, body = await fetch("/api/graph")
        assert status == 500 and "graph-max-items='lots'" in body and "integer" in body

    run(check)


def test_page_renderers_name_their_elements() -> None:
    assert 'id="task-stream"' in _views.tasks_html() and 'id="window"' in _views.tasks_html()
    system = _views.system_html()
    for name, _ in _views.SYSTEM_CHARTS:
        assert f'id="chart-{name}"' in system
    assert 'id="graph-notice"' in _views.graph_html(5000)
