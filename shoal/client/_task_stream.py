"""The task stream as dask hands it out: ``client.get_task_stream()`` and the
``get_task_stream()`` context manager, reading the scheduler's stored stream.

Records are dask's format: ``{"key", "worker", "status" ("OK"/"error"), "nbytes",
"type", "typename", "thread", "metadata", "startstops": [{"action" ("compute" or
"transfer"), "start", "stop"}]}``; a transfer of inputs is a record of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dask.utils import parse_timedelta

if TYPE_CHECKING:
    from shoal.client._client import Client


def _when(value: Any) -> float | None:
    """A time: a number (``time.time()``), or a string like ``"60s"`` meaning that long ago."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return time.time() - float(parse_timedelta(value))
    raise TypeError(f"start/stop take a time.time() value or a duration like '60s', got {value!r}")


def _no_plot(plot: Any) -> None:
    if plot:
        raise NotImplementedError("get_task_stream(plot=...) needs bokeh figures, which shoal "
                                  "does not make; the dashboard shows the task stream")


async def _get_task_stream(self: Client, start: Any = None, stop: Any = None,
                           count: int | None = None, since: int | None = None) -> Any:
    _total, records = await self._request("task_stream_records", since=since, start=_when(start),
                                          stop=_when(stop), count=count)
    return list(records)


def get_task_stream_method(self: Client, start: Any = None, stop: Any = None, count: int | None = None,
                    plot: Any = False, filename: str = "task-stream.html",
                    bokeh_resources: Any = None) -> list[dict[str, Any]]:
    """The records of the task stream (what the dashboard's Task Stream shows), kept by
    the scheduler: those ending between ``start`` and ``stop`` (``time.time()`` values or
    durations ago like ``"60s"``), the last ``count`` of them.

    Raises:
        NotImplementedError: ``plot`` (shoal makes no bokeh figures).
    """
    _no_plot(plot)
    self._check_open()
    records: list[dict[str, Any]] = self.sync(_get_task_stream, self, start, stop, count)
    return records


async def _task_stream_position(self: Client) -> int:
    total, _ = await self._request("task_stream_records", since=None, start=None, stop=None,
                                   count=0)
    return int(total)


class TaskStream:
    """``with get_task_stream(client) as ts: ...``; afterwards ``ts.data`` holds the
    records of what ran inside the block (dask's context manager)."""

    def __init__(self, client: Client | None = None, plot: Any = False,
                 filename: str = "task-stream.html") -> None:
        _no_plot(plot)
        self.client = client
        self.data: list[dict[str, Any]] = []
        self._since = 0

    def _client(self) -> Client:
        if self.client is None:
            from shoal.client._client import get_client

            self.client = get_client()
        return self.client

    def __enter__(self) -> TaskStream:
        c = self._client()
        self._since = c.sync(_task_stream_position, c, asynchronous=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        c = self._client()
        self.data.extend(c.sync(_get_task_stream, c, since=self._since, asynchronous=False))

    async def __aenter__(self) -> TaskStream:
        c = self._client()
        self._since = await c.sync(_task_stream_position, c, asynchronous=True)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        c = self._client()
        self.data.extend(await c.sync(_get_task_stream, c, since=self._since, asynchronous=True))


get_task_stream = TaskStream  # dask's name for the context manager
