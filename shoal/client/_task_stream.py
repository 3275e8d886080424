"""The task stream as dask hands it out: ``client.get_task_stream()`` and the
``get_task_stream()`` context manager, reading the scheduler's stored stream.

Records are dask's format: ``{"key", "worker", "status" ("OK"/"error"), "nbytes",
"type", "typename", "thread", "metadata", "startstops": ({"action" ("compute" or
"transfer"), "start", "stop"},)}``; a transfer of inputs is a record of its own.
``client.get_task_stream()`` returns a tuple of them, ``ts.data`` a list (as dask's).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from dask.utils import key_split, parse_timedelta

if TYPE_CHECKING:
    from shoal.client._client import Client


def _when(value: Any) -> float | None:
    """A time: a number (``time.time()``), or a string like ``"60s"`` meaning that long ago."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return time.time() - float(parse_timedelta(value))
    raise TypeError(f"start/stop take a time.time() value or a duration like '60s', got {value!r}")


def _check_plot(plot: Any) -> bool:
    """Whether to save the stream to a file (``plot="save"``); other plots are refused."""
    if plot == "save":
        return True
    if plot:
        raise NotImplementedError(
            "get_task_stream(plot=True) returns a bokeh figure, which shoal does not make: "
            "use plot='save' with filename= (a standalone HTML task stream), "
            "performance_report(filename=...), or the dashboard's task stream")
    return False


def _drawn(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """dask-format records as the report's task stream draws them: one bar per start/stop."""
    out = []
    for r in records:
        for ss in r.get("startstops", ()):
            out.append({"key": str(r["key"]), "prefix": key_split(r["key"]),
                        "worker": r["worker"], "thread": r.get("thread", 0) or 0,
                        "start": ss["start"], "stop": ss["stop"],
                        "kind": "transfer" if ss.get("action") == "transfer" else "compute"})
    return out


def save_task_stream(records: list[dict[str, Any]], filename: str,
                     started: float | None = None, stopped: float | None = None) -> None:
    """Write ``records`` (dask's format) to ``filename`` as a standalone HTML page (the
    task stream and the time per prefix of ``performance_report``)."""
    from shoal.diagnostics._report import render_report

    bars = _drawn(records)
    if started is None:
        started = min((b["start"] for b in bars), default=time.time())
    if stopped is None:
        stopped = max((b["stop"] for b in bars), default=started)
    document = render_report(bars, started=started, stopped=stopped,  # type: ignore[arg-type]
                             title="shoal task stream")
    with open(os.fspath(filename), "w", encoding="utf-8") as f:
        f.write(document)


async def _get_task_stream(self: Client, start: Any = None, stop: Any = None,
                           count: int | None = None, since: int | None = None) -> Any:
    _total, records = await self._request("task_stream_records", since=since, start=_when(start),
                                          stop=_when(stop), count=count)
    # dask's shapes: a tuple of records, each record's ``startstops`` a tuple too (the wire
    # carries lists)
    for r in records:
        ss = r.get("startstops")
        if type(ss) is list:
            r["startstops"] = tuple(ss)
    return tuple(records)


def get_task_stream_method(self: Client, start: Any = None, stop: Any = None, count: int | None = None,
                    plot: Any = False, filename: str = "task-stream.html",
                    bokeh_resources: Any = None) -> Any:
    """The records of the task stream (what the dashboard's Task Stream shows), kept by
    the scheduler: those ending between ``start`` and ``stop`` (``time.time()`` values or
    durations ago like ``"60s"``), the last ``count`` of them, as a tuple (dask's shape).

    With ``plot="save"`` the records are also written to ``filename`` as a standalone
    HTML page, and ``(records, None)`` is returned (dask: ``(records, figure)``; shoal makes
    no bokeh figure).

    Raises:
        NotImplementedError: ``plot=True`` (shoal makes no bokeh figures).
    """
    save = _check_plot(plot)
    self._check_open()
    if save and self.asynchronous:
        raise NotImplementedError("get_task_stream(plot='save') on an asynchronous client: "
                                  "use `async with get_task_stream(plot='save', filename=...)`")
    records: Any = self.sync(_get_task_stream, self, start, stop, count)
    if save:
        save_task_stream(records, filename)
        return records, None
    return records


async def _task_stream_position(self: Client) -> int:
    total, _ = await self._request("task_stream_records", since=None, start=None, stop=None,
                                   count=0)
    return int(total)


class TaskStream:
    """``with get_task_stream(client) as ts: ...``; afterwards ``ts.data`` holds the
    records of what ran inside the block (dask's context manager). With ``plot="save"``
    they are also written to ``filename`` as a standalone HTML page; ``ts.figure`` is
    always None (dask's bokeh figure: shoal makes none).

    Raises:
        NotImplementedError: ``plot=True``.
    """

    def __init__(self, client: Client | None = None, plot: Any = False,
                 filename: str = "task-stream.html") -> None:
        self._save = _check_plot(plot)
        self.filename = filename
        self.client = client
        self.data: list[dict[str, Any]] = []
        self.figure: Any = None
        self._since = 0
        self._started = 0.0

    def _client(self) -> Client:
        if self.client is None:
            from shoal.client._current import get_client

            self.client = get_client()
        return self.client

    def __enter__(self) -> TaskStream:
        c = self._client()
        self._since = c.sync(_task_stream_position, c, asynchronous=False)
        self._started = time.time()
        return self

    def __exit__(self, *exc: Any) -> None:
        c = self._client()
        self.data.extend(c.sync(_get_task_stream, c, since=self._since, asynchronous=False))
        self._saved()

    async def __aenter__(self) -> TaskStream:
        c = self._client()
        self._since = await c.sync(_task_stream_position, c, asynchronous=True)
        self._started = time.time()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        c = self._client()
        self.data.extend(await c.sync(_get_task_stream, c, since=self._since, asynchronous=True))
        self._saved()

    def _saved(self) -> None:
        if self._save:
            save_task_stream(self.data, self.filename, self._started, time.time())


get_task_stream = TaskStream  # dask's name for the context manager
