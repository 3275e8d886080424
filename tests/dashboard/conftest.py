"""Fixtures shared by the dashboard tests: a dashboard served from a background loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from _fake import FakeSource

from benchmarks._browser import CHROMIUM, CHROMIUM_ARGS  # one list of flags for every headless run
from shoal.dashboard import DashboardServer, open_dashboard

T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class LiveFakeSource(FakeSource):
    """A FakeSource on the wall clock, so the browser's time window shows its records."""

    def snapshot(self):  # type: ignore[no-untyped-def]
        self.now = time.time()
        for w in self.workers:
            w["last_seen"] = self.now - 0.2
        return super().snapshot()


class ServedDashboard:
    """A dashboard over a LiveFakeSource, served by an event loop on its own thread.

    Tests change the source only through :meth:`mutate`, which runs on the loop thread,
    as the scheduler would.
    """

    def __init__(self) -> None:
        self.source = LiveFakeSource()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dashboard-loop")
        self._thread.start()
        self.server: DashboardServer = self.call(open_dashboard(self.source, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.port}"

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def mutate(self, fn: Callable[[LiveFakeSource], T]) -> T:
        async def apply() -> T:
            return fn(self.source)

        result: T = self.call(apply())
        return result

    def close(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def served() -> Iterator[ServedDashboard]:
    s = ServedDashboard()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A fresh headless chromium page (Debian's chromium; never a downloaded build)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium) first")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield page
        finally:
            browser.close()
