"""The dashboard's HTTP shell: aiohttp routes over a :class:`DashboardSource`.

Owns the socket, the routes and the static files. Knows nothing of the scheduler beyond the
source protocol, and never changes anything through it: every route is a GET.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from importlib import resources
from typing import Any

from aiohttp import web

from shoal.dashboard import _individual, _views
from shoal.dashboard._source import DashboardSource
from shoal.dashboard._system import SystemMonitor

STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}

_SOURCE: web.AppKey[DashboardSource] = web.AppKey("source", DashboardSource)
_STATIC: web.AppKey[dict[str, bytes]] = web.AppKey("static", dict)
_MONITOR: web.AppKey[SystemMonitor] = web.AppKey("monitor", SystemMonitor)

GRAPH_MAX_ITEMS = 5000
"""Tasks ``/graph`` draws at most (dask's ``distributed.dashboard.graph-max-items``)."""

# script-src 'self': the pages run only the vendored scripts, never inline or remote code.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _load_static() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in resources.files("shoal.dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = entry.read_bytes()
    return files


def _json(body: Any) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":"), allow_nan=False),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# The individual plots are made to be framed: JupyterLab's dask panel shows each in an
# iframe of its own page. They are read-only views, so framing them risks nothing.
_FRAMEABLE = {
    **_HEADERS,
    "Content-Security-Policy": _HEADERS["Content-Security-Policy"].replace(
        "frame-ancestors 'none'", "frame-ancestors *"),
}


def _html(text: str, status: int = 200, headers: dict[str, str] = _HEADERS) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


async def _status(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[_STATIC]["status.html"], content_type="text/html", headers=_HEADERS
    )


async def _workers(request: web.Request) -> web.Response:
    return _html(_views.workers_html(request.app[_SOURCE].snapshot()))


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers={"Cache-Control": "no-store"})


async def _info(request: web.Request) -> web.Response:
    return _json(_views.info_document(request.app[_SOURCE].snapshot()))


async def _metrics(request: web.Request) -> web.Response:
    text = _views.prometheus_text(request.app[_SOURCE].snapshot())
    return web.Response(
        body=text.encode(),
        headers={"Content-Type": _views.PROMETHEUS_CONTENT_TYPE, "Cache-Control": "no-store"},
    )


async def _api_snapshot(request: web.Request) -> web.Response:
    return _json(request.app[_SOURCE].snapshot())


