"""Pure renderers: a :class:`Snapshot` in, text out.

Owns the formats the dashboard serves (Prometheus exposition, ``/info`` JSON, the ``/workers``
table, the 404 page). Knows nothing about aiohttp, sockets or the scheduler; every function
here is a plain function of its arguments so tests need no event loop.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, cast

from shoal.dashboard._source import STATES, PrefixCounts, Snapshot, TaskStreamRecord

PAGES: tuple[tuple[str, str], ...] = (
    ("/status", "Status — live task stream, progress and worker memory"),
    ("/workers", "Workers — one row per worker"),
    ("/tasks", "Tasks — the task stream, full page, with its retained history"),
    ("/system", "System — the scheduler process's CPU, memory, network and open files"),
    ("/graph", "Graph — the live task graph, coloured by state"),
    ("/groups", "Groups — progress of each task group (a collection's layer)"),
    ("/exceptions", "Exceptions — the latest tasks that failed, with their tracebacks"),
    ("/info", "Info — scheduler, totals and workers as JSON"),
    ("/metrics", "Metrics — Prometheus text exposition"),
    ("/profile", "Profile — where the workers' tasks spend their time (statistical profiler)"),
    ("/health", "Health — returns ok"),
    ("/individual-plots.json", "Individual plots — each live view alone, chrome-less (JSON list)"),
)

NAV = 10
"""The first ``NAV`` pages are in every page's navigation bar (``status.html`` repeats it)."""

MAX_STREAM_RECORDS = 5000
"""At most this many task-stream records per response; older ones are dropped first."""


# ----------------------------------------------------------------------------- formatting
def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.50 KiB"``; what the pages show for memory."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.2f} {unit}"
    raise AssertionError("unreachable")


