"""``performance_report``: write what ran inside a ``with`` block to a standalone HTML file.

Owns the per-prefix summary (pure) and the HTML document. The task stream is drawn by the
dashboard's own ``taskstream.js``, and the statistical profile of the block by its
``profile.js``, inlined so the file works offline with no server. Reads the cluster only
through ``client._task_stream_since(cursor)`` and ``client.profile(start=...)``.
"""

from __future__ import annotations

import datetime
import html
import inspect
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from shoal.dashboard._source import TaskStreamRecord

logger = logging.getLogger("shoal.diagnostics")


@dataclass(frozen=True)
class PrefixTiming:
    """Timing of every record of one prefix and kind ('compute' or 'transfer')."""

    prefix: str
    kind: str
    count: int
    total: float
    mean: float
    max: float


def summarize(records: Iterable[Mapping[str, Any]]) -> list[PrefixTiming]:
    """Per-(prefix, kind) count, total, mean and max duration; biggest total first."""
    acc: dict[tuple[str, str], list[float]] = {}
    for r in records:
        duration = max(0.0, float(r["stop"]) - float(r["start"]))
        slot = acc.setdefault((str(r["prefix"]), str(r.get("kind", "compute"))), [0, 0.0, 0.0])
        slot[0] += 1
        slot[1] += duration
        slot[2] = max(slot[2], duration)
    rows = [
        PrefixTiming(prefix, kind, int(n), total, total / n, longest)
        for (prefix, kind), (n, total, longest) in acc.items()
    ]
    rows.sort(key=lambda t: (t.kind != "compute", -t.total, t.prefix))
    return rows


def format_seconds(s: float) -> str:
    """``0.0123`` -> ``"12.3 ms"``."""
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return f"{s / 60:.1f} min"


def _static(name: str) -> str:
    return resources.files("shoal.dashboard").joinpath("static", name).read_text("utf-8")


def _script_safe_json(value: Any) -> str:
    # "</script>" or "<!--" inside a key must not end the script element
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


REPORT_SCRIPT = """
(function () {
  var TS = window.ShoalTaskStream;
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var canvas = document.getElementById("task-stream");
  var stream = new TS.TaskStream(canvas, { maxRecords: data.records.length + 1 });
  stream.add(data.records);
  var prefixes = {};
  data.records.forEach(function (r) { if (r.kind !== "transfer") prefixes[r.prefix] = 1; });
  TS.renderLegend(document.getElementById("stream-legend"), Object.keys(prefixes));
  stream.attachTooltip(document.getElementById("stream-tooltip"));
  document.querySelectorAll("[data-swatch]").forEach(function (el) {
    el.style.background = el.dataset.swatch === "transfer" ? TS.TRANSFER_COLOR : TS.prefixColor(el.dataset.swatch);
  });
  function draw() { stream.draw(data.t0, Math.max(data.t1, data.t0 + 1e-3)); }
  window.addEventListener("resize", draw);
  draw();
})();
"""


def render_report(
    records: list[TaskStreamRecord] | list[dict[str, Any]],
    *,
    started: float,
    stopped: float,
    title: str = "shoal performance report",
    profile: dict[str, Any] | None = None,
) -> str:
    """The report document: summary figures, the task stream and the per-prefix table.

    Args:
        records: task-stream records produced inside the measured block.
        started, stopped: unix times of entering and leaving the block.
        title: page title.
        profile: the workers' statistical profile of the block (``client.profile``
            format); None leaves its section out.
    """
    timings = summarize(records)
    compute = [r for r in records if r.get("kind", "compute") == "compute"]
    workers = {r["worker"] for r in records}
    threads = {(r["worker"], r.get("thread", 0)) for r in compute}
    wall = max(0.0, stopped - started)
    busy = sum(t.total for t in timings if t.kind == "compute")
    t0 = min([started, *(float(r["start"]) for r in records)])
    t1 = max([stopped, *(float(r["stop"]) for r in records)])
    when = datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")

    figures = [
        ("Duration", format_seconds(wall)),
        ("Tasks", f"{len(compute):,}"),
        ("Transfers", f"{len(records) - len(compute):,}"),
        ("Workers", f"{len(workers):,}"),
        ("Threads used", f"{len(threads):,}"),
        ("Compute time", format_seconds(busy)),
        ("Parallelism", f"{busy / wall:.2f}x" if wall > 0 else "n/a"),
    ]
    tiles = "".join(
        f'<div class="tile"><div class="label">{html.escape(k)}</div>'
        f'<div class="value">{html.escape(v)}</div></div>'
        for k, v in figures
    )
    rows = "".join(
        f'<tr data-prefix="{html.escape(t.prefix)}" data-kind="{t.kind}">'
        f'<td><span class="swatch" data-swatch="{"transfer" if t.kind == "transfer" else html.escape(t.prefix)}">'
        f"</span> <code>{html.escape(t.prefix)}</code></td><td>{t.kind}</td>"
        f'<td class="num">{t.count:,}</td><td class="num">{format_seconds(t.total)}</td>'
        f'<td class="num">{format_seconds(t.mean)}</td><td class="num">{format_seconds(t.max)}</td>'
        f'<td class="num">{100 * t.total / busy if busy and t.kind == "compute" else 0:.1f}%</td></tr>'
        for t in timings
    )
    if not rows:
        rows = '<tr class="empty"><td colspan="7">No tasks ran inside the report block.</td></tr>'
    data = {"t0": t0, "t1": t1, "records": list(records)}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_static("shoal.css")}
