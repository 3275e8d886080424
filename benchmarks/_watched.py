"""The dashboard workload: what chromium watching ``/status`` costs the throughput of maps.

Both sides run in one process, on one cluster with the dashboard on and one chromium open, so
the ratio compares the same scheduler in the same phase of a shared machine: blocks of maps of
no-op tasks alternate between chromium on ``/status`` (watched: the page polls and redraws) and
chromium on ``about:blank`` (unwatched: the dashboard serves nothing). A block lasts several of
the page's 1 s polls, so every watched block pays for the polls that fall in it; the sides
alternate in the order U W W U U W ..., so a drift of the machine's speed weighs on both.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks import _tasks
from benchmarks._browser import chromium_cpu_seconds, open_browser

SETTLE_S = 2.0  # after loading /status: the page runs (polls, draws), it is not starting up
BLANK_SETTLE_S = 0.5  # after leaving it: requests in flight end


def block_sides(pairs: int) -> list[bool]:
    """Watched (True) or not for each block: U W, W U, U W, ... (``pairs`` of each)."""
    return [side for i in range(pairs) for side in ((False, True) if i % 2 == 0 else (True, False))]


class _Maps:
    """Maps of ``n_tasks`` no-ops, each on fresh keys, timed in blocks."""

    def __init__(self, client: Any, n_tasks: int) -> None:
        self.client, self.n_tasks, self.next_key = client, n_tasks, 0
        self.client.gather(self.client.map(_tasks.noop, range(-200, 0)))  # warm-up

    def block(self, block_s: float) -> tuple[float, float]:
        """Maps, one after another, until ``block_s`` passed: (tasks, seconds)."""
        tasks, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < block_s:
            keys = range(self.next_key, self.next_key + self.n_tasks)
            self.next_key += self.n_tasks
            results = self.client.gather(self.client.map(_tasks.noop, keys))
            if len(results) != self.n_tasks or any(r is not None for r in results):
                raise AssertionError(f"gather returned {len(results)} results, not Nones")
            tasks += self.n_tasks
        return tasks, elapsed


def _client(api: Any, dashboard: bool) -> Any:
    """2 worker processes x 1 thread, as in every workload; the dashboard on or off."""
    return api.Client(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0" if dashboard else None)


def dashboard(
    api: Any, n_tasks: int, block_s: float, pairs: int, dashboard: bool
) -> dict[str, float]:
    """With ``dashboard``: the watched and unwatched medians of ``pairs`` blocks each, their
    ratio and chromium's CPU on either side. Without: the median of ``pairs`` blocks on a
    cluster with ``dashboard_address=None`` (a figure for information, from another process).
    """
    if not dashboard:
        with _client(api, dashboard=False) as client:
            maps = _Maps(client, n_tasks)
            blocks = [maps.block(block_s) for _ in range(pairs)]
        return {"tasks_per_s": statistics.median(tasks / seconds for tasks, seconds in blocks)}
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, float] = {True: 0.0, False: 0.0}
    wall: dict[bool, float] = {True: 0.0, False: 0.0}
    with _client(api, dashboard=True) as client, open_browser() as page:
        status = client.dashboard_link
        if not status.endswith("/status"):
            raise AssertionError(f"dashboard_link {status!r} is not the /status page")
        maps = _Maps(client, n_tasks)
        showing: bool | None = None
        for watched in block_sides(pairs):
            if watched != showing:
                page.goto(status if watched else "about:blank", wait_until="load")
                page.wait_for_timeout((SETTLE_S if watched else BLANK_SETTLE_S) * 1000)
                showing = watched
            before = chromium_cpu_seconds()
            tasks, seconds = maps.block(block_s)
            cpu[watched] += chromium_cpu_seconds() - before
            wall[watched] += seconds
            rates[watched].append(tasks / seconds)
    watched_rate, unwatched_rate = (statistics.median(rates[side]) for side in (True, False))
    # Each watched block over the unwatched block next to it (U W | W U | ...): how far the
    # machine's phases move the ratio within this run.
    pair_ratios = [w / u for w, u in zip(rates[True], rates[False], strict=True)]
    return {
        "watched_tasks_per_s": watched_rate,
        "unwatched_tasks_per_s": unwatched_rate,
        "watched_over_unwatched": watched_rate / unwatched_rate,
        "pair_ratio_min": min(pair_ratios),
        "pair_ratio_max": max(pair_ratios),
        "watched_browser_cpu_share": cpu[True] / wall[True],
        "unwatched_browser_cpu_share": cpu[False] / wall[False],
    }
