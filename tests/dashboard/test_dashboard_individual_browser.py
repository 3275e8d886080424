"""dask's individual plots in headless chromium over a fake source: each draws its view
alone, filling the window, and follows the source as it changes."""

from __future__ import annotations

from typing import Any

import pytest
from _fake import counts
from _waiting import wait_for
from conftest import ARTIFACTS, LiveFakeSource, ServedDashboard
from test_dashboard_browser import add_burst

pytestmark = pytest.mark.browser


def errors_of(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def test_individual_task_stream_fills_the_window_and_draws_the_bars(
    served: ServedDashboard, browser_page: Any
) -> None:
    page = browser_page
    errors = errors_of(page)
    served.mutate(lambda src: add_burst(src, "inc", 30))
    page.goto(served.url + "/individual-task-stream")
    wait_for(lambda: int(page.get_attribute("#task-stream", "data-drawn") or 0) >= 30, timeout=10)
    assert page.locator(".topbar").count() == 0  # chrome-less
    box = page.locator("#task-stream").bounding_box()
    assert box is not None and box["height"] > 0.6 * 1000  # the viewport is 1000 px tall
    page.screenshot(path=str(ARTIFACTS / "dashboard-individual-task-stream.png"))
    assert not errors, errors


def test_individual_cpu_progress_and_memory_follow_the_source(
    served: ServedDashboard, browser_page: Any
) -> None:
    page = browser_page
    errors = errors_of(page)
    page.goto(served.url + "/individual-cpu")
    row = page.locator('#status-workers tr[data-worker="tcp://127.0.0.1:40001"]')
    wait_for(lambda: row.count() == 1, timeout=10)
    assert row.get_attribute("data-cpu") == "51"
    assert row.locator("td").count() == 3  # worker, CPU bar, percent: nothing else

    def busy(src: LiveFakeSource) -> None:
        src.workers[1]["cpu"] = 180.0
        src.prefixes["inc"] = counts(memory=7, processing=3)

    served.mutate(busy)
    wait_for(lambda: row.get_attribute("data-cpu") == "180", timeout=10)
    assert "180%" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-individual-cpu.png"))

    page.goto(served.url + "/individual-progress")
    prow = page.locator('#progress .prow[data-prefix="inc"]')
    wait_for(lambda: prow.count() == 1, timeout=10)
    assert prow.get_attribute("data-memory") == "7" and "7 / 10" in prow.inner_text()

    page.goto(served.url + "/individual-cluster-memory")
    total = sum(w["memory_process"] for w in served.source.workers)
    wait_for(lambda: page.get_attribute("#cluster-memory", "data-process") == str(total),
             timeout=10)
    assert not errors, errors
