"""The scheduler process's resource history for the dashboard's ``/system`` page.

Owns a bounded ring of samples (CPU, memory, host network, open files) and the sampler
task that fills it on the dashboard's event loop, which is the scheduler's. The part that
turns readings into a sample (:func:`sample_of`) and the ring (:class:`SystemHistory`) are
pure; only :class:`SystemMonitor` touches psutil and the clock. Knows nothing about the
scheduler: it measures the process it runs in, as dask's ``SystemMonitor`` does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from typing import NamedTuple

import psutil

logger = logging.getLogger("shoal.dashboard")

QUANTITIES: tuple[str, ...] = ("time", "cpu", "memory", "read_bps", "write_bps", "num_fds")
"""The columns of ``/api/system``: unix time, process CPU (percent of one core), RSS bytes,
host network received and sent (bytes per second) and open file descriptors."""

INTERVAL = 0.5
"""Seconds between samples (dask's ``distributed.admin.system-monitor.interval``)."""

LENGTH = 7200
"""Samples kept (dask's ``distributed.admin.system-monitor.log-length``): an hour at 0.5 s."""


class Reading(NamedTuple):
    """What one look at the process and host returns; counters are cumulative."""

    wall: float  # unix time
    clock: float  # monotonic seconds (rates divide by this, immune to wall-clock steps)
    cpu_seconds: float  # user + system CPU time of the process
    rss: int
    net_recv: int  # host-wide bytes received
    net_sent: int
    num_fds: int  # -1 where the platform has no such count


def sample_of(previous: Reading | None, now: Reading) -> tuple[float, ...]:
    """One row of :data:`QUANTITIES` from two consecutive readings (rates are over the gap
    between them; the first sample, with no previous reading, shows zero rates)."""
    if previous is None or now.clock <= previous.clock:
        return (now.wall, 0.0, float(now.rss), 0.0, 0.0, float(now.num_fds))
    dt = now.clock - previous.clock
    return (
        now.wall,
        max(0.0, 100.0 * (now.cpu_seconds - previous.cpu_seconds) / dt),
        float(now.rss),
        max(0.0, (now.net_recv - previous.net_recv) / dt),
        max(0.0, (now.net_sent - previous.net_sent) / dt),
        float(now.num_fds),
    )


class SystemHistory:
    """The last ``length`` samples, read by cursor like the task stream: a cursor counts
    samples ever added, so a page asks only for what it has not seen."""

    def __init__(self, length: int = LENGTH) -> None:
        self.rows: deque[tuple[float, ...]] = deque(maxlen=max(1, length))
        self.total = 0
        self._previous: Reading | None = None

    def add(self, reading: Reading) -> None:
        self.rows.append(sample_of(self._previous, reading))
        self._previous = reading
        self.total += 1

    def since(self, cursor: int) -> tuple[int, dict[str, list[float]]]:
        """``(new_cursor, columns)``: the samples added after ``cursor`` that are still kept,
        oldest first, one list per quantity."""
        first = max(cursor, self.total - len(self.rows), 0)
        skip = len(self.rows) - (self.total - first)
        rows = list(itertools.islice(self.rows, skip, None))
        columns = {name: [row[i] for row in rows] for i, name in enumerate(QUANTITIES)}
        return self.total, columns


def _configured() -> tuple[float, int]:
    """dask's system-monitor interval and log length, else shoal's defaults."""
    import dask
    from dask.utils import parse_timedelta

    interval = dask.config.get("distributed.admin.system-monitor.interval", None)
    length = dask.config.get("distributed.admin.system-monitor.log-length", None)
    # a bare number is seconds, as dask reads it; a sampler faster than 20 Hz costs the
    # scheduler's loop more than the page gains
    seconds = float(parse_timedelta(interval, default="s")) if interval else INTERVAL
    return max(0.05, seconds), int(length) if length else LENGTH


class SystemMonitor:
    """Samples this process every ``interval`` seconds into a :class:`SystemHistory`.

    Started and owned by the dashboard server (:meth:`start` on its loop, :meth:`close`
    cancels and awaits the sampler).
    """

    def __init__(self, interval: float | None = None, length: int | None = None) -> None:
        default_interval, default_length = _configured()
        self.interval = default_interval if interval is None else interval
        self.history = SystemHistory(default_length if length is None else length)
        self._process = psutil.Process()
        self._task: asyncio.Task[None] | None = None

    def read(self) -> Reading:
        p = self._process
        with p.oneshot():
            times = p.cpu_times()
            rss = p.memory_info().rss
            try:
                fds = p.num_fds()
            except (AttributeError, psutil.Error):  # Windows has handles, not fds
                fds = -1
        try:
            net = psutil.net_io_counters()
            recv, sent = (net.bytes_recv, net.bytes_sent) if net is not None else (0, 0)
        except (OSError, RuntimeError):  # no /proc/net/dev (a sandbox): show no traffic
            recv = sent = 0
        return Reading(time.time(), time.monotonic(), times.user + times.system, rss,
                       recv, sent, fds)

    def sample(self) -> None:
        self.history.add(self.read())

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:  # ends: close() cancels this task
            await asyncio.sleep(self.interval)
            try:
                self.sample()
            except psutil.Error:  # one failed look must not end the history; say so
                logger.exception("system monitor: sampling this process failed; going on")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