async def _api_task_stream(request: web.Request) -> web.Response:
    since = _cursor(request)
    # One bounded page per request: when more than a page is new (a first load after a long
    # run), skip to the newest page instead of building the whole history.
    source = request.app[_SOURCE]
    total, _ = source.task_stream_since(-1)
    skipped = max(0, total - since - _views.MAX_STREAM_RECORDS)
    cursor, records = source.task_stream_since(since + skipped, _views.MAX_STREAM_RECORDS)
    document = _views.task_stream_document(cursor, records, skipped=skipped)
    return web.Response(text=_views.task_stream_json(document), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _profile(request: web.Request) -> web.Response:
    return _html(_views.profile_html())


async def _api_profile(request: web.Request) -> web.Response:
    """The workers' merged profile tree (``?key=`` a key prefix: only its tasks) and the
    key prefixes the scheduler knows, to choose from."""
    source = request.app[_SOURCE]
    get = getattr(source, "profile_tree", None)
    if get is None:
        raise web.HTTPNotFound(text="this dashboard's source keeps no profile")
    key = request.query.get("key") or None
    tree = await get(key)
    return _json({"tree": tree, "prefixes": sorted(source.snapshot()["prefixes"])})


def _count(request: web.Request, name: str, default: int, fix: str) -> int:
    """The query's ``name`` as a non-negative int (``default`` without); else a 400
    naming it and ``fix``."""
    raw = request.query.get(name, str(default))
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={raw!r} {fix}") from None
    return value


def _cursor(request: web.Request, name: str = "since") -> int:
    return _count(request, name, 0, "is not a cursor: pass the 'cursor' of the previous "
                  "response, or 0 to start from the oldest retained record")


async def _tasks(request: web.Request) -> web.Response:
    return _html(_views.tasks_html())


async def _system(request: web.Request) -> web.Response:
    return _html(_views.system_html())


async def _api_system(request: web.Request) -> web.Response:
    """The scheduler process's samples after ``?since=`` (a cursor), column by column."""
    monitor = request.app[_MONITOR]
    cursor, columns = monitor.history.since(_cursor(request))
    return _json({"cursor": cursor, "interval": monitor.interval, "samples": columns})


def graph_limit() -> int:
    """The most tasks ``/graph`` draws: dask's ``distributed.dashboard.graph-max-items``
    (read per request, so a change in dask's config applies at once)."""
    import dask

    value = dask.config.get("distributed.dashboard.graph-max-items", GRAPH_MAX_ITEMS)
    try:
        return max(0, int(value if value is not None else GRAPH_MAX_ITEMS))
    except (TypeError, ValueError):
        raise web.HTTPInternalServerError(
            text=f"dask's config distributed.dashboard.graph-max-items={value!r} is not a "
            f"number of tasks: set it to an integer such as {GRAPH_MAX_ITEMS}"
        ) from None


async def _graph(request: web.Request) -> web.Response:
    return _html(_views.graph_html(graph_limit()))


async def _api_graph(request: web.Request) -> web.Response:
    """The task graph (``?known=`` the ``layout`` of the page's last answer: then only the
    states, while the structure is unchanged)."""
    source = request.app[_SOURCE]
    get = getattr(source, "task_graph", None)
    if get is None:
        raise web.HTTPNotFound(text="this dashboard's source keeps no task graph")
    return _json(get(graph_limit(), request.query.get("known") or None))


def _limit(request: web.Request, default: int) -> int:
    """``?limit=`` rows (default ``default``), capped at ``_views.MAX_ROWS``."""
    value = _count(request, "limit", default, "is not a number of rows: pass an integer "
                   f"from 0 to {_views.MAX_ROWS}")
    return min(value, _views.MAX_ROWS)


async def _groups(request: web.Request) -> web.Response:
    return _html(_views.groups_html())


def _rows(request: web.Request, method: str, default: int, what: str) -> web.Response:
    """The source's ``method(limit)`` answer for ``?limit=`` rows (``default`` without)."""
    get = getattr(request.app[_SOURCE], method, None)
    if get is None:
        raise web.HTTPNotFound(text=f"this dashboard's source keeps no {what}")
    return _json(get(_limit(request, default)))


async def _api_groups(request: web.Request) -> web.Response:
    """The newest ``?limit=`` task groups, each with its counts by state."""
    return _rows(request, "task_group_rows", _views.GROUP_ROWS, "task groups")


async def _exceptions(request: web.Request) -> web.Response:
    return _html(_views.exceptions_html())


async def _api_exceptions(request: web.Request) -> web.Response:
    """The latest ``?limit=`` failures, newest first: key, exception, traceback, worker."""
    return _rows(request, "erred_tasks", _views.EXCEPTION_ROWS, "failures")


async def _individual_plots(request: web.Request) -> web.Response:
    return _json(_individual.individual_plots())


async def _individual_page(request: web.Request) -> web.Response:
    # one snapshot per page load (the polls that follow are the page's own), O(workers)
    snapshot = request.app[_SOURCE].snapshot()
    # dask's config is read only where it matters (a bad value fails /individual-graph alone)
    limit = graph_limit() if request.path == "/individual-graph" else GRAPH_MAX_ITEMS
    return _html(_individual.individual_html(request.path, snapshot, limit), headers=_FRAMEABLE)


async def _individual_alias(request: web.Request) -> web.Response:
    # relative (as every URL the pages use): right behind a proxy's path prefix too
    raise web.HTTPFound(_views.relative(_individual.ALIASES[request.path]))


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = request.app[_STATIC].get(name)
    if body is None:
        raise web.HTTPNotFound()
    content_type = STATIC_TYPES["." + name.rsplit(".", 1)[-1]]
    return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "no-cache"})


# The root goes on to status by a script of its own, not an HTTP redirect: behind a proxy
# that strips a path prefix, ``.../proxy/8787`` (no trailing slash) reaches ``/`` too, and a
# relative ``Location: status`` would resolve to ``.../proxy/status``, off the prefix. Only
# the browser knows which URL it is at. The one inline script is allowed by its hash alone.
_ROOT_SCRIPT = (
    'var p=location.pathname,i=p.lastIndexOf("/");'
    'location.replace((i===p.length-1?"":p.slice(i+1)+"/")+"status"+location.search);'
)
_ROOT_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": _HEADERS["Content-Security-Policy"].replace(
        "script-src 'self'", "script-src 'self' '{}'".format(
            "sha256-" + base64.b64encode(hashlib.sha256(_ROOT_SCRIPT.encode()).digest()).decode())),
    "Cache-Control": "no-store",
}


async def _index(request: web.Request) -> web.Response:
    return _html(_views.root_html(_ROOT_SCRIPT), headers=_ROOT_HEADERS)


