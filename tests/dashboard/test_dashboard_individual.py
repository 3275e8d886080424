"""dask's individual plots, /groups and /exceptions over HTTP (a fake source): the routes,
their JSON, the caps, the navigation; and the shared poll helper every page uses."""

from __future__ import annotations

import json
from importlib import resources

from _fake import FakeSource, counts
from test_dashboard_http import Fetch, run

from shoal.dashboard import _individual, _views

# dask's names (distributed.dashboard.scheduler.applications) for the views shoal draws
SERVED = (
    "/individual-task-stream", "/individual-progress", "/individual-graph",
    "/individual-groups", "/individual-workers-memory", "/individual-cluster-memory",
    "/individual-cpu", "/individual-nprocessing", "/individual-workers",
    "/individual-exceptions", "/individual-scheduler-system", "/individual-profile",
)


def test_individual_plots_json_lists_what_is_served_under_dasks_titles() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        status, headers, body = await fetch("/individual-plots.json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        plots = json.loads(body)
        assert sorted(plots.values()) == sorted(SERVED)
        assert plots["Individual Task Stream"] == "/individual-task-stream"
        assert plots["Individual Cpu"] == "/individual-cpu"  # dask's str.title() rule
        for title, path in plots.items():
            code, _, page = await fetch(path)
            assert code == 200, (title, path)
            assert '<body class="individual">' in page and 'class="topbar"' not in page

    run(check)


def test_each_individual_page_is_its_full_pages_view_and_script() -> None:
    expected = {
        "/individual-task-stream": ('id="task-stream"', "tasks.js"),
        "/individual-progress": ('id="progress"', "status.js"),
        "/individual-graph": ('id="graph"', "graph.js"),
        "/individual-groups": ('id="groups"', "groups.js"),
        "/individual-workers-memory": ('data-columns="name memory used"', "status.js"),
        "/individual-cluster-memory": ('id="cluster-memory"', "status.js"),
        "/individual-cpu": ('data-columns="name cpubar cpu"', "status.js"),
        "/individual-nprocessing": ('data-columns="name processing tasks"', "status.js"),
        "/individual-workers": ('id="workers-table"', "workers.js"),
        "/individual-exceptions": ('id="exceptions"', "exceptions.js"),
        "/individual-scheduler-system": ('id="chart-cpu"', "system.js"),
        "/individual-profile": ('id="profile"', "profile.js"),
    }
    assert set(expected) == set(_individual.PLOTS)

    async def check(src: FakeSource, fetch: Fetch) -> None:
        for path, (marker, script) in expected.items():
            _, headers, page = await fetch(path)
            assert marker in page, path
            assert f'<script src="static/{script}"' in page, path
            policy = headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy
            # JupyterLab's dask panel frames them; the full pages stay unframeable
            assert "frame-ancestors *" in policy, path
        _, headers, _ = await fetch("/status")
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        _, _, page = await fetch("/individual-workers")
        assert 'data-worker="tcp://127.0.0.1:40000"' in page  # rendered from the snapshot
        status, headers, _ = await fetch("/individual-nbytes")  # dask's older name
        assert status == 302 and headers["Location"] == "individual-cluster-memory"
        status, _, page = await fetch("/individual-nope")
        assert status == 404 and "/individual-plots.json" in page

    run(check)


def test_groups_api_answers_the_newest_groups_capped_and_the_page_says_the_cap() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        src.groups = {f"x-{i:04d}": counts(memory=i, processing=1) for i in range(1500)}
        status, _, body = await fetch("/api/groups")
        doc = json.loads(body)
        assert status == 200 and doc["groups"] == 1500 and doc["limit"] == _views.GROUP_ROWS
        assert len(doc["rows"]) == _views.GROUP_ROWS
        assert doc["rows"][0]["name"] == "x-1499" and doc["rows"][0]["memory"] == 1499
        assert set(doc["rows"][0]) >= {"name", "prefix", "memory", "processing", "erred"}
        _, _, body = await fetch("/api/groups?limit=5000")
        assert len(json.loads(body)["rows"]) == _views.MAX_ROWS  # capped
        status, _, body = await fetch("/api/groups?limit=lots")
        assert status == 400 and "limit='lots'" in body and "integer" in body
        status, _, page = await fetch("/groups")
        assert status == 200 and '<a href="groups" class="active">' in page
        assert f"the newest {_views.GROUP_ROWS} at most" in page
        assert f'data-limit="{_views.GROUP_ROWS}"' in page

    run(check)


def test_exceptions_api_answers_the_latest_failures_and_every_page_links_both() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        src.exceptions = [{"key": f"f-{i}", "type": "builtins.ValueError", "exception": "bad",
                           "traceback": "Traceback ...", "worker": "tcp://w", "time": 1.0}
                          for i in range(3)]
        status, _, body = await fetch("/api/exceptions?limit=2")
        doc = json.loads(body)
        assert status == 200 and [r["key"] for r in doc["rows"]] == ["f-0", "f-1"]
        assert doc["count"] == 3 and doc["kept"] == 100
        status, _, page = await fetch("/exceptions")
        assert status == 200 and '<a href="exceptions" class="active">' in page
        assert f"the latest {_views.EXCEPTION_ROWS} at most" in page
        for path in ("/status", "/workers", "/tasks", "/system", "/graph", "/profile",
                     "/groups", "/exceptions"):
            _, _, page = await fetch(path)
            assert '<a href="groups"' in page and '<a href="exceptions"' in page, path

    run(check)


def test_every_page_script_polls_through_the_one_shared_helper() -> None:
    static = resources.files("shoal.dashboard").joinpath("static")
    shared = static.joinpath("shoal.js").read_text()
    assert "function getJSON" in shared and "function poll" in shared
    # profile.js and taskstream.js are also inlined into standalone reports (no shoal.js)
    for name in ("status.js", "tasks.js", "workers.js", "system.js", "graph.js", "groups.js",
                 "exceptions.js"):
        code = static.joinpath(name).read_text()
        assert "fetch(" not in code and "function getJSON" not in code, name
        assert "Shoal.poll(" in code or "S.poll(" in code, name
