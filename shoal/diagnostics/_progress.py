"""``progress``: a live progress bar over futures, in a terminal or a Jupyter notebook.

Owns the counting (a small thread-safe state fed by done-callbacks) and two displays: tqdm
bars that block until everything is done, and an HTML display that updates in place in a
notebook. Uses only the public Future interface; knows nothing of the scheduler.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dask.utils import key_split

from shoal.diagnostics._futures_of import futures_of

TOTAL = "all tasks"

logger = logging.getLogger("shoal.diagnostics")


@dataclass
class GroupCounts:
    """Progress of one task prefix (or of everything when ``multi=False``)."""

    total: int = 0
    finished: int = 0
    erred: int = 0
    cancelled: int = 0
    lost: int = 0

    @property
    def done(self) -> int:
        """Futures no longer pending: finished, erred, cancelled or lost."""
        return self.finished + self.erred + self.cancelled + self.lost


class ProgressState:
    """Counts futures per group as they complete. Pure bookkeeping, safe across threads.

    ``finish`` is idempotent per key, so a future reported both by an initial ``done()``
    check and by its callback counts once.
    """

    def __init__(self, multi: bool = True) -> None:
        self.multi = multi
        self.groups: dict[str, GroupCounts] = {}
        self._group_of: dict[Any, str] = {}
        self._finished: set[Any] = set()
        self._lock = threading.Lock()
        self.changed = threading.Event()
        self.listeners: list[Callable[[], None]] = []

    def group_name(self, key: Any) -> str:
        return key_split(key) if self.multi else TOTAL

    def add(self, key: Any) -> None:
        """Start tracking ``key``."""
        with self._lock:
            if key in self._group_of:
                return
            name = self.group_name(key)
            self._group_of[key] = name
            self.groups.setdefault(name, GroupCounts()).total += 1

    def finish(self, key: Any, status: str) -> None:
        """Record that ``key`` left 'pending' with ``status``.

        ``status`` is 'finished', 'error', 'cancelled' or 'lost' (anything else counts as lost).
        """
        with self._lock:
            name = self._group_of.get(key)
            if name is None or key in self._finished:
                return
            self._finished.add(key)
            group = self.groups[name]
            if status == "error":
                group.erred += 1
            elif status == "finished":
                group.finished += 1
            elif status == "cancelled":
                group.cancelled += 1
            else:
                group.lost += 1
        self.changed.set()
        for listener in self.listeners:
            listener()

    def counts(self) -> dict[str, GroupCounts]:
        """A consistent copy of every group's counts."""
        with self._lock:
            return {
                k: dataclasses.replace(g)
                for k, g in self.groups.items()
            }

    def all_done(self) -> bool:
        with self._lock:
            return len(self._finished) == len(self._group_of)


def track(futures: list[Any], *, multi: bool, complete: bool) -> ProgressState:
    """Build a :class:`ProgressState` over ``futures`` and subscribe to their completion.

    With ``complete=False`` futures that are already done are left out of the totals.
    """
    state = ProgressState(multi=multi)
    pending = []
    for f in futures:
        if f.done():
            if complete:
                state.add(f.key)
                state.finish(f.key, f.status)
        else:
            state.add(f.key)
            pending.append(f)
    for f in pending:
        # May run at once (already finished by now) or later on another thread: both are fine.
        f.add_done_callback(lambda fut: state.finish(fut.key, fut.status))
    return state


