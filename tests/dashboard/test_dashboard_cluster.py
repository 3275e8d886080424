"""End to end: a real local cluster, its dashboard in headless chromium, progress and report."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

# Pages are polled from Python with wait_for: their Content-Security-Policy forbids eval,
# so Playwright's wait_for_function cannot run on them.
from _waiting import wait_for
from conftest import ARTIFACTS


def make_slowinc() -> Any:
    # Defined inside a function so cloudpickle ships it by value: worker processes cannot
    # import this test module.
    def slowinc(x: int) -> int:
        time.sleep(0.01)  # the workload itself: short tasks that show up as bars
        return x + 1

    return slowinc


@pytest.mark.integration
@pytest.mark.browser
def test_status_page_follows_a_real_cluster(browser_page: Any) -> None:
    from shoal import Client

    with Client(n_workers=2, threads_per_worker=2, dashboard_address=":0") as client:
        link = client.dashboard_link
        assert (
            link is not None and link.startswith("http://127.0.0.1:") and link.endswith("/status")
        )
        page = browser_page
        page.goto(link)
        wait_for(lambda: page.locator("#status-workers tr[data-worker]").count() == 2, timeout=60)

        futures = client.map(make_slowinc(), range(300))
        page.wait_for_selector('#progress .prow[data-prefix="slowinc"]', timeout=10_000)
        wait_for(lambda: int(page.get_attribute("#task-stream", "data-drawn") or 0) > 0, timeout=60)
        assert page.locator('#stream-legend [data-prefix="slowinc"]').count() == 1
        client.gather(futures)
        page.wait_for_selector(
            '#progress .prow[data-prefix="slowinc"][data-memory="300"]', timeout=10_000
        )
        wait_for(
            lambda: int(page.get_attribute("#task-stream", "data-records") or 0) >= 300, timeout=60
        )
        page.screenshot(path=str(ARTIFACTS / "dashboard-cluster.png"), full_page=True)


@pytest.mark.integration
def test_progress_and_performance_report_with_a_real_cluster(tmp_path: Path) -> None:
    from shoal import Client
    from shoal.diagnostics import performance_report, progress

    report = tmp_path / "report.html"
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        with performance_report(filename=report):
            futures = client.map(make_slowinc(), range(40))
            out = io.StringIO()
            progress(futures, notebook=False, file=out)
            assert all(f.status == "finished" for f in futures)
        assert "slowinc" in out.getvalue() and "40/40" in out.getvalue()
    page = report.read_text()
    assert '<tr data-prefix="slowinc" data-kind="compute">' in page
    assert 'id="profile-panel"' in page  # the workers' profile of the block
    assert ">40</td>" in page