@web.middleware
async def _not_found_page(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPNotFound:
        return _html(_views.not_found_html(request.path), status=404)


def make_app(source: DashboardSource, monitor: SystemMonitor | None = None) -> web.Application:
    """Build the read-only dashboard application over ``source`` (no socket is opened).
    ``monitor`` feeds ``/system`` (a new, unstarted one when not given)."""
    app = web.Application(middlewares=[_not_found_page])
    app[_SOURCE] = source
    app[_MONITOR] = monitor if monitor is not None else SystemMonitor()
    app[_STATIC] = _load_static()
    routes = [
        ("/", _index),
        ("/status", _status),
        ("/workers", _workers),
        ("/health", _health),
        ("/info", _info),
        ("/metrics", _metrics),
        ("/api/snapshot", _api_snapshot),
        ("/api/task-stream", _api_task_stream),
        ("/tasks", _tasks),
        ("/system", _system),
        ("/api/system", _api_system),
        ("/graph", _graph),
        ("/api/graph", _api_graph),
        ("/profile", _profile),
        ("/api/profile", _api_profile),
        ("/groups", _groups),
        ("/api/groups", _api_groups),
        ("/exceptions", _exceptions),
        ("/api/exceptions", _api_exceptions),
        ("/individual-plots.json", _individual_plots),
        *((path, _individual_page) for path in _individual.PLOTS),
        *((path, _individual_alias) for path in _individual.ALIASES),
        ("/static/{name}", _static),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler)
    return app


def _link_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"[{host}]" if ":" in host else host


class DashboardServer:
    """A running dashboard. Create it with :func:`open_dashboard`; stop it with :meth:`close`.

    Attributes:
        host: the host it was bound to, as requested.
        port: the port actually bound (the OS's choice when 0 was requested).
        link: the URL of the live status page, e.g. ``http://127.0.0.1:8787/status`` (what
            users see goes through dask's ``distributed.dashboard.link`` template:
            ``shoal/_dashboard_link.py``).
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int, https: bool = False,
                 monitor: SystemMonitor | None = None, prefix: str = "") -> None:
        self._runner = runner
        self._monitor = monitor
        self.host = host
        self.port = port
        self.prefix = prefix
        self.link = f"{'https' if https else 'http'}://{_link_host(host)}:{port}{prefix}/status"

    async def close(self) -> None:
        """Stop listening and close open connections; safe to call twice."""
        if self._monitor is not None:
            await self._monitor.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> DashboardServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<DashboardServer {self.link}>"


def _prefix(http_prefix: str | None) -> str:
    """dask's ``http_prefix`` (``"dask"``, ``"/dask/"``...) as ``"/dask"``; ``""`` for the root."""
    prefix = (http_prefix or "").strip("/")
    return f"/{prefix}" if prefix else ""


def _served_app(app: web.Application, prefix: str) -> web.Application:
    """``app`` itself, or a root that serves it under ``prefix`` (``/dask/status``...);
    the prefix alone goes on to its ``status`` page (the pages' URLs are relative)."""
    if not prefix:
        return app
    root = web.Application()

    async def to_status(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{prefix}/status")

    root.router.add_get(prefix, to_status)
    root.add_subapp(prefix, app)
    return root


async def open_dashboard(
    source: DashboardSource, host: str, port: int, ssl_context: Any = None,
    http_prefix: str | None = None,
) -> DashboardServer:
    """Serve the dashboard for ``source`` on ``host:port`` and return the running server.

    Args:
        source: the scheduler's read-only view (see :class:`DashboardSource`).
        host: interface to bind, e.g. ``"127.0.0.1"`` (the scheduler's host).
        port: TCP port; 0 lets the OS choose a free one.
        ssl_context: serve HTTPS with it (the scheduler's certificate), else HTTP.
        http_prefix: serve every page under this path (dask's ``http_prefix``, like
            ``"/dask"``, behind a proxy that does not strip it); default: the root.

    Returns:
        A :class:`DashboardServer` whose ``port`` is the port actually bound.

    Raises:
        OSError: the port is taken or the host cannot be bound. Nothing is left running.
    """
    monitor = SystemMonitor()
    prefix = _prefix(http_prefix)
    runner = web.AppRunner(_served_app(make_app(source, monitor), prefix), access_log=None,
                           handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host or None, port, reuse_port=False, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    monitor.start()  # samples from now on: /system shows the history since the start
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return DashboardServer(runner, host, bound, https=ssl_context is not None, monitor=monitor,
                           prefix=prefix)


async def open_dashboard_with_fallback(
    source: DashboardSource, host: str, port: int, ssl_context: Any = None,
    http_prefix: str | None = None,
) -> tuple[DashboardServer, str | None]:
    """Like :func:`open_dashboard`, but if ``port`` is taken bind a free port instead.

    Returns:
        ``(server, warning)``: ``warning`` is None when ``port`` was bound, otherwise a message
        for the user naming the taken port and the one used.

    Raises:
        OSError: the host itself cannot be bound (a fallback port would not help).
    """
    try:
        return await open_dashboard(source, host, port, ssl_context, http_prefix), None
    except OSError as exc:
        if port == 0:
            raise
        server = await open_dashboard(source, host, 0, ssl_context, http_prefix)
        reason = exc.strerror or str(exc)
        warning = (
            f"Port {port} is already in use ({reason}); the dashboard is served on port "
            f"{server.port} instead: {server.link}"
        )
        return server, warning
