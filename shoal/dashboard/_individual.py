"""dask's "individual plots": each live view of the dashboard alone on a chrome-less page
that fills its window, and ``/individual-plots.json`` listing them (JupyterLab's dask
panel reads it to offer the plots; users open them beside a notebook).

Owns the names (dask's, from ``distributed.dashboard.scheduler.applications``) and which
page body and scripts each uses. The bodies and scripts are the full pages' own (the
same ``status.js``, ``tasks.js``, ``graph.js``...), never copies: a view looks and
behaves the same alone as on its page. Pure: no aiohttp, no scheduler.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from shoal.dashboard import _views
from shoal.dashboard._source import Snapshot


@dataclass(frozen=True)
class Plot:
    """One individual page: the body it draws and the scripts that keep it live."""

    body: Callable[[Snapshot, int], str]  # (snapshot, graph limit) -> the page's body
    scripts: tuple[str, ...]
    styles: tuple[str, ...] = ()


_STATUS_SCRIPTS = ("taskstream.js", "shoal.js", "status.js")


def _workers_table(columns: str, heads: tuple[str, ...], what: str) -> Callable[[Snapshot, int], str]:
    """/status's workers table (``status.js`` fills it) showing only ``columns``."""
    cells = "".join(
        f'<th class="num">{html.escape(h)}</th>' if c in ("used", "cpu", "tasks")
        else f"<th>{html.escape(h)}</th>"
        for c, h in zip(columns.split(), heads, strict=True)
    )

    def body(snapshot: Snapshot, limit: int) -> str:
        return (
            f'<section class="panel"><h2>Workers <span class="muted">{html.escape(what)}</span>'
            "</h2>"
            f'<table class="grid" id="status-workers" data-columns="{columns}">'
            f"<thead><tr>{cells}</tr></thead><tbody></tbody></table></section>"
        )

    return body


def _progress(snapshot: Snapshot, limit: int) -> str:
    return (
        '<section class="panel" id="progress-panel"><h2>Progress '
        '<span class="muted">per task prefix</span></h2>'
        '<div id="progress"><div class="empty-note">No tasks yet.</div></div></section>'
    )


def _cluster_memory(snapshot: Snapshot, limit: int) -> str:
    return (
        '<section class="panel"><h2>Cluster memory <span class="muted">managed (dark), '
        "unmanaged (light), limit (line), summed over workers</span></h2>"
        '<div class="cluster-mem" id="cluster-memory"></div></section>'
    )


PLOTS: dict[str, Plot] = {
    "/individual-task-stream": Plot(lambda s, n: _views.tasks_body(),
                                    ("taskstream.js", "shoal.js", "tasks.js")),
    "/individual-progress": Plot(_progress, _STATUS_SCRIPTS),
    "/individual-graph": Plot(lambda s, n: _views.graph_body(n), ("shoal.js", "graph.js")),
    "/individual-groups": Plot(lambda s, n: _views.groups_body(),
                               ("taskstream.js", "shoal.js", "groups.js")),
    "/individual-workers-memory": Plot(
        _workers_table("name memory used", ("Worker", "Memory", "Used / limit"),
                       "memory: managed, unmanaged, limit"), _STATUS_SCRIPTS),
    "/individual-cluster-memory": Plot(_cluster_memory, _STATUS_SCRIPTS),
    "/individual-cpu": Plot(
        _workers_table("name cpubar cpu", ("Worker", "CPU", "Percent"),
                       "CPU, percent of one core"), _STATUS_SCRIPTS),
    "/individual-nprocessing": Plot(
        _workers_table("name processing tasks", ("Worker", "Processing", "Tasks"),
                       "tasks processing"), _STATUS_SCRIPTS),
    "/individual-workers": Plot(lambda s, n: _views.workers_body(s), ("shoal.js", "workers.js")),
    "/individual-exceptions": Plot(lambda s, n: _views.exceptions_body(),
                                   ("shoal.js", "exceptions.js")),
    "/individual-scheduler-system": Plot(lambda s, n: _views.system_body(),
                                         ("shoal.js", "system.js")),
    "/individual-profile": Plot(lambda s, n: _views.profile_body(), ("profile.js",),
                                ("profile.css",)),
}
"""Every individual page shoal serves, by path (dask's names); nothing else is listed."""

ALIASES = {"/individual-nbytes": "/individual-cluster-memory"}
"""Older dask names, redirected (not listed: dask's current list does not have them)."""


def plot_title(path: str) -> str:
    """dask's title for an individual page: ``/individual-task-stream`` ->
    ``"Individual Task Stream"`` (its ``IndividualPlots`` handler's rule)."""
    return path.strip("/").replace("-", " ").title()


def individual_plots() -> dict[str, str]:
    """The ``/individual-plots.json`` body: title -> path, as dask answers it."""
    return {plot_title(path): path for path in PLOTS}


def individual_html(path: str, snapshot: Snapshot, graph_limit: int) -> str:
    """The chrome-less page for ``path`` (a key of :data:`PLOTS`).

    Raises:
        KeyError: ``path`` is not an individual page shoal serves.
    """
    plot = PLOTS[path]
    return _views._page(plot_title(path).removeprefix("Individual "),
                        plot.body(snapshot, graph_limit), scripts=plot.scripts,
                        styles=plot.styles, chrome=False)
