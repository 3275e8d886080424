"""The dashboard behind a path prefix, as JupyterHub's jupyter-server-proxy serves it
(``https://hub/user/alice/proxy/8787/status`` forwards to the scheduler's ``/status`` with the
prefix stripped). Every URL a page emits or fetches must be relative for that to work."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from _fake import FakeSource, counts
from _waiting import wait_for
from aiohttp import web
from conftest import ARTIFACTS, ServedDashboard
from yarl import URL

from shoal.dashboard import open_dashboard
from shoal.dashboard._individual import ALIASES, PLOTS
from shoal.dashboard._server import make_app
from shoal.dashboard._views import PAGES

HTML_PAGES = [p for p, _ in PAGES if p not in ("/info", "/metrics", "/health")
              and not p.endswith(".json")]
PREFIX = "/user/alice/proxy/{port}"
# hop-by-hop and length headers the proxy must not copy (aiohttp sets its own)
_SKIP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def own_routes() -> set[str]:
    """The first path segments of shoal's own routes: "status", "api", "static"..."""
    app = make_app(FakeSource())
    return {r.canonical.split("/")[1] for r in app.router.resources()} - {""}


class _Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "data-api") and v]


def html_urls(page: str) -> list[str]:
    parser = _Urls()
    parser.feed(page)
    return parser.urls


def script_urls(script: str) -> list[str]:
    """Quoted strings a script fetches: fetch("...") calls and the URL lists it polls."""
    return re.findall(r"""fetch\(\s*["']([^"']*)["']""", script) + re.findall(
        r"""["'](/?(?:api|static)/[^"']*)["']""", script)


def root_relative(urls: list[str], routes: set[str]) -> list[str]:
    return [u for u in urls if u.startswith("/") and u.split("/")[1].split("?")[0] in routes]


def test_no_served_page_or_script_has_a_root_relative_url() -> None:
    async def main() -> None:
        src = FakeSource()
        src.prefixes = {"inc": counts(memory=3, processing=1)}
        server = await open_dashboard(src, "127.0.0.1", 0)
        routes = own_routes()
        assert {"status", "api", "static", "workers"} <= routes
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession() as session:
                scripts: set[str] = set()
                # a 404 deep down: its links must climb back to the dashboard's top level
                for path in [*HTML_PAGES, *PLOTS, "/nope", "/a/b/c"]:
                    async with session.get(base + path) as r:
                        page = await r.text()
                    urls = html_urls(page)
                    assert urls, path
                    assert not root_relative(urls, routes), (path, root_relative(urls, routes))
                    scripts |= {u.rsplit("/", 1)[-1] for u in urls if u.endswith(".js")}
                async with session.get(base + "/a/b/c") as r:
                    assert 'href="../../status"' in await r.text()
                assert {"status.js", "shoal.js", "graph.js", "profile.js"} <= scripts
                for name in scripts:
                    async with session.get(f"{base}/static/{name}") as r:
                        assert r.status == 200, name
                        urls = script_urls(await r.text())
                    assert not root_relative(urls, routes), (name, root_relative(urls, routes))
                for path, target in ALIASES.items():
                    async with session.get(base + path, allow_redirects=False) as r:
                        assert r.status == 302
                        assert r.headers["Location"] == target.lstrip("/"), path
        finally:
            await server.close()

    asyncio.run(main())