def format_ago(seconds: float) -> str:
    """How long ago something was seen, in the unit a person reads fastest."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


# ----------------------------------------------------------------------------- JSON views
def _count(counts: PrefixCounts, state: str) -> int:
    # a scheduler may leave out states it never uses; missing means zero
    return int(cast("Mapping[str, int]", counts).get(state, 0))


def state_totals(snapshot: Snapshot) -> dict[str, int]:
    """Task counts by state, summed over prefixes (O(prefixes))."""
    totals = dict.fromkeys(STATES, 0)
    for counts in snapshot["prefixes"].values():
        for state in STATES:
            totals[state] += _count(counts, state)
    return totals


def info_document(snapshot: Snapshot) -> dict[str, Any]:
    """The ``/info`` JSON body: scheduler identity, cluster totals and the worker list."""
    return {
        "scheduler": dict(snapshot["scheduler"]),
        "totals": dict(snapshot["totals"]),
        "tasks_by_state": state_totals(snapshot),
        "tasks_per_second": snapshot["tasks_per_second"],
        "workers": [dict(w) for w in snapshot["workers"]],
    }


def task_stream_document(
    cursor: int, records: Sequence[TaskStreamRecord], limit: int = MAX_STREAM_RECORDS,
    skipped: int = 0,
) -> dict[str, Any]:
    """The ``/api/task-stream`` body: the newest ``limit`` records and the cursor to ask next.

    ``dropped`` says how many older records were left out (``skipped`` of them were never
    asked of the source) so that a first page load after a long run does not ship the whole
    history to the browser.
    """
    dropped = max(0, len(records) - limit)
    kept = records[dropped:] if dropped else records
    return {"cursor": cursor, "records": list(kept), "dropped": dropped + skipped}


_RECORD_JSON = '{"key":%s,"prefix":%s,"worker":%s,"thread":%d,"start":%r,"stop":%r,"kind":%s}'


def task_stream_json(document: Mapping[str, Any]) -> str:
    """``json.dumps`` of a :func:`task_stream_document` (compact, the same text) at about
    two thirds of the generic encoder's cost: a page of records is most of what a watched
    dashboard costs the scheduler's loop, so each record is one template. Raises ValueError
    for a time that is not finite (JSON has no NaN), as ``json.dumps(allow_nan=False)``.
    """
    records = document["records"]
    if not math.isfinite(sum(r["start"] + r["stop"] for r in records)):
        raise ValueError("a task stream record has a time that is not finite")
    strings: dict[str, str] = {}  # prefixes, workers and kinds repeat: escape each once

    def quoted(text: str) -> str:
        found = strings.get(text)
        if found is None:
            found = strings[text] = json_string(text)
        return found

    parts = [
        _RECORD_JSON % (json_string(r["key"]), quoted(r["prefix"]), quoted(r["worker"]),
                        r["thread"], float(r["start"]), float(r["stop"]), quoted(r["kind"]))
        for r in records
    ]
    cursor, dropped = int(document["cursor"]), int(document["dropped"])
    return f'{{"cursor":{cursor},"records":[{",".join(parts)}],"dropped":{dropped}}}'


# ----------------------------------------------------------------------------- Prometheus
def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Collects metric families; each is declared once with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, str], float]],
        kind: str = "gauge",
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{body}}} {_number(value)}")
            else:
                self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus_text(snapshot: Snapshot) -> str:
    """Render the snapshot in the Prometheus text exposition format (version 0.0.4)."""
    out = _Exposition()
    totals = snapshot["totals"]
    by_state = state_totals(snapshot)
    out.family(
        "shoal_scheduler_tasks",
        "Number of tasks known to the scheduler, by state.",
        (({"state": s}, by_state[s]) for s in STATES),
    )
    out.family(
        "shoal_scheduler_prefix_tasks",
        "Number of tasks known to the scheduler, by task prefix and state.",
        (
            ({"prefix": prefix, "state": s}, _count(counts, s))
            for prefix, counts in sorted(snapshot["prefixes"].items())
            for s in STATES
        ),
    )
    out.family("shoal_scheduler_workers", "Number of connected workers.", [({}, totals["workers"])])
    out.family(
        "shoal_scheduler_threads", "Worker threads summed over workers.", [({}, totals["nthreads"])]
    )
    unmanaged = max(0, totals["memory_process"] - totals["memory_managed"])
    out.family(
        "shoal_scheduler_memory_bytes",
        "Worker memory summed over workers: managed (task results), unmanaged "
        "(process minus managed), process (RSS) and limit.",
        [
            ({"type": "managed"}, totals["memory_managed"]),
            ({"type": "unmanaged"}, unmanaged),
            ({"type": "process"}, totals["memory_process"]),
            ({"type": "limit"}, totals["memory_limit"]),
            ({"type": "spilled"}, totals.get("memory_spilled", 0)),
        ],
    )
    out.family("shoal_scheduler_workers_paused", "Workers paused by memory.",
               [({}, totals.get("paused", 0))])
    out.family(
        "shoal_scheduler_tasks_per_second",
        "Tasks completed per second, recent average.",
        [({}, float(snapshot["tasks_per_second"]))],
    )
    sched = snapshot["scheduler"]
    out.family(
        "shoal_scheduler_uptime_seconds",
        "Seconds since the scheduler started.",
        [({}, max(0.0, float(sched["now"] - sched["started"])))],
    )
    workers = snapshot["workers"]
    out.family(
        "shoal_worker_processing_tasks",
        "Tasks assigned to a worker and not yet finished.",
        (({"worker": w["address"]}, w["processing"]) for w in workers),
    )
    out.family(
        "shoal_worker_memory_bytes",
        "Memory of one worker: managed, unmanaged (process minus managed), process (RSS), "
        "spilled (on disk) and limit.",
        (
            ({"worker": w["address"], "type": t}, value)
            for w in workers
            for t, value in (
                ("managed", w["memory_managed"]),
                ("unmanaged", max(0, w["memory_process"] - w["memory_managed"])),
                ("process", w["memory_process"]),
                ("spilled", w.get("memory_spilled", 0)),
                ("limit", w["memory_limit"]),
            )
        ),
    )
    out.family(
        "shoal_worker_paused",
        "1 while the worker is paused (its memory passed the pause threshold), else 0.",
        (({"worker": w["address"]}, int(w.get("status") == "paused")) for w in workers),
    )
    return out.text()


# ----------------------------------------------------------------------------- HTML pages
ACTIVE = ' class="active"'


def relative(path: str, root: str = "") -> str:
    """``"/status"`` -> ``"status"``: the URL a page at ``root`` (``"../"`` per level below the
    top) uses for a route. Every link, script and fetch is relative, so the dashboard works
    behind a proxy that serves it under a path prefix (JupyterHub's jupyter-server-proxy:
    ``/user/alice/proxy/8787/status`` forwarded to ``/status``)."""
    return root + path.lstrip("/")


def root_html(script: str) -> str:
    """The page at ``/``: ``script`` (the only inline one; it must contain no ``<``) sends the
    browser on to status; without scripts, a refresh to ``status`` and a link do."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>shoal dashboard</title><script>{script}</script>"
        '<noscript><meta http-equiv="refresh" content="0; url=status"></noscript></head>'
        '<body><a href="status">Status</a></body></html>'
    )


