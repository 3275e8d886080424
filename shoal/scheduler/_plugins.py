"""The scheduler's plugins and the worker plugins it keeps for workers to come.

Owns: the registry of worker and nanny plugins (pickled, by name, in registration order)
that every worker gets on registration, so that restarted and new workers are set up like
the others; the scheduler plugins themselves and calling their hooks. The scheduler shell
tells it what happened (a worker joined, a graph arrived, transitions); it never reads or
changes the task state. A hook that raises is logged and does not stop the scheduler.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from shoal.protocol._serialize import Serialized, loads
from shoal.scheduler._graph_hook import GraphNotes

logger = logging.getLogger("shoal.scheduler")

# How long the scheduler's close waits for one plugin's asynchronous before_close/close: a
# hook that never returns must not keep the scheduler (and the user's cluster.close()) open.
CLOSE_HOOK_TIMEOUT = 30.0


def _overrides(plugin: Any, hook: str) -> bool:
    for cls in type(plugin).__mro__:
        if hook in vars(cls):
            return cls.__name__ != "SchedulerPlugin"
    return False


class SchedulerPlugins:
    def __init__(self) -> None:
        self.for_workers: dict[str, tuple[Serialized, str]] = {}  # name -> (plugin, kind)
        self.plugins: dict[str, Any] = {}  # scheduler plugins, by name
        self.watching = False  # some scheduler plugin has a transition hook
        # Added by ``Scheduler.add_plugin`` before the scheduler finished starting (a
        # preload's ``dask_setup``): their ``start`` runs then, as in dask. None once started.
        self.unstarted: list[Any] | None = []
        self.graphs = GraphNotes()  # the submissions update_graph hears of (_graph_hook)

    def _changed(self) -> None:
        """The set of scheduler plugins changed: whether one watches transitions; with none
        left, what was noted for update_graph goes (nobody would hear of it)."""
        self.watching = any(_overrides(p, "transition") for p in self.plugins.values())
        if not self.plugins:
            self.graphs = GraphNotes()

    # --- worker and nanny plugins -------------------------------------------------------------

    def keep(self, name: str, plugin: Serialized, kind: str) -> None:
        self.for_workers.pop(name, None)  # re-registered: goes last, like a new one
        self.for_workers[name] = (plugin, kind)

    def forget(self, name: str) -> None:
        """Raises: ValueError naming the plugin when none has that name."""
        if self.for_workers.pop(name, None) is None:
            raise ValueError(f"no worker plugin named {name!r} is registered")

    # --- scheduler plugins ----------------------------------------------------------------------

    async def add(self, scheduler: Any, name: str, blob: Serialized) -> None:
        """Unpickle a scheduler plugin and start it; once started, it replaces one of the
        same name (which is closed then).

        Raises: whatever unpickling or the plugin's ``start`` raises (it is not kept then,
        and one of the same name stays, as in dask).
        """
        plugin = loads(blob)
        if hasattr(plugin, "start"):
            done = plugin.start(scheduler)
            if inspect.isawaitable(done):
                await done
        old = self.plugins.pop(name, None)
        self.plugins[name] = plugin
        self._changed()
        if old is not None and old is not plugin:
            await self._close_one(name, old)

    def put(self, name: str, plugin: Any, idempotent: bool) -> None:
        """dask's ``Scheduler.add_plugin``: keep ``plugin`` under ``name`` without starting
        it (a scheduler still starting starts it; a running one does not, as in dask). A
        plugin of that name is kept when ``idempotent``, else replaced with a warning."""
        if name in self.plugins:
            if idempotent:
                return
            warnings.warn(f"Scheduler already contains a plugin with name {name}; "
                          "overwriting.", UserWarning, stacklevel=3)
        self.plugins[name] = plugin
        self._changed()
        if self.unstarted is not None:
            self.unstarted.append(plugin)

    def drop(self, name: str) -> None:
        """dask's ``Scheduler.remove_plugin``: forget it without closing it.

        Raises: ValueError naming the plugin when none has that name."""
        if self.plugins.pop(name, None) is None:
            raise ValueError(f"Could not find plugin {name!r} among the current scheduler "
                             "plugins")
        self._changed()

    def downscalable(self, scheduler: Any, workers: Sequence[Any]) -> list[Any]:
        """Those of ``workers`` (anything with an ``address``) that the plugins'
        ``valid_workers_downscaling(scheduler, [WorkerState...])`` let go, as dask's
        ``workers_to_close`` asks them; a hook that raises is logged and changes nothing."""
        hooked = [(name, p) for name, p in list(self.plugins.items())
                  if _overrides(p, "valid_workers_downscaling")]
        if not hooked:
            return list(workers)
        table = scheduler.workers  # (dask's WorkerState views)
        valid = [table[w.address] for w in workers if w.address in table]
        for name, plugin in hooked:
            try:
                valid = list(plugin.valid_workers_downscaling(scheduler, valid))
            except Exception:
                logger.exception("the valid_workers_downscaling hook of scheduler plugin %r "
                                 "failed; its choice is left out", name)
        keep = {ws.address for ws in valid}
        return [w for w in workers if w.address in keep]

    async def start_added(self, scheduler: Any) -> None:
        """The scheduler has started: start what ``put`` kept meanwhile (dask's order: at
        the end of the start, after the preloads).

        Raises: what a plugin's ``start`` raised (the scheduler's start fails, as dask's)."""
        added, self.unstarted = self.unstarted or [], None
        for plugin in added:
            if hasattr(plugin, "start"):
                done = plugin.start(scheduler)
                if inspect.isawaitable(done):
                    await done

    async def remove(self, name: str) -> None:
        """Raises: ValueError naming the plugin when none has that name."""
        plugin = self.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"no scheduler plugin named {name!r} is registered")
        self._changed()
        await self._close_one(name, plugin)

    async def before_close(self) -> None:
        """The scheduler starts closing: every plugin's ``before_close`` (awaited when a
        coroutine), before anything else of the scheduler closes, as in dask."""
        for name, plugin in list(self.plugins.items()):
            await self._close_one(name, plugin, "before_close")

    async def close(self) -> None:
        """The scheduler closes: every plugin's ``close``; then they are dropped."""
        for name, plugin in list(self.plugins.items()):
            await self._close_one(name, plugin)
        self.plugins.clear()
        self._changed()

    async def _close_one(self, name: str, plugin: Any, hook: str = "close") -> None:
        """``plugin.<hook>()``, awaited if need be; what it raises is logged."""
        try:
            method = getattr(plugin, hook, None)
            done = method() if method is not None else None
            if inspect.isawaitable(done):
                await asyncio.wait_for(done, CLOSE_HOOK_TIMEOUT)  # ends: done or timed out
        except asyncio.TimeoutError:
            logger.error("the %s hook of scheduler plugin %r did not return within %s s; "
                         "the scheduler closes without it", hook, name, CLOSE_HOOK_TIMEOUT)
        except Exception:
            logger.exception("the %s hook of scheduler plugin %r failed", hook, name)

    def call(self, hook: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call ``hook`` on every scheduler plugin that has it; returns the awaitables
        some hooks gave back (the shell runs them; what they raise is logged)."""
        pending = []
        for name, plugin in list(self.plugins.items()):
            method: Callable[..., Any] | None = getattr(plugin, hook, None)
            if method is None:
                continue
            try:
                done = method(*args, **kwargs)
            except Exception:
                logger.exception("the %s hook of scheduler plugin %r failed", hook, name)
                continue
            if inspect.isawaitable(done):
                pending.append(_logged(done, hook, name))
        return pending


async def _logged(done: Any, hook: str, name: str) -> None:
    """Await what an async hook returned; what it raises is logged, as a synchronous
    hook's is (never lost in a task nobody awaits)."""
    try:
        await done
    except Exception:
        logger.exception("the %s hook of scheduler plugin %r failed", hook, name)
