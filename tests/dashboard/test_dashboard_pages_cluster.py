"""/graph, /tasks and /system in headless chromium over a real local cluster running a
small graph: what each page draws must match what the scheduler holds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Pages are polled from Python with wait_for: their Content-Security-Policy forbids eval,
# so Playwright's wait_for_function cannot run on them.
from _waiting import wait_for
from conftest import ARTIFACTS

pytestmark = [pytest.mark.integration, pytest.mark.browser]

N = 12  # gated tasks; one more sums them


def make_gated() -> Any:
    # Defined inside a function so cloudpickle ships it by value: worker processes cannot
    # import this test module.
    def gated(x: int, gate: str) -> int:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate):  # ends: the test opens the gate, or after 60 s
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate} never appeared")
            time.sleep(0.01)
        return x + 1

    return gated


@pytest.fixture
def client() -> Iterator[Any]:
    from shoal import Client

    with Client(n_workers=2, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


def errors_of(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def attr(page: Any, selector: str, name: str) -> int:
    return int(page.get_attribute(selector, name) or 0)


def submit_graph(client: Any, gate: Path) -> tuple[list[Any], Any]:
    futures = client.map(make_gated(), range(N), gate=str(gate))
    total = client.submit(sum, futures, key="total-0")
    return futures, total


def test_graph_page_draws_the_live_graph_by_state(
    client: Any, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    errors = errors_of(page)
    page.goto(client.dashboard_link.replace("/status", "/graph"))
    wait_for(lambda: page.locator("#graph-summary").inner_text().startswith("no tasks"),
             timeout=30)

    gate = tmp_path / "gate"
    futures, total = submit_graph(client, gate)
    # 4 threads run 4 gated tasks and wait; the rest wait their turn, the sum on all of them
    wait_for(lambda: attr(page, "#graph", "data-nodes") == N + 1, timeout=30)
    assert attr(page, "#graph", "data-edges") == N
    wait_for(lambda: attr(page, "#graph", "data-state-processing") == 4, timeout=30)
    assert attr(page, "#graph", "data-state-memory") == 0
    assert page.locator('#graph-legend [data-state="processing"]').inner_text() == "processing 4"
    page.screenshot(path=str(ARTIFACTS / "dashboard-graph-running.png"), full_page=True)

    gate.touch()
    assert total.result(timeout=60) == sum(range(1, N + 1))
    wait_for(lambda: attr(page, "#graph", "data-state-memory") == N + 1, timeout=30)
    assert attr(page, "#graph", "data-state-processing") == 0
    assert page.locator("#graph-notice").is_hidden()
    # hovering a node names its task: the sum sits under the middle of the 12 it reads
    # (layers as rows, 12 px padding, 60 px a layer: the second row's centre is 12 + 90)
    box = page.locator("#graph").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 12 + 1.5 * (box["height"] - 24) / 2)
    wait_for(lambda: "total-0" in page.locator("#graph-tooltip").inner_text(), timeout=10)
    assert "memory" in page.locator("#graph-tooltip").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-graph.png"), full_page=True)

    # released futures leave the graph
    del futures, total
    wait_for(lambda: attr(page, "#graph", "data-nodes") == 0, timeout=30)
    assert not errors, errors


def test_graph_page_shows_a_notice_past_the_limit(
    client: Any, browser_page: Any, tmp_path: Path
) -> None:
    import dask

    page = browser_page
    with dask.config.set({"distributed.dashboard.graph-max-items": 5}):
        gate = tmp_path / "gate"
        futures, total = submit_graph(client, gate)
        page.goto(client.dashboard_link.replace("/status", "/graph"))
        notice = page.locator("#graph-notice")
        wait_for(notice.is_visible, timeout=30)
        text = notice.inner_text()
        assert f"{N + 1} tasks, more than the 5" in text and "graph-max-items" in text
        assert "4 processing" in text
        assert attr(page, "#graph", "data-nodes") == 0
        gate.touch()
        total.result(timeout=60)
    del futures, total


def test_tasks_page_draws_a_bar_per_task(
    client: Any, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    errors = errors_of(page)
    page.goto(client.dashboard_link.replace("/status", "/tasks"))
    wait_for(lambda: attr(page, "#task-stream", "data-rows") == 4, timeout=30)  # 2 x 2 threads
    gate = tmp_path / "gate"
    gate.touch()
    _, total = submit_graph(client, gate)
    total.result(timeout=60)
    wait_for(lambda: attr(page, "#task-stream", "data-records") >= N + 1, timeout=30)
    wait_for(lambda: attr(page, "#task-stream", "data-drawn") >= N + 1, timeout=30)
    assert page.locator('#stream-legend [data-prefix="gated"]').count() == 1
    assert page.locator('#stream-legend [data-prefix="total"]').count() == 1
    page.select_option("#window", "all")
    wait_for(lambda: attr(page, "#task-stream", "data-drawn") >= N + 1, timeout=30)
    page.check("#pause")
    assert "paused" in page.locator("#stream-summary").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-tasks.png"), full_page=True)
    assert not errors, errors


def test_system_page_charts_have_points(client: Any, browser_page: Any) -> None:
    page = browser_page
    errors = errors_of(page)
    page.goto(client.dashboard_link.replace("/status", "/system"))
    for chart in ("cpu", "memory", "network", "num_fds"):
        wait_for(lambda chart=chart: attr(page, f"#chart-{chart}", "data-points") >= 3,
                 timeout=30)
    assert "rss" in page.locator("#stats-memory").inner_text()
    assert "MiB" in page.locator("#stats-memory").inner_text()
    assert float(page.get_attribute("#chart-num_fds", "data-max") or 0) > 0
    page.screenshot(path=str(ARTIFACTS / "dashboard-system.png"), full_page=True)
    assert not errors, errors