async def start_proxy(target: int, seen: list[tuple[str, int]]) -> tuple[web.AppRunner, int]:
    """A reverse proxy on loopback (jupyter-server-proxy's behaviour): GET
    ``/user/alice/proxy/<target>/<rest>`` is forwarded to ``127.0.0.1:<target>/<rest>``,
    and the prefix alone, without its trailing slash, to ``/``; anything else is a 404.
    Every request's path and status land in ``seen``."""
    prefix = PREFIX.format(port=target) + "/"
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        if request.path == prefix[:-1]:
            rest = request.path_qs[len(prefix) - 1:].lstrip("/")
        elif request.path.startswith(prefix):
            rest = request.path_qs[len(prefix):]
        else:
            seen.append((request.path_qs, 404))
            return web.Response(status=404, text="not under the proxy's prefix")
        async with session.get(f"http://127.0.0.1:{target}/{rest}", allow_redirects=False) as r:
            body = await r.read()
            headers = {k: v for k, v in r.headers.items() if k.lower() not in _SKIP}
        seen.append((request.path_qs, r.status))
        return web.Response(status=r.status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    app.on_cleanup.append(lambda _: session.close())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


def through_proxy(check: Callable[[str, list[tuple[str, int]]], Awaitable[None]]) -> None:
    async def main() -> None:
        src = FakeSource()
        server = await open_dashboard(src, "127.0.0.1", 0)
        seen: list[tuple[str, int]] = []
        runner, port = await start_proxy(server.port, seen)
        try:
            await check(f"http://127.0.0.1:{port}" + PREFIX.format(port=server.port), seen)
        finally:
            await runner.cleanup()
            await server.close()

    asyncio.run(main())


def test_pages_and_api_load_through_a_prefix_stripping_proxy() -> None:
    async def check(base: str, seen: list[tuple[str, int]]) -> None:
        async with aiohttp.ClientSession() as session:
            # the root is a page that goes on to status (a browser follows it: the test
            # below); its fallback link is relative
            for root in (base, base + "/"):
                async with session.get(root) as r:
                    assert r.status == 200 and str(r.url) == root
                    assert 'href="status"' in await r.text()
            async with session.get(base + "/status") as r:
                assert r.status == 200
                page = await r.text()
            async with session.get(base + "/api/snapshot") as r:
                assert r.status == 200 and "workers" in await r.json()
            async with session.get(base + "/individual-nbytes") as r:
                assert str(r.url) == base + "/individual-cluster-memory"
                individual = await r.text()
            for html, at in ((page, base + "/status"), (individual, str(r.url))):
                for url in html_urls(html):  # each resolves under the prefix and is served
                    async with session.get(URL(at).join(URL(url))) as sub:
                        assert sub.status == 200, (at, url)
        assert all(status < 400 for _, status in seen), seen

    through_proxy(check)


@pytest.mark.browser
def test_status_draws_in_chromium_through_the_proxy(
    served: ServedDashboard, browser_page: Any
) -> None:
    seen: list[tuple[str, int]] = []
    runner, port = served.call(start_proxy(served.server.port, seen))
    try:
        page = browser_page
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
        page.on("response", lambda r: failed.append(f"{r.url} {r.status}")
                if r.status >= 400 else None)
        page.on("pageerror", lambda e: failed.append(str(e)))
        base = f"http://127.0.0.1:{port}" + PREFIX.format(port=served.server.port)
        page.goto(base + "/status")
        workers = str(len(served.source.workers))
        # ends: status.js polled api/snapshot through the proxy and drew the tiles
        wait_for(lambda: page.inner_text("#t-workers") == workers
                 and int(page.get_attribute("body", "data-polls") or 0) >= 2, timeout=10)
        page.click('nav a[href="workers"]')
        wait_for(lambda: page.url == base + "/workers"
                 and page.locator("tr[data-worker]").count() == int(workers), timeout=10)
        page.screenshot(path=str(ARTIFACTS / "dashboard-behind-proxy.png"))
        assert not failed, failed
        assert all(status < 400 for _, status in seen), seen
    finally:
        served.call(runner.cleanup())


@pytest.mark.browser
def test_the_root_goes_to_status_through_the_proxy_with_or_without_a_trailing_slash(
    served: ServedDashboard, browser_page: Any
) -> None:
    seen: list[tuple[str, int]] = []
    runner, port = served.call(start_proxy(served.server.port, seen))
    try:
        page = browser_page
        base = f"http://127.0.0.1:{port}" + PREFIX.format(port=served.server.port)
        for root in (base, base + "/", base + "?x=1"):
            page.goto(root)
            # ends: the root page's script replaced the location with the prefixed status
            wait_for(lambda: page.url.split("?")[0] == base + "/status"
                     and page.locator("#t-workers").count() == 1, timeout=10)
            if "?" in root:
                assert page.url == base + "/status?x=1"
        assert all(status < 400 for _, status in seen), seen
    finally:
        served.call(runner.cleanup())


@pytest.mark.browser
def test_the_root_goes_to_status_when_served_directly(
    served: ServedDashboard, browser_page: Any
) -> None:
    base = f"http://127.0.0.1:{served.server.port}"
    browser_page.goto(base)
    # ends: the root page's script replaced the location with /status
    wait_for(lambda: browser_page.url == base + "/status", timeout=10)


JUPYTERHUB_LINK = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"
"""What JupyterHub deployments set dask's ``distributed.dashboard.link`` to."""


@pytest.mark.integration
def test_client_dashboard_link_follows_the_template_with_and_without_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dask

    from shoal import Client, LocalCluster

    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        port = cluster.scheduler.dashboard.port
        with Client(cluster) as client, Client(cluster.scheduler_address) as bare:
            default = f"http://127.0.0.1:{port}/status"
            assert client.dashboard_link == bare.dashboard_link == default
            with dask.config.set({"distributed.dashboard.link": JUPYTERHUB_LINK}):
                expected = f"/user/alice/proxy/{port}/status"
                assert cluster.dashboard_link == expected
                assert client.dashboard_link == expected
                assert bare.dashboard_link == expected


def test_the_dashboard_is_served_under_dasks_http_prefix() -> None:
    async def main() -> None:
        server = await open_dashboard(FakeSource(), "127.0.0.1", 0, http_prefix="dask/")
        base = f"http://127.0.0.1:{server.port}"
        try:
            assert server.link == f"{base}/dask/status"
            async with aiohttp.ClientSession() as session:
                for path in ("/dask/status", "/dask/workers", "/dask/api/snapshot"):
                    async with session.get(base + path) as r:
                        assert r.status == 200, path
                async with session.get(base + "/dask") as r:
                    assert r.status == 200 and r.url.path == "/dask/status"
                async with session.get(base + "/status") as r:
                    assert r.status == 404
        finally:
            await server.close()

    asyncio.run(main())