def _page(title: str, body: str, *, scripts: Sequence[str] = (), active: str = "",
          styles: Sequence[str] = (), chrome: bool = True, root: str = "") -> str:
    """A whole page around ``body``; ``chrome=False``: no navigation bar, the view alone
    filling the window (dask's individual plots, which JupyterLab's dask panel embeds).
    ``root``: the way up to the dashboard's top level from the page (see :func:`relative`)."""
    static = relative("/static/", root)
    tags = "".join(f'<script src="{static}{html.escape(s)}" defer></script>' for s in scripts)
    tags += "".join(f'<link rel="stylesheet" href="{static}{html.escape(s)}">' for s in styles)
    nav = "".join(
        f'<a href="{relative(href, root)}"{ACTIVE if href == active else ""}>'
        f'{href.strip("/").capitalize()}</a>'
        for href, _ in PAGES[:NAV]
    )
    top = (f'<body><header class="topbar"><span class="brand">shoal</span><nav>{nav}</nav>'
           "</header>" if chrome else '<body class="individual">')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · shoal</title>"
        f'<link rel="stylesheet" href="{static}shoal.css">'
        f'<link rel="icon" href="{static}favicon.svg" type="image/svg+xml">'
        f"{tags}</head>"
        f"{top}<main>{body}</main></body></html>\n"
    )


def not_found_html(path: str) -> str:
    """The 404 page: says which path was not found and links to every real page (relative
    to ``path``, which may be any depth below the top: ``/a/b`` links ``../status``)."""
    root = "../" * max(0, path.count("/") - 1)
    items = "".join(
        f'<li><a href="{relative(href, root)}">{html.escape(href)}</a> — '
        f'{html.escape(text.split(" — ", 1)[1])}</li>'
        for href, text in PAGES
    )
    body = (
        '<section class="panel notfound"><h1>404 — page not found</h1>'
        f"<p>There is no dashboard page at <code>{html.escape(path)}</code>. "
        "The dashboard is read-only and serves these pages:</p>"
        f"<ul>{items}</ul></section>"
    )
    return _page("Not found", body, root=root)


def _worker_row(w: dict[str, Any], now: float) -> str:
    limit = int(w["memory_limit"])
    process = int(w["memory_process"])
    managed = int(w["memory_managed"])
    memory = f"{format_bytes(process)} / {format_bytes(limit)}" if limit else format_bytes(process)
    cells = [
        f'<td class="mono">{html.escape(w["address"])}</td>',
        f"<td>{html.escape(str(w['name']))}</td>",
        f'<td class="num">{int(w["nthreads"])}</td>',
        f'<td class="num" title="managed {format_bytes(managed)}">{memory}</td>',
        f'<td class="num">{float(w["cpu"]):.0f}%</td>',
        f'<td class="num">{int(w["processing"])}</td>',
        f'<td class="num">{int(w["in_memory"])}</td>',
        f"<td>{format_ago(now - float(w['last_seen']))}</td>",
    ]
    return f'<tr data-worker="{html.escape(w["address"])}">{"".join(cells)}</tr>'


WORKER_COLUMNS = (
    "Address",
    "Name",
    "Threads",
    "Memory",
    "CPU",
    "Processing",
    "In memory",
    "Last seen",
)


NUMERIC_COLUMNS = frozenset({"Threads", "Memory", "CPU", "Processing", "In memory"})


