"""Headless Debian chromium, driven by Playwright, kept open on a page during a workload."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "chromium is not installed: `apt-get install chromium` (never `playwright install`)"


def chromium_path() -> str | None:
    """The chromium executable, or None if it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@contextmanager
def open_page(url: str, timeout_s: float = 30.0, settle_s: float = 2.0) -> Iterator[str]:
    """Open ``url`` in headless chromium and keep it open for the body; yields the page title.

    After the load event the page runs for ``settle_s`` before the body starts, so the body
    measures a dashboard that is being watched (polling, redrawing), not one still starting up.
    Raises RuntimeError with the install command if chromium is missing.
    """
    path = chromium_path()
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_timeout(settle_s * 1000)
            yield page.title()
        finally:
            browser.close()
