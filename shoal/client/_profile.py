"""``Client.profile``: the statistical profiler's call trees (dask's ``distributed.profile``
tree format), gathered by the scheduler from the workers (or its own event loop).

A coroutine taking the client first, attached to ``Client`` with ``two_faced``. dask draws
the tree with bokeh; shoal writes it, with ``filename=``, as a self-contained HTML icicle
chart (the dashboard's ``/profile`` page drawing), and ``plot=True`` (a bokeh figure)
raises NotImplementedError naming those instead.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal._profiler import EVENT_LOOPS_KEY

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client


def _check_time(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"profile({name}=...) takes a time in seconds since the epoch "
                        f"(as time.time() gives) or None, got {value!r}")
    return float(value)


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"profile({name}=...) must be True or False, got {value!r}")
    return value


async def profile(self: Client, key: Any = None, start: Any = None, stop: Any = None,
                  workers: Any = None, merge_workers: bool = True, plot: Any = False,
                  filename: Any = None, server: bool = False,
                  scheduler: bool = False) -> Any:
    """Where recent work spent its time: the call tree of the samples the workers' task
    threads took every ``distributed.worker.profile.interval`` (dask's config; off with
    ``distributed.worker.profile.enabled: False``), in dask's format (``{"identifier",
    "count", "description", "children"}`` nodes; ``count``: samples through that call).

    Args:
        key: a key prefix (a task's function name, like ``"inc"``): only its tasks
            (ignored with ``server`` or ``scheduler``: an event loop runs no task).
        start, stop: times (``time.time()``) bounding the samples; a cycle of samples
            (``distributed.worker.profile.cycle``) overlapping them counts whole.
        workers: an address or a list of them: only those workers.
        merge_workers: False gives ``{worker address: tree}`` instead of one tree.
        plot: a bokeh figure in dask; shoal has none (raises). ``"save"``: as
            ``filename="dask-profile.html"``.
        filename: write the tree as a self-contained HTML icicle chart there too; the
            call then returns ``(tree, None)``, the shape of dask's ``(state, figure)``.
        server: the workers' event loop threads instead of their task threads (shoal's
            own work: messages, transfers, bookkeeping). Sampled only with dask's config
            ``shoal.profile.event-loops: True`` when the cluster starts (unlike dask, which
            always samples them: it costs a busy loop a few percent); else the profile is
            empty and a RuntimeWarning says so.
        scheduler: the scheduler's event loop thread instead of the workers (as
            ``server``: only with ``shoal.profile.event-loops``).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``start`` after ``stop``.
        NotImplementedError: ``plot=True``.
    """
    self._check_open()
    if key is not None and not isinstance(key, str):
        raise TypeError(f"profile(key=...) takes a key prefix (a str such as 'inc') or None, "
                        f"got {key!r}")
    t0, t1 = _check_time("start", start), _check_time("stop", stop)
    if t0 is not None and t1 is not None and t0 > t1:
        raise ValueError(f"profile(start={start!r}, stop={stop!r}): start is after stop")
    merge = _check_flag("merge_workers", merge_workers)
    on_server = _check_flag("server", server)
    on_scheduler = _check_flag("scheduler", scheduler)
    if plot == "save" and filename is None:
        filename = "dask-profile.html"
    elif plot is not False and plot != "save":
        raise NotImplementedError(
            "profile(plot=...) returns a bokeh figure in dask.distributed; shoal draws no "
            "bokeh figures: pass filename='profile.html' for an HTML chart, or open the "
            "dashboard's /profile page")
    if filename is not None and not isinstance(filename, (str, Path)):
        raise TypeError(f"profile(filename=...) takes a path, got {filename!r}")
    wl = self._check_workers(workers)
    answer: dict[str, Any] = await self._request_within(
        "profile", self._timeout, start=t0, stop=t1, key=key, workers=wl,
        merge_workers=merge or on_scheduler, server=on_server, on_scheduler=on_scheduler)
    tree: dict[str, Any] = answer["profile"]
    if answer["off"]:
        warnings.warn(
            f"profile(scheduler=True/server=True): the event loops of {', '.join(answer['off'])} "
            f"are not sampled, the profile is empty: shoal samples event loops only with dask's "
            f"config {EVENT_LOOPS_KEY}: True set before the cluster starts (it costs the "
            "scheduler a few percent of its speed)", RuntimeWarning, stacklevel=3)
    if filename is not None:
        from shoal import _profile_tree as trees

        whole = tree if merge or on_scheduler else trees.merge(*tree.values())
        write_html(whole, filename, title="shoal profile" + (f": {key}" if key else ""))
        return (tree, None)  # dask's (state, figure) shape
    return tree


def write_html(tree: dict[str, Any], filename: str | Path, title: str) -> None:
    """Write ``tree`` as one HTML file drawing it with the dashboard's icicle chart."""
    script = _static_text("profile.js")
    data = json.dumps(tree).replace("</", "<\\/")
    Path(filename).write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_static_text('profile.css')}</style><h1>{html.escape(title)}</h1>"
        f"<div id='profile'></div><div id='profile-detail'></div>"
        f"<script>{script}</script>"
        f"<script>shoalProfile.draw(document.getElementById('profile'), {data}, "
        f"document.getElementById('profile-detail'));</script>\n", encoding="utf-8")


def _static_text(name: str) -> str:
    # Read beside the package rather than through shoal.dashboard (which imports aiohttp).
    return (Path(__file__).parent.parent / "dashboard" / "static" / name).read_text("utf-8")
