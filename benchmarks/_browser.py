"""Headless Debian chromium, driven by Playwright, kept open on a page during a workload."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
def open_browser(timeout_s: float = 30.0) -> Iterator[Any]:
    """Headless chromium with one blank page, open for the body; yields the Playwright page.

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
            page.set_default_timeout(timeout_s * 1000)
            yield page
        finally:
            browser.close()


def chromium_cpu_seconds() -> float:
    """CPU seconds used so far by the chromium processes this process started."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name():
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
    return total