.report-meta {{ color: var(--muted); margin: 0 0 14px; }}
td .swatch {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px; vertical-align: -1px; }}
</style></head>
<body>
<header class="topbar"><span class="brand">shoal</span><span>{html.escape(title)}</span></header>
<main>
<p class="report-meta">Recorded {html.escape(when)} for {html.escape(format_seconds(wall))}.
Times are seconds from the start of the block.</p>
<section class="tiles">{tiles}</section>
<section class="panel"><h2>Task stream <span class="muted">one row per worker thread</span></h2>
<div class="stream-wrap"><canvas id="task-stream"></canvas><div class="tooltip" id="stream-tooltip"></div></div>
<div class="legend" id="stream-legend"></div></section>
<section class="panel"><h2>Time per task prefix</h2>
<table class="grid" id="prefix-summary"><thead><tr><th>Prefix</th><th>Kind</th><th class="num">Count</th>
<th class="num">Total</th><th class="num">Mean</th><th class="num">Max</th><th class="num">Share of compute</th></tr></thead>
<tbody>{rows}</tbody></table></section>
{_profile_section(profile)}
</main>
<script type="application/json" id="report-data">{_script_safe_json(data)}</script>
<script>{_static("taskstream.js")}</script>
<script>{REPORT_SCRIPT}</script>
</body></html>
"""


def _profile_section(profile: dict[str, Any] | None) -> str:
    if profile is None:
        return ""
    return f"""<section class="panel" id="profile-panel"><h2>Profile <span class="muted">samples of
the workers' task threads during the block ({int(profile.get("count", 0)):,}); click a call to
zoom</span></h2><style>{_static("profile.css")}</style>
<div id="profile"></div><div id="profile-detail"></div></section>
<script type="application/json" id="profile-data">{_script_safe_json(profile)}</script>
<script>{_static("profile.js")}</script>
<script>shoalProfile.draw(document.getElementById("profile"),
  JSON.parse(document.getElementById("profile-data").textContent),
  document.getElementById("profile-detail"));</script>"""


def _get_client() -> Any:
    import shoal

    return shoal.get_client()  # type: ignore[attr-defined]


# lower-case like dask's: it is used as `with performance_report(...)`
class performance_report:
    """Record the task stream of everything run inside the block to a standalone HTML file.

    Usage::

        with performance_report(filename="dask-report.html"):
            x.sum().compute()

    ``async with`` works the same with an asynchronous client. The file is written when the
    block exits, also when it raises. It needs no server or network to open.

    Args:
        filename: where to write the HTML document: a local path, or a URL that
            ``fsspec`` opens (``"s3://bucket/report.html"``).
        stacklevel: accepted for dask's signature; shoal's report has no "calling code"
            section, so it is unused.
        mode: accepted for dask's signature (a bokeh output mode); unused, the document
            shoal writes is self-contained.
        storage_options: passed to ``fsspec.open`` when writing the file.

    Raises:
        ValueError: (from ``get_client``) no client is running when the block is entered.
    """

    def __init__(
        self, filename: str | os.PathLike[str] = "dask-report.html", stacklevel: int = 1,
        mode: str | None = None, storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.filename = os.fspath(filename)
        self.mode = mode
        self.storage_options = dict(storage_options or {})
        self._client: Any = None
        self._cursor = 0
        self._started = 0.0

    # -- sync -----------------------------------------------------------------------------
    def __enter__(self) -> performance_report:
        self._client = _get_client()
        result = self._client._task_stream_since(-1)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise TypeError("this client is asynchronous: use `async with performance_report(...)`")
        self._cursor = result[0]
        self._started = time.time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        _, records = self._client._task_stream_since(self._cursor)
        profile = self._ask_profile()
        if inspect.isawaitable(profile):  # not expected of a sync client: leave it out
            getattr(profile, "close", lambda: None)()
            profile = None
        self._write(records, profile)

    # -- async ----------------------------------------------------------------------------
    async def __aenter__(self) -> performance_report:
        self._client = _get_client()
        result = self._client._task_stream_since(-1)
        if inspect.isawaitable(result):
            result = await result
        self._cursor = result[0]
        self._started = time.time()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        result = self._client._task_stream_since(self._cursor)
        if inspect.isawaitable(result):
            result = await result
        profile = self._ask_profile()
        if inspect.isawaitable(profile):
            try:
                profile = await profile
            except Exception as exc:  # the report is still written, without a profile
                logger.warning("performance_report: no profile (%s)", exc)
                profile = None
        self._write(result[1], profile)

    def _ask_profile(self) -> Any:
        """The client's profile of the block (an awaitable from an async client); None
        when the client has none or asking fails (the report is written without it)."""
        ask = getattr(self._client, "profile", None)
        if ask is None:
            return None
        try:
            return ask(start=self._started)
        except Exception as exc:
            logger.warning("performance_report: no profile (%s)", exc)
            return None

    def _write(self, records: list[TaskStreamRecord], profile: Any = None) -> None:
        document = render_report(records, started=self._started, stopped=time.time(),
                                 profile=profile)
        if self.storage_options or "://" in self.filename:
            import fsspec

            with fsspec.open(self.filename, "w", encoding="utf-8", compression="infer",
                             **self.storage_options) as f:
                f.write(document)
            return
        with open(self.filename, "w", encoding="utf-8") as f:
            f.write(document)
