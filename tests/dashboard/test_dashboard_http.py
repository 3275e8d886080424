"""The real aiohttp server on an OS-chosen port, over a fake source."""

from __future__ import annotations

import asyncio
import json
import posixpath
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from _fake import FakeSource, counts

from shoal.dashboard import open_dashboard, open_dashboard_with_fallback

Fetch = Callable[..., Awaitable[tuple[int, dict[str, str], str]]]


def run(coro_fn: Callable[[FakeSource, Fetch], Awaitable[None]]) -> None:
    """Serve a FakeSource on port 0, hand the test a fetch(path) helper, always close."""

    async def main() -> None:
        src = FakeSource()
        src.prefixes = {"inc": counts(memory=3, processing=1), "sum": counts(waiting=1)}
        server = await open_dashboard(src, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as session:

                async def fetch(path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
                    url = f"http://127.0.0.1:{server.port}{path}"
                    async with session.request(method, url, allow_redirects=False) as r:
                        return r.status, dict(r.headers), await r.text()

                await coro_fn(src, fetch)
        finally:
            await server.close()

    asyncio.run(main())


def test_server_reports_bound_port_and_link() -> None:
    async def main() -> None:
        server = await open_dashboard(FakeSource(), "127.0.0.1", 0)
        try:
            assert server.port > 0
            assert server.link == f"http://127.0.0.1:{server.port}/status"
        finally:
            await server.close()

    asyncio.run(main())


def test_health() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        status, _, body = await fetch("/health")
        assert (status, body) == (200, "ok")

    run(check)


def test_info_json() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        status, headers, body = await fetch("/info")
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        doc = json.loads(body)
        assert doc["totals"]["workers"] == 2
        assert {w["address"] for w in doc["workers"]} == {w["address"] for w in src.workers}

    run(check)


def test_metrics_content_type_and_samples() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        status, headers, body = await fetch("/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE shoal_scheduler_tasks gauge" in body
        assert 'shoal_scheduler_tasks{state="memory"} 3' in body
        assert "shoal_scheduler_workers 2" in body

    run(check)


def test_unknown_path_is_html_404_with_links() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        for path in ("/nope", "/static/missing.js", "/static/../_server.py", "/api/other"):
            status, headers, body = await fetch(path)
            assert status == 404, path
            assert headers["Content-Type"].startswith("text/html")
            # relative links climb to the top level (from the path the client normalised)
            up = "../" * (posixpath.normpath(path).count("/") - 1)
            assert f'href="{up}status"' in body and f'href="{up}metrics"' in body, path

    run(check)


def test_read_only_no_mutating_methods() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        for path in ("/status", "/info", "/api/snapshot", "/api/task-stream", "/shutdown"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                status, _, _ = await fetch(path, method)
                assert status in (404, 405), (method, path, status)

    run(check)


def test_status_page_and_vendored_assets_are_local() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        status, headers, page = await fetch("/status")
        assert status == 200
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "http://" not in page and "https://" not in page  # nothing from a CDN
        for asset in ("taskstream.js", "status.js", "shoal.css"):
            assert f'"static/{asset}"' in page
            code, _, body = await fetch(f"/static/{asset}")
            assert code == 200 and body
            assert "https://" not in body
        # the root: a page whose one inline script (allowed by its hash alone) goes on to
        # status, relative to where the browser is (a proxy's prefix, with or without "/")
        status, headers, page = await fetch("/")
        assert status == 200 and 'href="status"' in page
        (scripts,) = [d for d in headers["Content-Security-Policy"].split(";")
                      if d.strip().startswith("script-src")]
        assert "'sha256-" in scripts and "'unsafe-inline'" not in scripts
        assert page.count("<script>") == 1

    run(check)


def test_workers_page() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        status, _, page = await fetch("/workers")
        assert status == 200
        assert page.count("<tr data-worker=") == 2

    run(check)


def test_task_stream_increments_follow_the_cursor() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        src.add_record("inc-0", 0, 0, 1.0, 2.0)
        _, _, body = await fetch("/api/task-stream?since=0")
        first: dict[str, Any] = json.loads(body)
        assert first["cursor"] == 1 and [r["key"] for r in first["records"]] == ["inc-0"]
        src.add_record("inc-1", 1, 1, 2.0, 3.0)
        src.add_record("inc-2", 1, 0, 2.0, 3.0, kind="transfer")
        _, _, body = await fetch(f"/api/task-stream?since={first['cursor']}")
        second = json.loads(body)
        assert second["cursor"] == 3
        assert [(r["key"], r["kind"]) for r in second["records"]] == [
            ("inc-1", "compute"),
            ("inc-2", "transfer"),
        ]
        status, _, body = await fetch("/api/task-stream?since=abc")
        assert status == 400 and "cursor" in body

    run(check)


def test_task_stream_request_builds_one_bounded_page_of_the_newest_records() -> None:
    from shoal.dashboard import _views

    async def check(src: FakeSource, fetch: Fetch) -> None:
        n = _views.MAX_STREAM_RECORDS * 3
        for i in range(n):
            src.add_record(f"inc-{i}", 0, 0, float(i), i + 0.5)
        _, _, body = await fetch("/api/task-stream?since=0")
        doc = json.loads(body)
        assert doc["cursor"] == n
        assert len(doc["records"]) == _views.MAX_STREAM_RECORDS
        assert doc["records"][-1]["key"] == f"inc-{n - 1}"
        assert doc["dropped"] == n - _views.MAX_STREAM_RECORDS
        assert src.largest_page <= _views.MAX_STREAM_RECORDS  # never the whole history

    run(check)


def test_snapshot_api_reflects_changes() -> None:
    async def check(src: FakeSource, fetch: Fetch) -> None:
        _, _, body = await fetch("/api/snapshot")
        assert json.loads(body)["prefixes"]["inc"]["memory"] == 3
        src.prefixes["inc"]["memory"] = 4
        _, _, body = await fetch("/api/snapshot")
        assert json.loads(body)["prefixes"]["inc"]["memory"] == 4

    run(check)


def test_taken_port_raises_oserror_and_fallback_warns() -> None:
    async def main() -> None:
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            taken = blocker.getsockname()[1]
            with pytest.raises(OSError):
                await open_dashboard(FakeSource(), "127.0.0.1", taken)
            server, warning = await open_dashboard_with_fallback(FakeSource(), "127.0.0.1", taken)
            try:
                assert server.port not in (0, taken)
                assert warning is not None
                assert str(taken) in warning and str(server.port) in warning
            finally:
                await server.close()
        server, warning = await open_dashboard_with_fallback(FakeSource(), "127.0.0.1", 0)
        async with server:
            assert warning is None

    asyncio.run(main())


def test_dasks_dashboard_tls_config_serves_the_scheduler_dashboard_over_https(tmp_path):
    import ssl

    import dask

    from shoal import Security
    from shoal.scheduler._server import _dashboard_tls

    sec = Security.temporary()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(sec.tls_scheduler_cert)
    key.write_text(sec.tls_scheduler_key)
    assert _dashboard_tls() is None  # not configured: plain HTTP (or the TLS cluster's cert)
    with dask.config.set({"distributed.scheduler.dashboard.tls.cert": str(cert),
                          "distributed.scheduler.dashboard.tls.key": str(key)}):
        context = _dashboard_tls()

    async def main() -> None:
        server = await open_dashboard(FakeSource(), "127.0.0.1", 0, context)
        client = ssl.create_default_context(cadata=sec.tls_ca_file)
        client.check_hostname = False  # the certificate names shoal-internal
        try:
            assert server.link.startswith("https://")
            async with aiohttp.ClientSession() as session, session.get(server.link,
                                                                       ssl=client) as r:
                assert r.status == 200
        finally:
            await server.close()

    asyncio.run(main())