class GraphCounts:
    """The counts of every task behind the futures, from a ``GraphProgress`` plugin that
    lives on the scheduler while the display runs (dask's progress counts the whole graph,
    not only the futures). ``counts()`` falls back to the futures' own counts when the
    scheduler cannot be asked (an asynchronous client, a closed one)."""

    def __init__(self, state: ProgressState, futures: list[Any], complete: bool) -> None:
        self.state = state
        self.client: Any = None
        self.name = ""
        client = getattr(futures[0], "client", None) if futures else None
        if client is None or getattr(client, "asynchronous", False):
            return
        from shoal.diagnostics._progress_plugin import GraphProgress

        name = f"shoal-progress-{uuid.uuid4().hex}"
        plugin = GraphProgress([f.key for f in futures], complete=complete,
                               multi=state.multi, group=TOTAL, name=name,
                               owner=str(getattr(client, "id", "")))
        try:
            client.register_plugin(plugin, name=name)
        except Exception as exc:  # the display still runs, counting the futures alone
            logger.warning("progress: counting the futures only (%s)", exc)
            return
        self.client, self.name = client, name

    def counts(self) -> dict[str, GroupCounts]:
        if self.client is not None:
            from shoal.diagnostics._progress_plugin import counts_of

            try:
                got = self.client.run_on_scheduler(counts_of, name=self.name)
            except Exception as exc:  # e.g. the client closed: the futures' counts remain
                logger.debug("progress: no graph counts (%s)", exc)
                got = None
            if got:
                return {g: GroupCounts(total=t, finished=d - e, erred=e)
                        for g, (t, d, e) in got.items()}
        return self.state.counts()

    def close(self) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            client.unregister_scheduler_plugin(self.name)
        except Exception as exc:  # closed client or cluster: nothing left to remove
            logger.debug("progress: plugin not removed (%s)", exc)


# ----------------------------------------------------------------------------- terminal
def _text_progress(state: ProgressState, graph: GraphCounts, file: Any = None,
                   interval: float = 0.1) -> None:
    """Draw tqdm bars and block until every tracked future is done (ends: each future
    finishes, errs or is cancelled, as when its client closes)."""
    from tqdm.std import tqdm

    counts = graph.counts()
    width = max(len(name) for name in counts)
    bars: dict[str, Any] = {}

    def bar_of(name: str, total: int) -> Any:
        if name not in bars:
            bars[name] = tqdm(total=total, desc=name.ljust(width), position=len(bars),
                              leave=True, unit="task", dynamic_ncols=True,
                              file=file if file is not None else sys.stderr)
        bar = bars[name]
        if bar.total != total:
            bar.total = total
            bar.refresh()
        return bar

    for name, c in counts.items():
        bar_of(name, c.total)
    try:
        while True:
            finished = state.all_done()
            for name, c in graph.counts().items():
                bar = bar_of(name, c.total)
                if c.done != bar.n:
                    bar.update(c.done - bar.n)
                problems = []
                if c.erred:
                    problems.append(f"{c.erred} erred")
                if c.cancelled:
                    problems.append(f"{c.cancelled} cancelled")
                if c.lost:
                    problems.append(f"{c.lost} lost")
                if problems:
                    bar.set_postfix_str(", ".join(problems), refresh=False)
            if finished:
                break
            state.changed.wait(interval)
            state.changed.clear()
    finally:
        for bar in bars.values():
            bar.close()


