"""What ``progress`` counts: every task that the watched keys depend on, not only the
futures themselves (dask's ``progress(client.compute(x.sum()))`` shows the whole graph
draining, not 0/1 then 1/1).

Owns ``GraphProgress``, a scheduler plugin the client registers for as long as a progress
display runs. It walks the watched keys' dependencies on the scheduler, then counts the
tasks of that set reaching memory (or erring) from the transition hook; the display asks
for the counts by ``run_on_scheduler``. Knows the scheduler only through ``state.tasks``
(task records with ``key``, ``prefix``, ``state`` and ``dependencies``).
"""

from __future__ import annotations

from typing import Any

from dask.utils import key_split

from shoal._plugin import SchedulerPlugin

DONE = ("memory", "erred")


class GraphProgress(SchedulerPlugin):
    """Counts, per task prefix, the tasks behind ``keys``: how many, how many done, how
    many erred.

    Args:
        keys: the keys watched (the futures' keys).
        complete: also count tasks that were already done when the display started.
        multi: one group per prefix (True) or one for everything (``group``).
    """

    def __init__(self, keys: list[Any], complete: bool, multi: bool, group: str,
                 name: str = "", owner: str = "") -> None:
        self.name = name
        self.owner = owner  # the client whose display reads it: it goes when that one does
        self.roots = list(keys)
        self.complete = complete
        self.multi = multi
        self.group = group
        self.pending: set[Any] = set(self.roots)  # roots not yet in the scheduler's graph
        self.prefix_of: dict[Any, str] = {}  # every task counted -> its group
        self.done: set[Any] = set()
        self.erred: set[Any] = set()
        # group -> [tasks, done, erred], kept as tasks come and finish: a poll costs the
        # scheduler's loop one row per group, not one look per task.
        self.table: dict[str, list[int]] = {}
        self.finished_since: set[Any] = set()  # done while watched (they count, even if gone)
        self.erred_since: set[Any] = set()  # of those, the ones that erred
        self._state: Any = None  # the scheduler's state: its task table is read each time

    def start(self, scheduler: Any) -> None:
        self._state = scheduler.state
        for key in list(self.pending):
            self._walk(key)

    def _walk(self, root: Any) -> None:
        ts = self._state.tasks.get(root)
        if ts is None or ts.state == "forgotten":
            # not arrived yet (a big graph comes in pieces, its outputs last), or gone (a
            # transition hook sees a forgotten task's stand-in record)
            return
        self.pending.discard(root)
        stack = [ts]
        while stack:
            ts = stack.pop()
            key = ts.key
            if key in self.prefix_of:
                continue
            was_done = ts.state in DONE and key not in self.finished_since
            if was_done and not self.complete:
                continue  # computed before the display started: not shown
            group = key_split(key) if self.multi else self.group
            self.prefix_of[key] = group
            self.table.setdefault(group, [0, 0, 0])[0] += 1
            if ts.state in DONE or key in self.finished_since:
                self._finish(key, ts.state == "erred" or key in self.erred_since)
            if not was_done:  # the inputs of what was done before are history
                stack.extend(ts.dependencies)

    def _finish(self, key: Any, erred: bool) -> None:
        row = self.table[self.prefix_of[key]]
        if key not in self.done:
            self.done.add(key)
            row[1] += 1
        if erred and key not in self.erred:
            self.erred.add(key)
            row[2] += 1

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish in DONE:
            self.finished_since.add(key)
            if finish == "erred":
                self.erred_since.add(key)
            if key in self.prefix_of:
                self._finish(key, finish == "erred")
        if key in self.pending and self._state is not None:
            self._walk(key)

    def remove_client(self, scheduler: Any, client: str) -> Any:
        """The display's client left without unregistering (it closed while the bars ran,
        or its process died): the plugin removes itself, so the scheduler stops feeding a
        transition hook nobody reads."""
        if not self.name or not self.owner or client != self.owner:  # (its Client.id)
            return None
        host = scheduler.plugin_host

        async def remove() -> None:
            if host.plugins.get(self.name) is self:
                await host.remove(self.name)

        return remove()

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """group -> (tasks, done, erred)."""
        return {g: (t, d, e) for g, (t, d, e) in self.table.items()}


def counts_of(dask_scheduler: Any, name: str) -> dict[str, tuple[int, int, int]] | None:
    """``run_on_scheduler`` body: the counts of the progress plugin ``name`` (None once it
    is gone)."""
    plugin = dask_scheduler.plugins.get(name)
    return None if plugin is None else plugin.counts()
