"""The dashboard's ``/profile`` page: the workers' merged statistical profile as an icicle
chart, over a fake source (HTTP) and over a real cluster running work (headless chromium)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _fake import FakeSource, counts
from _waiting import wait_for
from conftest import ARTIFACTS

from shoal import _profile_tree as trees
from shoal.dashboard import open_dashboard


class ProfiledSource(FakeSource):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[Any] = []

    async def profile_tree(self, key: str | None = None) -> dict[str, Any]:
        self.asked.append(key)
        tree = trees.new()
        trees.add_stack(tree, [("work", "app.py", 1, 2)])
        return tree


def fetch_all(src: FakeSource, paths: list[str]) -> list[tuple[int, str]]:
    async def main() -> list[tuple[int, str]]:
        server = await open_dashboard(src, "127.0.0.1", 0)
        out = []
        try:
            async with aiohttp.ClientSession() as session:
                for path in paths:
                    async with session.get(f"http://127.0.0.1:{server.port}{path}") as r:
                        out.append((r.status, await r.text()))
        finally:
            await server.close()
        return out

    return asyncio.run(main())


def test_api_profile_answers_the_sources_tree_and_the_key_prefixes() -> None:
    src = ProfiledSource()
    src.prefixes = {"inc": counts(memory=1), "sum": counts(waiting=1)}
    (status, body), (status_key, _) = fetch_all(src, ["/api/profile", "/api/profile?key=inc"])
    assert status == status_key == 200
    doc = json.loads(body)
    assert doc["prefixes"] == ["inc", "sum"]
    assert doc["tree"]["children"]["work;app.py;1"]["count"] == 1
    assert src.asked == [None, "inc"]


def test_profile_page_loads_its_script_and_is_in_the_navigation() -> None:
    ((status, page), (status_js, script)) = fetch_all(
        ProfiledSource(), ["/profile", "/static/profile.js"])
    assert status == status_js == 200
    assert 'src="static/profile.js"' in page and 'data-api="api/profile"' in page
    assert '<a href="profile" class="active">Profile</a>' in page
    assert "shoalProfile" in script


def test_a_source_without_a_profile_answers_not_found() -> None:
    ((status, _),) = fetch_all(FakeSource(), ["/api/profile"])
    assert status == 404


def make_spinner() -> Any:
    # Defined inside a function so cloudpickle ships it by value: worker processes cannot
    # import this test module.
    def profiled_marker(path: str) -> int:
        spins = 0
        while not os.path.exists(path):
            spins += 1
        return spins

    return profiled_marker


@pytest.mark.integration
@pytest.mark.browser
def test_profile_page_draws_the_work_of_a_real_cluster(browser_page: Any, tmp_path: Path) -> None:
    from shoal import Client

    stop = str(tmp_path / "stop")
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        link = client.dashboard_link
        assert link is not None
        fut = client.submit(make_spinner(), stop, pure=False)
        try:
            page = browser_page
            page.goto(link.replace("/status", "/profile"))
            marker = 'g.profile-node[data-name="profiled_marker"]'

            def drawn() -> bool:
                if page.locator(marker).count():
                    return True
                page.click("#profile-refresh")
                return False

            wait_for(drawn, timeout=60, interval=0.5)
            assert int(page.get_attribute("#profile", "data-count") or 0) > 0
            page.screenshot(path=str(ARTIFACTS / "dashboard-profile.png"), full_page=True)
        finally:
            open(stop, "w").close()
        fut.result(timeout=60)