# ----------------------------------------------------------------------------- notebook
def in_ipython_kernel() -> bool:
    """True when running inside a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_html(counts: dict[str, GroupCounts]) -> str:
    """The notebook display: one labelled bar per group; red when something erred."""
    rows = []
    for name, c in counts.items():
        frac = c.done / c.total if c.total else 1.0
        color = "#d62728" if c.erred else ("#2ca02c" if c.done == c.total else "#1f77b4")
        notes = []
        if c.erred:
            notes.append(f'<span style="color:#d62728">{c.erred} erred</span>')
        if c.cancelled:
            notes.append(f"{c.cancelled} cancelled")
        if c.lost:
            notes.append(f"{c.lost} lost")
        note = " · " + " · ".join(notes) if notes else ""
        rows.append(
            '<div style="display:flex;align-items:center;gap:10px;margin:2px 0;'
            'font:12px system-ui,sans-serif;color:#1d232b">'
            f'<code style="min-width:140px;overflow:hidden;text-overflow:ellipsis">{html.escape(name)}</code>'
            '<div style="flex:0 0 320px;height:12px;background:#e9ecf0;border-radius:3px;overflow:hidden">'
            f'<div style="width:{100 * frac:.1f}%;height:100%;background:{color}"></div></div>'
            f'<span style="font-variant-numeric:tabular-nums">{c.done} / {c.total}{note}</span></div>'
        )
    return '<div class="shoal-progress">' + "".join(rows) + "</div>"


class _NotebookProgress:
    """Updates an IPython display in place from done-callbacks, at most every ``interval`` s.

    Nothing blocks: like dask's widget, the cell returns at once and the display keeps
    updating. A trailing timer makes sure the last change is drawn; it is cancelled once
    everything is done.
    """

    def __init__(self, state: ProgressState, graph: GraphCounts, interval: float = 0.1) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.state = state
        self.graph = graph
        self.interval = interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self.handle = display(HTML(progress_html(graph.counts())), display_id=True)
        if graph.client is not None:
            threading.Thread(target=self._poll, name="shoal-progress", daemon=True).start()

    def _poll(self) -> None:
        """Redraws from the graph's counts until every future is done (ends then, as when
        the client closes and cancels them), then removes the scheduler plugin."""
        try:
            while not self.state.all_done():
                self.state.changed.wait(self.interval)
                self.render()
            self.render()
        finally:
            self.graph.close()

    def render(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self.handle.update(self._html(progress_html(self.graph.counts())))

    def on_change(self) -> None:
        done = self.state.all_done()
        with self._lock:
            due = done or time.monotonic() - self._last >= self.interval
            if not due:
                if self._timer is None:
                    self._timer = threading.Timer(self.interval, self.render)
                    self._timer.daemon = True
                    self._timer.start()
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self.render()


# ----------------------------------------------------------------------------- public
def progress(
    *futures: Any,
    notebook: bool | None = None,
    multi: bool = True,
    complete: bool = True,
    group_by: str = "prefix",
    **kwargs: Any,
) -> None:
    """Show the progress of futures or persisted collections.

    In a terminal this draws tqdm bars (one per task prefix when ``multi``) and blocks until
    every future is finished, erred or cancelled. In a Jupyter notebook it shows an HTML
    display that keeps updating and returns immediately.

    Args:
        *futures: futures, (nested) lists/dicts of futures, or persisted dask collections.
        notebook: force the notebook display (True) or text (False); None detects Jupyter.
        multi: one bar per task prefix (True) or a single bar for everything (False).
        complete: count futures that are already done (True) or only the remaining (False).
        group_by: dask's: ``"prefix"`` (a bar per task prefix); ``"spans"`` is accepted
            and groups by prefix too (shoal keeps no spans).
        **kwargs: accepted for compatibility with dask's ``progress`` and ignored
            (``file`` is honoured by the text display).

    Raises:
        TypeError: an argument holds no futures, e.g. a collection that was not persisted.
    """
    if group_by not in ("prefix", "spans"):
        raise ValueError(f"progress(group_by={group_by!r}): dask's choices are 'prefix' and "
                         "'spans'")
    # One bar entry per key: futures_of lists each Future object, twins of a key included.
    found = list({f.key: f for f in reversed(futures_of(list(futures)))}.values())[::-1]
    if futures and not found:
        raise TypeError(
            "progress() found no futures in its arguments; pass futures or a collection "
            "returned by client.persist(...) (an un-persisted dask collection has no futures)"
        )
    if not found:
        return
    state = track(found, multi=multi, complete=complete)
    if not state.groups:
        return
    if notebook is None:
        notebook = in_ipython_kernel()
    graph = GraphCounts(state, found, complete)
    if notebook:
        display = _NotebookProgress(state, graph)
        if graph.client is None:  # no poller: redraw from the futures' callbacks
            state.listeners.append(display.on_change)
            display.on_change()  # futures may have finished before the listener was added
        return
    try:
        _text_progress(state, graph, file=kwargs.get("file"))
    finally:
        graph.close()
