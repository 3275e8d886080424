"""/groups, /exceptions and the individual plots over a real local cluster: what the APIs
and pages show must be what the scheduler did."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _waiting import wait_for
from conftest import ARTIFACTS

pytestmark = pytest.mark.integration


def make_failing() -> Any:
    # Defined inside a function so cloudpickle ships it by value: worker processes cannot
    # import this test module.
    def explode(x: int) -> int:
        raise ZeroDivisionError(f"no luck with {x}")

    return explode


@pytest.fixture
def client() -> Iterator[Any]:
    from shoal import Client

    with Client(n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


def get(client: Any, path: str) -> tuple[int, str]:
    url = client.dashboard_link.replace("/status", path)
    with urllib.request.urlopen(url, timeout=30) as r:  # ends: the timeout
        return r.status, r.read().decode()


def get_json(client: Any, path: str) -> Any:
    return json.loads(get(client, path)[1])


def test_exceptions_api_lists_a_failed_task_with_its_traceback_not_its_dependents(
    client: Any,
) -> None:
    assert get_json(client, "/api/exceptions")["rows"] == []
    bad = client.submit(make_failing(), 7, key="explode-1")
    after = client.submit(lambda x: x, bad, key="after-1")
    with pytest.raises(ZeroDivisionError):
        after.result(timeout=60)
    doc = get_json(client, "/api/exceptions")
    assert [r["key"] for r in doc["rows"]] == ["explode-1"]  # "after-1" failed through it
    (row,) = doc["rows"]
    assert row["type"].endswith("ZeroDivisionError") and row["exception"] == "no luck with 7"
    assert "explode" in row["traceback"] and "no luck with 7" in row["traceback"]
    assert row["worker"].startswith("tcp://") and row["time"] > 0
    assert doc["kept"] == 100  # dask's distributed.diagnostics.erred-tasks.max-history


def test_groups_api_counts_each_layer_of_a_collection(client: Any) -> None:
    da = pytest.importorskip("dask.array")
    x = da.ones(10, chunks=2)
    y = (x + 1).persist()
    layer = y.name  # its keys are (layer, i): one task group
    wait_for(lambda: any(r["name"] == layer and r["memory"] == 5
                         for r in get_json(client, "/api/groups")["rows"]), timeout=60)
    doc = get_json(client, "/api/groups")
    (row,) = [r for r in doc["rows"] if r["name"] == layer]
    assert row["prefix"] == "add" and row["erred"] == 0 and row["processing"] == 0
    assert doc["groups"] >= 1 and doc["limit"] == 100
    del y
    wait_for(lambda: all(r["name"] != layer for r in get_json(client, "/api/groups")["rows"]),
             timeout=60)  # released: its row goes with its last task


def test_every_listed_individual_plot_is_served_by_a_real_scheduler(client: Any) -> None:
    plots = get_json(client, "/individual-plots.json")
    assert "Individual Task Stream" in plots and "Individual Progress" in plots
    for path in plots.values():
        status, page = get(client, path)
        assert status == 200 and 'class="individual"' in page, path


@pytest.mark.browser
def test_exceptions_and_groups_pages_show_a_failed_run(client: Any, browser_page: Any) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    bad = client.submit(make_failing(), 3, key="explode-3")
    with pytest.raises(ZeroDivisionError):
        bad.result(timeout=60)
    page.goto(client.dashboard_link.replace("/status", "/exceptions"))
    row = page.locator('#exceptions tr[data-key="explode-3"]')
    wait_for(lambda: row.count() == 1, timeout=30)
    assert "ZeroDivisionError: no luck with 3" in row.inner_text()
    row.locator("summary").click()
    assert "raise ZeroDivisionError" in row.locator("pre.traceback").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-exceptions.png"), full_page=True)

    page.goto(client.dashboard_link.replace("/status", "/groups"))
    group = page.locator('#groups .prow[data-group="explode"]')
    wait_for(lambda: group.count() == 1, timeout=30)
    assert group.get_attribute("data-erred") == "1"
    assert "newest first" in page.locator("#groups-summary").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-groups.png"), full_page=True)
    assert not errors, errors