def workers_body(snapshot: Snapshot) -> str:
    """The ``/workers`` table (also ``/individual-workers``)."""
    now = snapshot["scheduler"]["now"]
    head = "".join(
        f'<th class="num">{c}</th>' if c in NUMERIC_COLUMNS else f"<th>{c}</th>"
        for c in WORKER_COLUMNS
    )
    workers = sorted(snapshot["workers"], key=lambda w: w["address"])
    rows = "".join(_worker_row(dict(w), now) for w in workers)
    if not rows:
        rows = (
            f'<tr class="empty"><td colspan="{len(WORKER_COLUMNS)}">No workers connected</td></tr>'
        )
    totals = snapshot["totals"]
    return (
        '<section class="panel"><h2>Workers '
        f'<span class="muted" id="workers-summary">{totals["workers"]} workers · '
        f"{totals['nthreads']} threads · {format_bytes(totals['memory_process'])} / "
        f"{format_bytes(totals['memory_limit'])}</span></h2>"
        f'<table class="grid" id="workers-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def workers_html(snapshot: Snapshot) -> str:
    """The ``/workers`` page, rendered server-side; ``workers.js`` then keeps it fresh."""
    return _page("Workers", workers_body(snapshot), scripts=["shoal.js", "workers.js"],
                 active="/workers")


def profile_html() -> str:
    """The ``/profile`` page: ``profile.js`` fetches ``/api/profile`` and draws the merged
    call tree of the workers' task threads as an icicle chart."""
    return _page("Profile", profile_body(), scripts=["profile.js"], active="/profile",
                 styles=["profile.css"])


def profile_body() -> str:
    """The ``/profile`` chart and its controls (also ``/individual-profile``)."""
    return (
        '<section class="panel"><h2>Profile <span class="muted">samples of the workers\' '
        "task threads, merged; click a call to zoom</span><span class=\"spacer\"></span>"
        '<select id="profile-key" aria-label="key prefix"></select>'
        '<button id="profile-refresh" type="button">Refresh</button></h2>'
        '<div id="profile" data-api="api/profile"></div><div id="profile-detail"></div>'
        "</section>"
    )


def tasks_html() -> str:
    """The ``/tasks`` page: the task stream alone, tall, over the records the browser has
    gathered since it opened (``tasks.js`` polls ``/api/task-stream``)."""
    return _page("Tasks", tasks_body(), scripts=["taskstream.js", "shoal.js", "tasks.js"],
                 active="/tasks")


def tasks_body() -> str:
    """The ``/tasks`` stream and its controls (also ``/individual-task-stream``)."""
    windows = "".join(
        f'<option value="{v}"{" selected" if v == "60" else ""}>{label}</option>'
        for v, label in (("10", "10 s"), ("60", "1 min"), ("300", "5 min"), ("1800", "30 min"),
                         ("all", "everything kept"))
    )
    return (
        '<section class="panel" id="stream-panel"><h2>Task stream '
        '<span class="muted" id="stream-summary">one row per worker thread</span>'
        '<span class="spacer"></span><label class="muted">window '
        f'<select id="window">{windows}</select></label>'
        '<label class="muted"><input type="checkbox" id="pause"> pause</label></h2>'
        '<div class="stream-wrap"><canvas id="task-stream" data-records="0" data-drawn="0">'
        '</canvas><div class="tooltip" id="stream-tooltip"></div></div>'
        '<div class="legend" id="stream-legend"></div></section>'
    )


SYSTEM_CHARTS: tuple[tuple[str, str], ...] = (
    ("cpu", "CPU — percent of one core"),
    ("memory", "Memory — resident set size"),
    ("network", "Network — host bytes received and sent per second"),
    ("num_fds", "Open files — file descriptors of the process"),
)


def system_html() -> str:
    """The ``/system`` page: the scheduler process's resources over time (``system.js``
    polls ``/api/system`` and draws one line chart per quantity)."""
    return _page("System", system_body(), scripts=["shoal.js", "system.js"], active="/system")


def system_body() -> str:
    """The ``/system`` charts (also ``/individual-scheduler-system``)."""
    charts = "".join(
        f'<section class="panel chart-panel"><h2>{html.escape(title.split(" — ")[0])} '
        f'<span class="muted">{html.escape(title.split(" — ")[1])}</span>'
        '</h2>'
        f'<canvas class="chart" id="chart-{name}" data-points="0"></canvas>'
        f'<div class="legend stats" id="stats-{name}"></div></section>'
        for name, title in SYSTEM_CHARTS
    )
    return (
        '<p class="muted page-note">The scheduler\'s process, sampled on its event loop '
        '(<span id="system-interval">every 0.5 s</span>); the network is the whole host\'s.</p>'
        f'<div class="columns">{charts}</div>'
    )


def graph_html(limit: int) -> str:
    """The ``/graph`` page: ``graph.js`` polls ``/api/graph`` and draws each task as a node
    coloured by its state, with edges from its dependencies; past ``limit`` tasks it shows
    a notice and the counts by state instead."""
    return _page("Graph", graph_body(limit), scripts=["shoal.js", "graph.js"], active="/graph")


def graph_body(limit: int) -> str:
    """The ``/graph`` canvas, legend and notice (also ``/individual-graph``)."""
    return (
        '<section class="panel" id="graph-panel"><h2>Task graph '
        '<span class="muted" id="graph-summary">tasks flow left to right, from their '
        'dependencies</span><span class="spacer"></span><span class="muted">wheel: zoom · '
        'drag: pan · double click: the whole graph</span></h2>'
        '<div class="legend" id="graph-legend"></div>'
        f'<div class="notice" id="graph-notice" hidden data-limit="{int(limit)}"></div>'
        '<div class="stream-wrap"><canvas id="graph" data-nodes="0" data-edges="0">'
        '</canvas><div class="tooltip" id="graph-tooltip"></div></div></section>'
    )


GROUP_ROWS = 100
"""Task groups ``/groups`` shows by default (the newest); ``?limit=`` up to ``MAX_ROWS``."""

EXCEPTION_ROWS = 100
"""Failures ``/exceptions`` shows by default (the newest; the scheduler keeps dask's
``distributed.diagnostics.erred-tasks.max-history``, 100)."""

MAX_ROWS = 1000
"""The most rows ``/api/groups`` and ``/api/exceptions`` answer, whatever ``limit`` asks."""


def groups_body(limit: int = GROUP_ROWS) -> str:
    """The ``/groups`` list (also ``/individual-groups``): ``groups.js`` polls
    ``/api/groups`` and draws one progress row per task group, newest first."""
    return (
        '<section class="panel" id="groups-panel"><h2>Task groups '
        f'<span class="muted" id="groups-summary">the newest {int(limit)} at most</span></h2>'
        '<div class="legend">'
        '<span class="item"><span class="swatch" style="background:#5d6773"></span>in memory</span>'
        '<span class="item"><span class="swatch" style="background:#5d6773;opacity:0.45"></span>'
        "released (done)</span>"
        '<span class="item"><span class="swatch pending"></span>waiting / queued</span>'
        '<span class="item"><span class="swatch" style="background:#d62728"></span>erred</span>'
        "</div>"
        f'<div id="groups" data-limit="{int(limit)}"><div class="empty-note">No tasks yet.</div>'
        "</div></section>"
    )


def groups_html() -> str:
    """The ``/groups`` page: each task group's counts by state (dask's ``TaskGroup``:
    one per layer of a collection, one per prefix of ``submit``/``map`` keys)."""
    return _page("Groups", groups_body(),
                 scripts=["taskstream.js", "shoal.js", "groups.js"], active="/groups")


def exceptions_body(limit: int = EXCEPTION_ROWS) -> str:
    """The ``/exceptions`` table (also ``/individual-exceptions``): ``exceptions.js``
    polls ``/api/exceptions`` and lists the latest failures, newest first."""
    head = "".join(f"<th>{c}</th>" for c in ("When", "Task", "Exception", "Worker"))
    return (
        '<section class="panel" id="exceptions-panel"><h2>Exceptions '
        f'<span class="muted" id="exceptions-summary">the latest {int(limit)} at most</span>'
        "</h2>"
        f'<table class="grid exceptions" id="exceptions" data-limit="{int(limit)}">'
        f"<thead><tr>{head}</tr></thead><tbody>"
        '<tr class="empty"><td colspan="4">No task has failed.</td></tr></tbody></table></section>'
    )


def exceptions_html() -> str:
    """The ``/exceptions`` page: the tasks that failed themselves (not through an input),
    each with its exception and traceback."""
    return _page("Exceptions", exceptions_body(), scripts=["shoal.js", "exceptions.js"],
                 active="/exceptions")
